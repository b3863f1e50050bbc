package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"twinchain/internal/registry"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/testsvc"
)

// metric reads one unlabelled metric from /metrics, as token (/metrics
// needs sign-in).
func metric(t *testing.T, base, token, name string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s = %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("%s not in /metrics", name)
	return 0
}

// TestTelemetryToInfluxDB runs the whole path with the InfluxDB backend: a
// simulated fleet publishes over MQTT to twin-service's embedded broker,
// ingest stores the messages, the telemetry writer copies them through the
// replay log into a real influxd, and the chart route reads them back with
// Flux; InfluxQL counts the same points.
func TestTelemetryToInfluxDB(t *testing.T) {
	srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{})
	srv.CreateDatabase(t, "twin")
	dir := t.TempDir()
	f, err := fleet.New(fleet.Config{Sites: 1, ServersPerSite: 2, GPUsPerServer: 4, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.WriteFile(filepath.Join(dir, "registry.json"), f.Registry()); err != nil {
		t.Fatal(err)
	}
	token := "telemetry-viewer-secret"
	cfg := fmt.Sprintf(`telemetry:
  backend: influxdb
  url: %s
  bucket: twin/autogen
  retention: 720h
  flush_interval: 100ms
`, srv.URL())
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Config: cfg, Tokens: []testsvc.Token{{Name: "charts", Role: "viewer", Secret: token}},
		Registry: filepath.Join(dir, "registry.json")})
	base := svc.URL

	pub, err := fleet.NewPublisher(f, fleet.PublishConfig{Broker: svc.MQTTURL(), Rate: 20}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer pcancel()
	if err := pub.Run(pctx); err != nil {
		t.Fatalf("publisher: %v", err)
	}

	// Wait until InfluxDB holds every point the writer took from the log.
	var written, inInflux float64
	testsvc.Eventually(t, 60*time.Second, "every point the writer took in InfluxDB", func() bool {
		written = metric(t, base, token, "twinchain_telemetry_writer_points_total")
		inInflux = float64(srv.Count(t, "twin", "SELECT count(temp_c) FROM gpu"))
		return written > 0 && inInflux == written && metric(t, base, token, "twinchain_influxdb_replay_pending_points") == 0
	})
	t.Logf("%v points from the fleet in InfluxDB", written)
	if msgs := metric(t, base, token, "twinchain_telemetry_writer_messages_total"); written != 4*msgs {
		t.Errorf("points %v, want 4 per telemetry message (%v messages)", written, msgs)
	}

	asset := "srv-s1-001.gpu2"
	now := time.Now().UTC()
	v := url.Values{"metric": {"temp_c"}, "agg": {"count"}, "step": {"1h"},
		"from": {now.Add(-time.Hour).Format(time.RFC3339)}, "to": {now.Add(time.Hour).Format(time.RFC3339)}}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/assets/"+asset+"/series?"+v.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var series struct{ Points []struct{ V float64 } }
	err = json.NewDecoder(resp.Body).Decode(&series)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET series = %d, %v", resp.StatusCode, err)
	}
	var viaAPI float64
	for _, p := range series.Points {
		viaAPI += p.V
	}
	viaQL := srv.Count(t, "twin", fmt.Sprintf("SELECT count(temp_c) FROM gpu WHERE asset = '%s'", asset))
	if viaAPI == 0 || viaAPI != float64(viaQL) {
		t.Errorf("points of %s: %v through the API (Flux), %d through InfluxQL; want equal and non-zero", asset, viaAPI, viaQL)
	}
	if err := svc.Stop(); err != nil {
		t.Errorf("twin-service after SIGTERM: %v", err)
	}
}

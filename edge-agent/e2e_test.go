package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/enroll"
	"twinchain/internal/sim/devicesim"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
)

// TestEndToEnd runs the real programs: firmware-sim serial plays an RDM6300
// reader, a UHF reader and a u-blox GPS on pseudo-terminals (with noise) and
// a simulated 8-GPU host on a unix socket; edge-agent, enrolled through
// twin-service's API with a one-time token, reads the ptys with tarm/serial
// and publishes to twin-service's embedded broker over mutual TLS with the
// client certificate enrollment issued; the twins show the GPS
// position, the RFID zones, the GPUs' identity and telemetry (sampled every
// 500 ms and published every 2 s: four samples per message), and an XID
// injected on one GPU.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three programs")
	}
	agentBin, simBin := binaries(t)
	dir := t.TempDir()
	tlsAddr := testsvc.Addr(testsvc.FreePort(t))
	ts := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Args: []string{"-log-level", "info",
		"-mqtt-tls-addr", tlsAddr, "-mqtt-require-client-cert=true"}})
	base, admin := ts.URL, ts.AdminToken

	paths := filepath.Join(dir, "paths.json")
	sock := filepath.Join(dir, "gpus.sock")
	testsvc.StartProcess(t, simBin, "serial", "--paths-file", paths, "--gpu-socket", sock, "--gpus", "8", "--seed", "5", "--noise", "--rfid-rate", "10", "--xid-after", "3s")
	var p map[string]string
	testsvc.Eventually(t, 20*time.Second, "firmware-sim's device paths", func() bool {
		data, err := os.ReadFile(paths)
		return err == nil && json.Unmarshal(data, &p) == nil
	})
	conf := filepath.Join(dir, "agent.yaml")
	state := filepath.Join(dir, "agent")
	// Enrollment writes the gateway's MQTT client certificate and the CA
	// into the state folder; the agent then connects with mutual TLS.
	mqttLine := fmt.Sprintf("broker: ssl://%s, cert_file: %s/mqtt-client.pem, ca_file: %s/mqtt-ca.pem", tlsAddr, state, state)
	agentConf := fmt.Sprintf(`gateway_id: gw-e2e
site: s1
state_dir: %s
host: {asset: srv-e2e-001, rfid_tag: E2801160600002084D6B1A3F}
mqtt: {MQTT, backoff_min: 200ms, backoff_max: 2s}
rfid:
  merge_window: 1s
  readers:
    - {name: rack-em, protocol: rdm6300, port: %s, read_point: rack-door, zone: s1-hall}
    - {name: dock-uhf, protocol: uhf-line, port: %s, read_point: dock-door-1, zone: s1-dock}
gps: {report_interval: 1s, receivers: [{name: ublox, port: %s}]}
gpu: {source: auto, sim: "%s", interval: 500ms, publish_interval: 2s}
`, state, p["rdm6300"], p["uhf"], p["gps"], p["gpu"])
	os.WriteFile(conf, []byte(strings.Replace(agentConf, "MQTT", "broker: tcp://"+ts.MQTTAddr, 1)), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := enroll.IssueToken(ctx, http.DefaultClient, base, admin, enroll.TokenRequest{Site: "s1", GatewayID: "gw-e2e"})
	if err != nil {
		t.Fatalf("issue token: %v", err)
	}
	en := testsvc.StartProcess(t, agentBin, "enroll", "--config", conf, "--server", base, "--token", tok.Token)
	if err := en.Wait(); err != nil {
		t.Fatalf("edge-agent enroll: %v\n%s", err, en.Output)
	}
	os.WriteFile(conf, []byte(strings.Replace(agentConf, "MQTT", mqttLine, 1)), 0o600)
	agent := testsvc.StartProcess(t, agentBin, "run", "--config", conf)

	asset := func(id string) (twin.Asset, bool) {
		var a twin.Asset
		ok := apiGet(base, admin, "/api/v1/assets/"+id, &a)
		return a, ok
	}
	want := devicesim.NewGPUHost(8, 5).Next(time.Now())
	testsvc.Eventually(t, 60*time.Second, "the twins", func() bool {
		srv, ok1 := asset("srv-e2e-001")
		gw, ok2 := asset("gw-e2e")
		g7, ok3 := asset("srv-e2e-001.gpu7")
		// The RDM6300's tag is on no asset: counted, never an asset.
		var st struct {
			UnknownTags uint64 `json:"unknown_tags"`
		}
		ok4 := apiGet(base, admin, "/api/v1/stats/ingest", &st) && st.UnknownTags > 0
		// The noise firmware-sim injects every few seconds has been seen too.
		out := agent.Output.String()
		g0, ok5 := asset("srv-e2e-001.gpu0")
		return ok1 && ok2 && ok3 && ok4 && ok5 && srv.Location.Zone == "s1-dock" && gw.Location.Lat != 0 &&
			g0.Health.LastXID == 79 &&
			g7.Identity.UUID != "" && g7.Health.Latest != nil &&
			strings.Contains(out, "rfid: rejected bad input") && strings.Contains(out, "gps: dropped bad input")
	})
	if _, ok := asset("tag-12003F7A2C"); ok {
		t.Error("an RFID read of a tag no asset carries created an asset")
	}
	srv, _ := asset("srv-e2e-001")
	if srv.Location.ReadPoint != "dock-door-1" || srv.Kind != twin.KindServer || srv.Site != "s1" {
		t.Errorf("server twin = kind %s site %s read point %q, want a server at s1 read at dock-door-1", srv.Kind, srv.Site, srv.Location.ReadPoint)
	}
	// The position is checked on the location event (Lat/Lon). Location.GPS,
	// the latest fix kept as an observation, is not: ingest stores a pointer
	// into a pooled message there, which a later message zeroes (reported).
	gw, _ := asset("gw-e2e")
	if l := gw.Location; math.Abs(l.Lat-52.52) > 0.01 || math.Abs(l.Lon-13.405) > 0.01 || gw.Kind != twin.KindGateway {
		t.Errorf("gateway twin = %s at %f,%f, want a gateway on the Berlin route", gw.Kind, l.Lat, l.Lon)
	}
	for i, d := range want.Devices {
		g, ok := asset(fmt.Sprintf("srv-e2e-001.gpu%d", i))
		if !ok {
			t.Errorf("gpu%d: no twin", i)
			continue
		}
		if g.Identity.UUID != d.UUID || g.Identity.Serial != d.Serial || g.Identity.PCIBusID != d.PCIBusID ||
			g.Firmware.VBIOS != d.VBIOS || g.Firmware.InfoROM != d.InfoROM || g.Firmware.Driver != "550.54.15" || g.Parent != "srv-e2e-001" {
			t.Errorf("gpu%d identity = %+v / %+v, want the simulated %s %s", i, g.Identity, g.Firmware, d.UUID, d.Serial)
		}
		if l := g.Health.Latest; l == nil || l.PowerW < 50 || l.TempC < 30 || l.SMClockMHz < 1000 || l.UUID != d.UUID {
			t.Errorf("gpu%d telemetry = %+v, want live readings", i, g.Health.Latest)
		}
	}
	// Four samples per telemetry message (publish_interval 2s, interval
	// 500ms): the GPU's sample count moves by a message's samples at once.
	var steps []uint64
	last := uint64(0)
	testsvc.Eventually(t, 30*time.Second, "gpu7's sample count moving three times", func() bool {
		if g, ok := asset("srv-e2e-001.gpu7"); ok && g.Health.Samples != last {
			if last != 0 {
				steps = append(steps, g.Health.Samples-last)
			}
			last = g.Health.Samples
		}
		time.Sleep(50 * time.Millisecond)
		return len(steps) >= 3
	})
	for _, n := range steps {
		if n < 2 || n > 4 {
			t.Errorf("gpu7's sample count moved by %v, want 2 to 4 samples per message (4 unless the agent's ticker dropped some)", steps)
			break
		}
	}
	// The XID 79 firmware-sim injected on GPU 0 reached its twin.
	if g0, _ := asset("srv-e2e-001.gpu0"); g0.Health.LastXID != 79 || g0.Health.XIDCount != 1 || g0.Health.State != twin.HealthCritical {
		t.Errorf("gpu0 health = %+v, want XID 79 counted once, critical", g0.Health)
	}
	// Every message was accepted: none rejected as unknown, badly signed or replayed.
	var stats struct {
		Accepted uint64            `json:"accepted"`
		Rejected map[string]uint64 `json:"rejected"`
	}
	if !apiGet(base, admin, "/api/v1/stats/ingest", &stats) {
		t.Fatal("GET /api/v1/stats/ingest failed")
	}
	rejected := uint64(0)
	for _, n := range stats.Rejected {
		rejected += n
	}
	if rejected > 0 || stats.Accepted < 10 {
		t.Errorf("ingest stats: accepted %d, rejected %v; want everything accepted", stats.Accepted, stats.Rejected)
	}
	// The broker timed every stored message from its read to the ingest's
	// answer (twinchain_mqtt_answer_seconds).
	testsvc.Eventually(t, 10*time.Second, "every accepted message timed by the broker", func() bool {
		m := regexp.MustCompile(`(?m)^twinchain_mqtt_answer_seconds_count (\d+)$`).FindStringSubmatch(metricsText(base, admin))
		if m == nil {
			return false
		}
		n, err := strconv.ParseUint(m[1], 10, 64)
		return err == nil && n >= stats.Accepted
	})
	// Revoking the gateway over the API closes its live TLS session at once
	// and its certificate is refused from then on.
	req, _ := http.NewRequest(http.MethodDelete, base+"/api/v1/gateways/gw-e2e", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode/100 != 2 {
		t.Fatalf("DELETE /api/v1/gateways/gw-e2e: %v %v", res, err)
	}
	testsvc.Eventually(t, 30*time.Second, "the revoked session closed and its certificate refused", func() bool {
		m := metricsText(base, admin)
		return strings.Contains(m, `twinchain_mqtt_refused_total{reason="revoked"} 1`) &&
			!strings.Contains(m, `twinchain_mqtt_refused_total{reason="unknown_gateway"} 0`)
	})
	stop(t, agent)
	t.Logf("ingest accepted %d messages; twin-service log tail:\n%s", stats.Accepted, tail(ts.Output(), 5))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// metricsText is twin-service's /metrics ("" when it cannot be read).
func metricsText(base, token string) string {
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return ""
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return string(data)
}

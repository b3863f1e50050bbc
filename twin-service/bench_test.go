package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/testsvc"
)

// loadFor runs firmware-sim's fleet publisher against broker for d and
// returns the acknowledged messages per second.
func loadFor(b *testing.B, f *fleet.Fleet, broker string, rate float64, d time.Duration) float64 {
	b.Helper()
	p, err := fleet.NewPublisher(f, fleet.PublishConfig{Broker: broker, Rate: rate}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	if err := p.Run(ctx); err != nil {
		b.Fatal(err)
	}
	return float64(p.Stats.Acked.Load()) / time.Since(start).Seconds()
}

// BenchmarkFleetLoad: the messages per second the whole service (embedded
// broker, ingest with fsync, twin store, telemetry writer, API) sustains with
// firmware-sim's fleet as the load (50 GPU hosts x 8 GPUs, each host
// offering -rate samples/s, signing in the same process), and the bare mochi
// broker's rate with the same load in the same run. Run with -benchtime=1x;
// TWINCHAIN_BENCH_SECONDS sets each phase's length (default 10).
func BenchmarkFleetLoad(b *testing.B) {
	for _, ack := range []string{"sync", "pipelined"} {
		b.Run("ack="+ack, func(b *testing.B) { benchFleetLoad(b, ack) })
	}
}

// benchFleetLoad runs twin-service in this process, not as the built
// binary (testsvc.StartTwinService): the bare broker it is compared with
// runs here too, beside the same publishers, so the ratio compares like
// with like.
func benchFleetLoad(b *testing.B, ack string) {
	const rate = 400 // offered: 50 x 400 = 20,000 messages/s
	d := 10 * time.Second
	if v, err := time.ParseDuration(getenvDefault("TWINCHAIN_BENCH_SECONDS", "10") + "s"); err == nil {
		d = v
	}
	newFleet := func() *fleet.Fleet {
		f, err := fleet.New(fleet.Config{Sites: 2, ServersPerSite: 25, GPUsPerServer: 8, Seed: 3})
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	for range b.N {
		bareAddr := testsvc.Addr(testsvc.FreePort(b))
		bare := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		bare.AddHook(new(auth.AllowHook), nil)
		if err := bare.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: bareAddr})); err != nil {
			b.Fatal(err)
		}
		if err := bare.Serve(); err != nil {
			b.Fatal(err)
		}
		bareRate := loadFor(b, newFleet(), "tcp://"+bareAddr, rate, d)
		bare.Close()

		dir := b.TempDir()
		f := newFleet()
		regPath := filepath.Join(dir, "registry.json")
		if err := registry.WriteFile(regPath, f.Registry()); err != nil {
			b.Fatal(err)
		}
		httpAddr, mqttAddr := testsvc.Addr(testsvc.FreePort(b)), testsvc.Addr(testsvc.FreePort(b))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		stderr := &testsvc.Buffer{}
		go func() {
			done <- run(ctx, []string{"-config", testConfig(b, dir), "-data", filepath.Join(dir, "data"), "-registry", regPath, "-http", httpAddr, "-mqtt-addr", mqttAddr, "-mqtt-ack", ack, "-log-level", "error"}, func(string) string { return "" }, stderr)
		}()
		testsvc.Eventually(b, 30*time.Second, "twin-service ready", func() bool {
			resp, err := http.Get("http://" + httpAddr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		svcRate := loadFor(b, f, "tcp://"+mqttAddr, rate, d)
		var st ingest.Stats
		getJSON(b, "http://"+httpAddr+"/api/v1/stats/ingest", &st)
		cancel()
		if err := <-done; err != nil {
			b.Fatalf("twin-service: %v\n%s", err, stderr)
		}
		for r, n := range st.Rejected {
			if n > 0 && r != ingest.ReasonDuplicate {
				b.Errorf("rejected[%s] = %d under load, want 0", r, n)
			}
		}
		b.ReportMetric(bareRate, "bare_msgs/s")
		b.ReportMetric(svcRate, "msgs/s")
		b.ReportMetric(svcRate/bareRate, "ratio")
		b.ReportMetric(svcRate*8*50/51, "gpu_readings/s")
	}
}

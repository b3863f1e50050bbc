package natslog

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"twinchain/internal/registry"
	"twinchain/internal/sim/load"
	"twinchain/internal/testsvc"
)

// BenchmarkEngines offers the same pre-signed load (internal/sim/load: one
// MQTT connection per 8-GPU host, QoS 1, ~2.9 KB signed telemetry messages)
// to each ingest engine in one run, one after the other, and prints a line
// per engine (docs/scale-out.md):
//
//   - mochi: the bare mochi broker twin-service embeds (no hooks, allow all);
//   - service: twin-service as `make bench-service` runs it (embedded broker
//     with its auth and ACL, verify, bbolt log with fsync, telemetry,
//     detection, anchoring);
//   - nats: embedded nats-server, MQTT listener, PUBACK after the JetStream
//     store, nats-server's default fsync (every 2 minutes);
//   - nats-fsync: the same with sync_interval always (fsync before the ack);
//   - nats-s2: nats-fsync with the log's blocks S2-compressed;
//   - nats-r3: three servers in one cluster (in this process), the log
//     with three replicas, sync always (relaxed by nats-server to a sync
//     per Raft flush); the gateways spread over the three listeners;
//   - after each nats phase, a durable consumer reads the whole log (decoding
//     each envelope), as a twin-service partition would.
//
// SCALEOUT_GATEWAYS, SCALEOUT_RATE (msg/s offered), SCALEOUT_SECONDS and
// SCALEOUT_ENGINES (comma-separated) set the load. CPU per message counts the
// whole machine's share of this test process (load generator included) and,
// for the service, the service process too: compare engines, not absolutes.
//
//	go test -run '^$' -bench Engines -benchtime 1x ./internal/scaleout/natslog
func BenchmarkEngines(b *testing.B) {
	cfg := load.Config{
		Gateways: envInt("SCALEOUT_GATEWAYS", 500), GPUs: 8,
		Rate: float64(envInt("SCALEOUT_RATE", 2000)), Duration: time.Duration(envInt("SCALEOUT_SECONDS", 20)) * time.Second,
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	engines := strings.Split(envStr("SCALEOUT_ENGINES", "mochi,service,nats,nats-fsync"), ",")
	fmt.Printf("scaleout: %d gateways (%d GPUs), %.0f msg/s offered for %s; load average %s\n",
		cfg.Gateways, cfg.Gateways*cfg.GPUs, cfg.Rate, cfg.Duration, loadavg())
	for range b.N {
		var base float64
		for _, e := range engines {
			r := runEngine(b, e, cfg)
			if e == "mochi" {
				base = r.throughput
			}
			ratio := ""
			if base > 0 {
				ratio = fmt.Sprintf(" throughput/mochi=%.3f", r.throughput/base)
			}
			failed := ""
			if r.err != nil {
				failed = fmt.Sprintf(" failed_connections=%d first_error=%q", r.connErrors, r.err)
			}
			fmt.Printf("ENGINE %-10s offered=%.0f throughput=%.0f sent=%d acked=%d ack_p50_ms=%.1f ack_p99_ms=%.1f ack_max_ms=%.1f cpu_us_per_msg=%.0f disk_bytes_per_msg=%.0f%s%s\n",
				e, cfg.Rate, r.throughput, r.sent, r.acked, ms(r.p50), ms(r.p99), ms(r.max), r.cpuPerMsg, r.diskPerMsg, ratio, failed)
			if r.readRate > 0 {
				fmt.Printf("CONSUME %-10s read=%d msg/s=%.0f cpu_us_per_msg=%.0f\n", e, r.acked, r.readRate, r.readCPU)
			}
		}
	}
	fmt.Printf("scaleout: load average now %s\n", loadavg())
}

type engineResult struct {
	throughput        float64 // acknowledged msg/s: every message over the time to its last PUBACK
	acked, sent       int64
	connErrors        int64 // connections that failed
	err               error // the first connection error
	p50, p99, max     time.Duration
	cpuPerMsg         float64 // µs
	diskPerMsg        float64 // bytes
	readRate, readCPU float64 // the consumer: msg/s and µs per message
}

func runEngine(b *testing.B, engine string, cfg load.Config) engineResult {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+5*time.Minute)
	defer cancel()
	cfg.Broker = testsvc.Addr(testsvc.FreePort(b))
	dir := b.TempDir()
	var (
		stop      func()
		svcCPU    func() float64 // the service process's CPU seconds; nil in process
		diskDir   = dir
		natsSrv   *Server
		syncWrite bool
	)
	switch engine {
	case "mochi":
		srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			b.Fatal(err)
		}
		if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Broker})); err != nil {
			b.Fatal(err)
		}
		if err := srv.Serve(); err != nil {
			b.Fatal(err)
		}
		stop = func() { go srv.Close() } // mochi's Close can deadlock (upstream issue 488): do not wait
	case "service":
		f, err := load.Fleet(cfg)
		if err != nil {
			b.Fatal(err)
		}
		reg := filepath.Join(dir, "registry.json")
		if err := registry.WriteFile(reg, f.Registry()); err != nil {
			b.Fatal(err)
		}
		svc := testsvc.StartTwinService(b, testsvc.TwinServiceOptions{
			Registry: reg, DetectConfig: "../../../scripts/run-detect.yaml", MQTTAddr: cfg.Broker,
		})
		diskDir = svc.DataDir
		mon := &load.Monitor{URL: svc.URL + "/metrics", Token: svc.AdminToken} // /metrics needs sign-in
		svcCPU = func() float64 {
			s, err := mon.Scrape(ctx)
			if err != nil {
				b.Fatalf("scrape: %v", err)
			}
			return s.Values[load.MetricCPU]
		}
		stop = func() { _ = svc.Stop() }
	case "nats", "nats-fsync", "nats-s2":
		syncWrite = engine != "nats"
		s, err := Start(ctx, Config{Dir: filepath.Join(dir, "js"), MQTTAddr: cfg.Broker, SyncAlways: syncWrite, Compress: engine == "nats-s2"})
		if err != nil {
			b.Fatal(err)
		}
		natsSrv = s
		stop = s.Close
	case "nats-r3":
		servers, mqtts := startCluster(ctx, b, dir, 3, false)
		natsSrv, cfg.Broker, cfg.Brokers = servers[0], "", mqtts
		stop = func() {}
	default:
		b.Fatalf("unknown engine %q (want mochi, service, nats, nats-fsync, nats-s2, nats-r3)", engine)
	}
	defer stop()

	l, err := load.Presign(cfg)
	if err != nil {
		b.Fatal(err)
	}
	connect(ctx, b, l)
	disk0 := dirSize(diskDir)
	var svc0 float64
	if svcCPU != nil {
		svc0 = svcCPU()
	}
	cpu0 := ownCPU()
	t0 := time.Now().Add(100 * time.Millisecond)
	// A connection the engine closes (nats-server does when JetStream has
	// not acknowledged a store within 5 s) is reported, not fatal: that is
	// how the engine pushes back.
	runErr := l.Run(ctx, t0, 30*time.Second)
	cpu := (ownCPU() - cpu0).Seconds()
	if svcCPU != nil {
		cpu += svcCPU() - svc0
	}
	r := engineResult{acked: l.Acked.Load(), sent: l.Sent.Load(), connErrors: l.Errors(), err: runErr}
	if r.acked == 0 {
		b.Fatalf("%s: nothing acknowledged", engine)
	}
	lat := l.Lat.Snapshot()
	r.p50, r.p99, r.max = lat.Quantile(nil, 0.5), lat.Quantile(nil, 0.99), lat.Quantile(nil, 1)
	r.throughput = float64(r.acked) / time.Unix(0, l.LastAck.Load()).Sub(t0).Seconds()
	r.cpuPerMsg = 1e6 * cpu / float64(r.acked)
	if engine != "mochi" {
		if engine == "service" {
			time.Sleep(2 * time.Second) // the telemetry writer and anchoring catch up before the size is read
		}
		r.diskPerMsg = float64(dirSize(diskDir)-disk0) / float64(r.acked)
	}
	if natsSrv != nil {
		cons, err := natsSrv.Consumer(ctx, "bench", GatewaySubjects)
		if err != nil {
			b.Fatal(err)
		}
		began, c0 := time.Now(), ownCPU()
		n := 0
		if err := Drain(ctx, cons, int(r.acked), func(Message) error { n++; return nil }); err != nil {
			b.Fatalf("%s: drain: %v", engine, err)
		}
		r.readRate = float64(n) / time.Since(began).Seconds()
		r.readCPU = 1e6 * (ownCPU() - c0).Seconds() / float64(n)
	}
	return r
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

package ingest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"twinchain/internal/registry"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// benchTelemetry is one host's 8-GPU sample, as firmware-sim sends it.
func benchTelemetry(host string, i int) wire.Telemetry {
	tel := wire.Telemetry{Host: host}
	for g := range 8 {
		tel.GPUs = append(tel.GPUs, wire.GPUSample{
			Asset: fmt.Sprintf("%s.gpu%d", host, g), Index: g, UUID: fmt.Sprintf("GPU-%s-%d", host, g),
			TempC: 60 + float64(i%7), MemTempC: 70, PowerW: 400 + float64(i%50), PowerLimitW: 700, UtilPct: 90, MemUtilPct: 50,
			SMClockMHz: 1980, MemClockMHz: 2619, ECCSingleBit: uint64(i / 1000), Throttle: []string{wire.ThrottlePowerCap},
		})
	}
	return tel
}

// benchMessages seals n telemetry messages spread over gateways.
func benchMessages(b *testing.B, gateways, n int) (topics []string, payloads [][]byte) {
	b.Helper()
	for i := range n {
		gw := benchGateway(i % gateways)
		seq := uint64(i/gateways + 1)
		p := seal(b, gw, seq, t0.Add(time.Duration(seq)*time.Second), wire.KindTelemetry, benchTelemetry("srv-"+gw, i))
		topics = append(topics, wire.Topic(gw, wire.KindTelemetry))
		payloads = append(payloads, p)
	}
	return topics, payloads
}

func benchGateway(i int) string { return fmt.Sprintf("gw-b%03d", i) }

func registryGateway(gw string) registry.Gateway {
	return registry.Gateway{ID: gw, PublicKey: testKey(gw).Public().(ed25519.PublicKey), Site: "s1"}
}

func benchRegistry(gateways int) *registry.Registry {
	reg := registry.New()
	for i := range gateways {
		reg.Put(registryGateway(benchGateway(i)))
	}
	return reg
}

// BenchmarkIngestCheck is the per-message work done in the submitter's
// goroutine: size, topic, envelope decode, registry lookup, Ed25519
// verification, body decode and hash (an 8-GPU telemetry message, ~2.5 KB).
func BenchmarkIngestCheck(b *testing.B) {
	topics, payloads := benchMessages(b, 1, 1)
	reg := benchRegistry(1)
	b.SetBytes(int64(len(payloads[0])))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		var m message
		if rej := check(&m, topics[0], payloads[0], reg, t0, time.Hour); rej != nil {
			b.Fatal(rej.err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1000, "cpu_us/op")
}

// cpuTime is the process's user+system CPU time: unlike wall time it does
// not grow when other processes share the machine's cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIngestSubmit is decode + verify + sequence check + fold + store
// per message through Submit, from 64 concurrent submitters (so the group
// commit batches), with fsync on every commit.
func BenchmarkIngestSubmit(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", sync), func(b *testing.B) {
			benchSubmit(b, 64, !sync, 64, Config{}, func() time.Time { return t0.Add(time.Hour) })
		})
	}
}

// BenchmarkCheckpoint is BenchmarkIngestSubmit (fsync on) with 2,000
// gateways (18,000 twins, 9 per message) on the real clock, so the
// checkpoint rewrites every twin observed since the last one: at the
// checkpoint interval of the earlier default (1s) and of the current (10s).
// Run it with -benchtime of several seconds' messages (e.g. 20000x).
func BenchmarkCheckpoint(b *testing.B) {
	for _, every := range []time.Duration{time.Second, 10 * time.Second} {
		b.Run(fmt.Sprintf("interval=%s", every), func(b *testing.B) {
			benchSubmit(b, 64, false, 2000, Config{CheckpointInterval: every}, time.Now)
		})
	}
}

// BenchmarkSteady: 1,000 gateways each sending many messages (b.N over
// 1,000), fsync on, the default checkpoint interval: past the first round,
// what each further message costs (CPU, bytes written).
func BenchmarkSteady(b *testing.B) {
	benchSubmit(b, 64, false, 1000, Config{}, time.Now)
}

func benchSubmit(b *testing.B, submitters int, noSync bool, gateways int, cfg Config, now func() time.Time) {
	topics, payloads := benchMessages(b, gateways, b.N)
	store, err := twinstore.Open(filepath.Join(b.TempDir(), "twins.db"), twinstore.Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	in, err := New(cfg, store, benchRegistry(gateways), slog.New(slog.NewTextHandler(io.Discard, nil)), now)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0, written0 := time.Now(), cpuTime(), writtenBytes(b)
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(payloads) {
					return
				}
				out, err := in.Submit(Source{}, topics[i], payloads[i])
				if err != nil || !out.Accepted() {
					b.Errorf("Submit %d: %v %s %v", i, err, out.Reason, out.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed, cpu, written := time.Since(start), cpuTime()-cpu0, writtenBytes(b)-written0
	b.StopTimer()
	cancel()
	<-done
	st := in.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/float64(max(st.Commits, 1)), "msgs/commit")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1000, "cpu_us/op")
	b.ReportMetric(float64(written)/float64(b.N), "written_B/op")
}

// writtenBytes is what this process has passed to write system calls
// (wchar in /proc/self/io): the store's pages, as bbolt writes them.
func writtenBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no wchar in /proc/self/io")
	return 0
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

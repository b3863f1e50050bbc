package broker

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"twinchain/internal/ingest"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// loadMessages seals n 8-GPU telemetry messages over gateways gateways.
func loadMessages(b *testing.B, gateways, n int) (gws []string, msgs [][][]byte) {
	b.Helper()
	msgs = make([][][]byte, gateways)
	start := time.Now().Add(-time.Hour)
	for g := range gateways {
		gws = append(gws, fmt.Sprintf("gw-load-%03d", g))
	}
	for i := range n {
		g := i % gateways
		gw := gws[g]
		seq := uint64(len(msgs[g]) + 1)
		tel := wire.Telemetry{Host: "srv-" + gw}
		for k := range 8 {
			tel.GPUs = append(tel.GPUs, wire.GPUSample{Asset: fmt.Sprintf("srv-%s.gpu%d", gw, k), Index: k, UUID: fmt.Sprintf("GPU-%s-%d", gw, k),
				TempC: 60, MemTempC: 70, PowerW: 400 + float64(i%50), PowerLimitW: 700, UtilPct: 90, MemUtilPct: 50, SMClockMHz: 1980, MemClockMHz: 2619})
		}
		p, err := wire.Seal(key(gw), gw, seq, start.Add(time.Duration(seq)*time.Millisecond), wire.KindTelemetry, tel)
		if err != nil {
			b.Fatal(err)
		}
		msgs[g] = append(msgs[g], p)
	}
	return gws, msgs
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// drive publishes every gateway's messages over its own paho connection at
// QoS 1 with up to window unacknowledged, and returns the time until the
// last PUBACK and the CPU time the process (broker, ingest and the
// publishers) spent meanwhile.
func drive(b *testing.B, url string, gws []string, msgs [][][]byte, window int) (took, cpu time.Duration) {
	b.Helper()
	clients := make([]paho.Client, len(gws))
	for i, gw := range gws {
		c := paho.NewClient(testsvc.GatewayOptions(url, gw, key(gw)).SetAutoReconnect(false))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("connect %s: %v", gw, tok.Error())
		}
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.Disconnect(0)
		}
	}()
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime()
	for i, gw := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := wire.Topic(gw, wire.KindTelemetry)
			var inflight []paho.Token
			for _, p := range msgs[i] {
				inflight = append(inflight, clients[i].Publish(topic, 1, false, p))
				if len(inflight) >= window {
					inflight[0].Wait()
					inflight = inflight[1:]
				}
			}
			for _, t := range inflight {
				if t.Wait(); t.Error() != nil {
					b.Errorf("%s: %v", gw, t.Error())
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), cpuTime() - cpu0
}

// BenchmarkThroughput measures QoS 1 messages per second from 50 publishers
// over TCP (8-GPU telemetry, ~2.5 KB each): first through a bare mochi
// broker (no hooks but allow-all auth), the baseline, then through
// twin-service's broker with the full ingest (verify, sequence, fold, store
// with fsync). b.N is the number of messages; run with -benchtime=Nx.
func BenchmarkThroughput(b *testing.B) {
	for _, ack := range []string{AckSync, AckPipelined} {
		b.Run("ack="+ack, func(b *testing.B) { benchThroughput(b, ack) })
	}
}

func benchThroughput(b *testing.B, ack string) {
	const publishers, window = 50, 100
	gws, msgs := loadMessages(b, publishers, b.N)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Baseline: the bare broker.
	bareAddr := testsvc.Addr(testsvc.FreePort(b))
	bare := mqtt.New(&mqtt.Options{Logger: log})
	bare.AddHook(new(auth.AllowHook), nil)
	if err := bare.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: bareAddr})); err != nil {
		b.Fatal(err)
	}
	if err := bare.Serve(); err != nil {
		b.Fatal(err)
	}
	bareTook, bareCPU := drive(b, "tcp://"+bareAddr, gws, msgs, window)
	bare.Close()

	// twin-service's broker and ingest, fsync on.
	st := startStackWith(b, ingest.Config{}, false, Config{Ack: ack}, gws...)
	b.ResetTimer()
	took, cpu := drive(b, st.url, gws, msgs, window)
	b.StopTimer()
	stats := st.in.Stats()
	if stats.Accepted != uint64(b.N) {
		b.Errorf("accepted %d of %d messages (rejected %v)", stats.Accepted, b.N, stats.Rejected)
	}
	bareRate := float64(b.N) / bareTook.Seconds()
	rate := float64(b.N) / took.Seconds()
	b.ReportMetric(bareRate, "bare_msgs/s")
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(rate/bareRate, "ratio")
	b.ReportMetric(float64(b.N)/float64(max(stats.Commits, 1)), "msgs/commit")
	// CPU per message does not depend on what else runs on the machine:
	// capacity on an idle machine is about cores / cpu per message.
	b.ReportMetric(float64(bareCPU.Microseconds())/float64(b.N), "bare_cpu_us/msg")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu_us/msg")
}

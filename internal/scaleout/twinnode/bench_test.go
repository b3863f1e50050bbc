package twinnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"twinchain/internal/registry"
	"twinchain/internal/scaleout/natslog"
	"twinchain/internal/sim/load"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// BenchmarkNodes applies one log of signed 8-GPU telemetry with 1, 2 and
// 3 nodes (in process, one embedded nats-server, each node its own
// connection, store and ingest) and reports the aggregate rate of each as a
// ratio to one node's: from the first node's start until the changes
// stream holds every message. On a 2-core machine the nodes share the
// cores with the server: the ratio shows the overhead of partitioning more
// than a gain.
//
//	go test -run '^$' -bench Nodes -benchtime 1x ./internal/scaleout/twinnode
func BenchmarkNodes(b *testing.B) {
	const gateways, per = 24, 250
	cfg := load.Config{Gateways: gateways, GPUs: 8, Rate: gateways, Duration: time.Duration(per-1) * time.Second}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	f, err := load.Fleet(cfg)
	if err != nil {
		b.Fatal(err)
	}
	reg := registry.New(f.Registry().Gateways...)
	type msg struct {
		subject string
		data    []byte
	}
	var msgs []msg
	start := time.Now().Add(-time.Duration(per) * time.Second)
	for k := range per {
		for _, g := range f.Gateways {
			t := start.Add(time.Duration(k) * time.Second)
			data, topic, _, err := g.Seal(wire.KindTelemetry, t, g.Sample(t, time.Second))
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, msg{"$MQTT.msgs." + strings.ReplaceAll(topic, "/", "."), data})
		}
	}
	rates := map[int]float64{}
	for _, nodes := range []int{1, 2, 3} {
		b.Run(fmt.Sprint(nodes), func(b *testing.B) {
			for b.Loop() {
				rates[nodes] = runNodes(b, nodes, reg, func(ctx context.Context, js jetstream.JetStream) {
					for _, m := range msgs {
						if _, err := js.PublishAsync(m.subject, m.data); err != nil {
							b.Fatal(err)
						}
					}
					select {
					case <-js.PublishAsyncComplete():
					case <-ctx.Done():
						b.Fatal(ctx.Err())
					}
				}, len(msgs))
				b.ReportMetric(rates[nodes], "msg/s")
				b.ReportMetric(rates[nodes]/rates[1], "x1node")
			}
		})
	}
}

func runNodes(b *testing.B, nodes int, reg *registry.Registry, fill func(context.Context, jetstream.JetStream), want int) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := b.TempDir()
	s, err := natslog.Start(ctx, natslog.Config{Dir: filepath.Join(dir, "js"), MQTTAddr: testsvc.Addr(testsvc.FreePort(b)), Partitions: partitions})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := Setup(ctx, s.JS, 1, 2*time.Second); err != nil {
		b.Fatal(err)
	}
	fill(ctx, s.JS)
	began := time.Now()
	var stops []func()
	for i := range nodes {
		nc, err := nats.Connect("", nats.InProcessServer(s.NS))
		if err != nil {
			b.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		n, err := Open(Config{ID: fmt.Sprint("node-", i+1), Dir: filepath.Join(dir, fmt.Sprint("node", i)), Partitions: partitions, Lease: 2 * time.Second}, js, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			b.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- n.Run(rctx) }()
		stops = append(stops, func() { stop(); <-done; nc.Close() })
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	st, err := s.JS.Stream(ctx, ChangesStream)
	if err != nil {
		b.Fatal(err)
	}
	for {
		info, err := st.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs >= uint64(want) {
			break
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%d nodes applied %d of %d: %v", nodes, info.State.Msgs, want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return float64(want) / time.Since(began).Seconds()
}

package natslog

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/sim/load"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
)

// TestLogIntoIngest is a partition worker in its smallest form: a durable
// consumer reads the log into twinchain's ingest (verify, sequence, fold,
// group commit) and acknowledges only what ingest has stored. Reading the
// whole log a second time, as a new owner without the old position would,
// applies nothing twice: every message comes back as a duplicate and the
// message log does not grow.
func TestLogIntoIngest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := testsvc.Addr(testsvc.FreePort(t))
	s, err := Start(ctx, Config{Dir: filepath.Join(t.TempDir(), "js"), MQTTAddr: addr, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := load.Config{Broker: addr, Gateways: 4, GPUs: 8, Rate: 200, Duration: time.Second}
	if err := cfg.Validate(); err != nil { // the seed's default: the same keys as the load's
		t.Fatal(err)
	}
	f, err := load.Fleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(f.Registry().Gateways...)
	l := offer(t, cfg)
	acked := int(l.Acked.Load())
	if want := cfg.Gateways * cfg.PerGateway(); acked != want {
		t.Fatalf("acked %d, want %d", acked, want)
	}

	store, err := twinstore.Open(filepath.Join(t.TempDir(), "twins.db"), twinstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	in, err := ingest.New(ingest.Config{}, store, reg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- in.Run(runCtx) }()
	defer func() { stop(); <-ran }()

	apply := func(name string) map[ingest.Reason]int {
		cons, err := s.Consumer(ctx, name, GatewaySubjects)
		if err != nil {
			t.Fatal(err)
		}
		got := map[ingest.Reason]int{}
		if err := Drain(ctx, cons, acked, func(m Message) error {
			out, err := in.Submit(ingest.Source{Client: "nats-log"}, m.Topic, m.Data)
			if err != nil {
				return err // not stored: not acknowledged, read again
			}
			got[out.Reason]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := apply("twin-1"); got[""] != acked || len(got) != 1 {
		t.Fatalf("first read: outcomes %v, want %d accepted", got, acked)
	}
	if got := apply("twin-1-replay"); got[ingest.ReasonDuplicate] != acked || len(got) != 1 {
		t.Fatalf("second read: outcomes %v, want %d duplicates", got, acked)
	}
	msgs, err := store.MessagesAfter(0, 10*acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != acked {
		t.Errorf("message log holds %d, want %d (each once)", len(msgs), acked)
	}
}

func TestTopicOf(t *testing.T) {
	for subj, want := range map[string]string{
		"$MQTT.msgs.twinchain.v1.gw.gw-1.telemetry":    "twinchain/v1/gw/gw-1/telemetry",
		"$MQTT.msgs.twinchain.v1.gw.gw//site2.gps_fix": "twinchain/v1/gw/gw.site2/gps_fix",
		"$MQTT.msgs.p.11.twinchain.v1.gw.gw-1.status":  "twinchain/v1/gw/gw-1/status",
	} {
		if got := topicOf(subj); got != want {
			t.Errorf("topicOf(%q) = %q, want %q", subj, got, want)
		}
	}
}

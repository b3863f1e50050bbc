package natslog

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/sim/load"
	"twinchain/internal/testsvc"
)

// offer runs a prepared load of cfg against cfg.Broker and returns it after
// the last acknowledgement (or grace).
func offer(t testing.TB, cfg load.Config) *load.Load {
	t.Helper()
	l, err := load.Presign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Run(ctx, time.Now().Add(50*time.Millisecond), 20*time.Second); err != nil {
		t.Fatalf("load: %v", err)
	}
	return l
}

// TestAcknowledgedIsLogged: every QoS 1 PUBLISH the MQTT listener
// acknowledged is in the log after the server stops and starts again over
// its store, exactly once, and each gateway's messages are in its publish
// order; a consumer that restarts from its durable position reads only the
// rest.
func TestAcknowledgedIsLogged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "js")
	addr := testsvc.Addr(testsvc.FreePort(t))
	s, err := Start(ctx, Config{Dir: dir, MQTTAddr: addr, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := load.Config{Broker: addr, Gateways: 5, GPUs: 8, Rate: 250, Duration: 2 * time.Second}
	l := offer(t, cfg)
	acked := int(l.Acked.Load())
	if want := cfg.Gateways * cfg.PerGateway(); acked != want || int(l.Sent.Load()) != want {
		t.Fatalf("sent %d, acked %d; want %d each", l.Sent.Load(), acked, want)
	}
	s.Close()

	s, err = Start(ctx, Config{Dir: dir, MQTTAddr: addr, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cons, err := s.Consumer(ctx, "ingest", GatewaySubjects)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]uint64{} // gateway -> last seq
	counts := map[string]int{}
	var lastPos uint64
	check := func(m Message) error {
		if m.StreamSeq <= lastPos {
			t.Errorf("stream seq %d after %d", m.StreamSeq, lastPos)
		}
		lastPos = m.StreamSeq
		if prev, ok := seen[m.Gateway]; ok && m.Seq != prev+1 {
			t.Errorf("%s: seq %d after %d (want each once, in order)", m.Gateway, m.Seq, prev)
		}
		seen[m.Gateway] = m.Seq
		counts[m.Gateway]++
		return nil
	}
	half := acked / 2
	if err := Drain(ctx, cons, half, check); err != nil {
		t.Fatal(err)
	}
	// The consumer's position is durable: a new handle on the same durable
	// (another process taking the partition over) goes on after it.
	cons, err = s.Consumer(ctx, "ingest", GatewaySubjects)
	if err != nil {
		t.Fatal(err)
	}
	if err := Drain(ctx, cons, acked-half, check); err != nil {
		t.Fatal(err)
	}
	if len(counts) != cfg.Gateways {
		t.Errorf("%d gateways in the log, want %d", len(counts), cfg.Gateways)
	}
	for gw, n := range counts {
		if n != cfg.PerGateway() {
			t.Errorf("%s: %d messages in the log, want %d", gw, n, cfg.PerGateway())
		}
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.AckFloor.Stream != lastPos {
		t.Errorf("after draining: %d pending, ack floor %d; want 0 and %d", info.NumPending, info.AckFloor.Stream, lastPos)
	}
	// Reading does not delete: the log still holds everything for replay.
	st, err := s.JS.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	if si, err := st.Info(ctx); err != nil || si.State.Msgs != uint64(acked) {
		t.Errorf("stream holds %v messages (err %v), want %d", si, err, acked)
	}
}

// TestGatewaySubject: one gateway's filter selects its messages only, also
// for a gateway id with a '.' (nats-server's MQTT mapping).
func TestGatewaySubject(t *testing.T) {
	for gw, want := range map[string]string{
		"gw-1":     "$MQTT.msgs.twinchain.v1.gw.gw-1.>",
		"gw.site2": "$MQTT.msgs.twinchain.v1.gw.gw//site2.>",
	} {
		if got := GatewaySubject(gw); got != want {
			t.Errorf("GatewaySubject(%q) = %q, want %q", gw, got, want)
		}
	}
}

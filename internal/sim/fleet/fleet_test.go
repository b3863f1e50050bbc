package fleet

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

func TestSameSeedSameFleet(t *testing.T) {
	cfg := Config{Sites: 2, ServersPerSite: 3, GPUsPerServer: 4, Seed: 7, SiteGateways: true}
	a, _ := New(cfg)
	b, _ := New(cfg)
	if !reflect.DeepEqual(a.Registry(), b.Registry()) {
		t.Fatalf("two fleets from seed 7 have different registries")
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 100; i++ {
		ta := a.Gateways[0].Sample(t0, time.Second)
		tb := b.Gateways[0].Sample(t0, time.Second)
		if !reflect.DeepEqual(ta, tb) {
			t.Fatalf("sample %d differs between fleets from the same seed", i)
		}
	}
	c, _ := New(Config{Sites: 2, ServersPerSite: 3, GPUsPerServer: 4, Seed: 8, SiteGateways: true})
	if reflect.DeepEqual(a.Registry(), c.Registry()) {
		t.Errorf("fleets from seeds 7 and 8 have the same registry")
	}
	if got, want := len(a.Gateways), 2*3+2; got != want {
		t.Errorf("gateways = %d, want %d", got, want)
	}
}

// TestReadingsArePlausible runs a GPU for six simulated hours and checks the
// physics the dashboard and detectors rely on.
func TestReadingsArePlausible(t *testing.T) {
	f, _ := New(Config{Sites: 1, ServersPerSite: 1, GPUsPerServer: 8, Seed: 3})
	gw := f.Gateways[0]
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var busyPower, idlePower, busyTemp, idleTemp []float64
	for i := 0; i < 6*3600; i++ {
		tel := gw.Sample(t0.Add(time.Duration(i)*time.Second), time.Second)
		for _, s := range tel.GPUs {
			if s.TempC < 20 || s.TempC > 95 || s.PowerW < 40 || s.PowerW > 700 || s.UtilPct < 0 || s.UtilPct > 100 {
				t.Fatalf("implausible sample at %ds: %+v", i, s)
			}
			if i < 600 {
				continue // let temperatures settle
			}
			switch {
			case s.UtilPct > 70:
				busyPower, busyTemp = append(busyPower, s.PowerW), append(busyTemp, s.TempC)
			case s.UtilPct < 10:
				idlePower, idleTemp = append(idlePower, s.PowerW), append(idleTemp, s.TempC)
			}
		}
	}
	if len(busyPower) == 0 || len(idlePower) == 0 {
		t.Fatalf("six hours had %d busy and %d idle samples, want both", len(busyPower), len(idlePower))
	}
	if mean(busyPower) < mean(idlePower)+300 {
		t.Errorf("mean power busy %.0f W, idle %.0f W: power does not track utilisation", mean(busyPower), mean(idlePower))
	}
	if mean(busyTemp) < mean(idleTemp)+15 {
		t.Errorf("mean temperature busy %.1f C, idle %.1f C: temperature does not follow load", mean(busyTemp), mean(idleTemp))
	}
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// TestPublishThroughMosquitto publishes a small fleet through a real broker
// and checks every message a subscriber gets is signed by the registered key,
// in sequence per gateway, and that acknowledgements were counted.
func TestPublishThroughMosquitto(t *testing.T) {
	broker := testsvc.StartMosquitto(t, "")
	f, err := New(Config{Sites: 1, ServersPerSite: 2, GPUsPerServer: 2, Seed: 1, SiteGateways: true})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, g := range f.Registry().Gateways {
		keys[g.ID] = g.PublicKey
	}
	var mu sync.Mutex
	last := map[string]uint64{}
	kinds := map[wire.Kind]int{}
	var bad []string
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("test-sub"))
	if tok := sub.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe(wire.GatewayFilter(), 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		defer mu.Unlock()
		env, err := wire.Decode(m.Payload())
		if err != nil {
			bad = append(bad, err.Error())
			return
		}
		if err := env.Verify(keys[env.Gateway]); err != nil {
			bad = append(bad, env.Gateway+": "+err.Error())
			return
		}
		if env.Seq != last[env.Gateway]+1 && last[env.Gateway] != 0 {
			bad = append(bad, "out of sequence")
		}
		last[env.Gateway] = env.Seq
		kinds[env.Kind]++
	})
	if tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	p, err := NewPublisher(f, PublishConfig{Broker: broker.URL(), Rate: 20, SeqBase: 100}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var onAck atomic.Uint64
	p.OnAck = func(string, uint64) { onAck.Add(1) }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	acked := p.Stats.Acked.Load()
	testsvc.Eventually(t, 10*time.Second, "every acknowledged message at the subscriber", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := len(bad)
		for _, c := range kinds {
			n += c
		}
		return uint64(n) >= acked
	})
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d bad messages, first: %s", len(bad), bad[0])
	}
	for _, k := range []wire.Kind{wire.KindStatus, wire.KindFirmware, wire.KindTelemetry, wire.KindGPS} {
		if kinds[k] == 0 {
			t.Errorf("no %s messages received; got %v", k, kinds)
		}
	}
	if len(last) != len(f.Gateways) {
		t.Errorf("messages from %d gateways, want %d", len(last), len(f.Gateways))
	}
	sent, ack := p.Stats.Sent.Load(), p.Stats.Acked.Load()
	if sent < 20 || ack == 0 || ack > sent || p.Stats.Failed.Load() > 0 {
		t.Errorf("sent %d, acked %d, failed %d: want many sent, acks <= sent, none failed", sent, ack, p.Stats.Failed.Load())
	}
	if onAck.Load() != ack {
		t.Errorf("OnAck called %d times, want %d (acked)", onAck.Load(), ack)
	}
}

// TestStopsWithTheBrokerGone stops the broker under a publishing fleet, as
// make run's Ctrl-C stops twin-service and the fleet at once, and checks
// the fleet still stops (paho keeps a QoS 1 token open while it waits to
// reconnect) and counts what was never acknowledged as failed.
func TestStopsWithTheBrokerGone(t *testing.T) {
	broker := testsvc.StartMosquitto(t, "")
	f, err := New(Config{Sites: 1, ServersPerSite: 2, GPUsPerServer: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPublisher(f, PublishConfig{Broker: broker.URL(), Rate: 20, SeqBase: 100}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testsvc.Eventually(t, 10*time.Second, "messages acknowledged", func() bool { return p.Stats.Acked.Load() > 10 })
	broker.Stop()
	sent := p.Stats.Sent.Load()
	testsvc.Eventually(t, 10*time.Second, "messages sent with the broker gone", func() bool { return p.Stats.Sent.Load() > sent+4 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * ackGrace):
		t.Fatalf("Run still running %v after its context ended, with the broker gone", 3*ackGrace)
	}
	if st := &p.Stats; st.Failed.Load() == 0 || st.Acked.Load()+st.Failed.Load() != st.Sent.Load() {
		t.Errorf("sent %d, acked %d, failed %d: want the unacknowledged counted as failed", st.Sent.Load(), st.Acked.Load(), st.Failed.Load())
	}
}

// TestPublishSamplesPerMessage: a fleet publishing 4 samples per telemetry
// message through a real broker sends messages of 4 samples, 1/Rate apart,
// the newest at the envelope's time, which wire.DecodeTelemetry accepts.
func TestPublishSamplesPerMessage(t *testing.T) {
	broker := testsvc.StartMosquitto(t, "")
	f, err := New(Config{Sites: 1, ServersPerSite: 2, GPUsPerServer: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []wire.Telemetry
	var bad []string
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("test-sub"))
	if tok := sub.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe(wire.GatewayFilter(), 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		defer mu.Unlock()
		env, err := wire.Decode(m.Payload())
		if err != nil || env.Kind != wire.KindTelemetry {
			return
		}
		tel, err := wire.DecodeTelemetry(&env)
		if err != nil {
			bad = append(bad, err.Error())
			return
		}
		if last := tel.Latest(); !last.TS.Equal(env.Time) {
			bad = append(bad, "newest sample is not at the envelope's time")
		}
		got = append(got, tel)
	})
	if tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	p, err := NewPublisher(f, PublishConfig{Broker: broker.URL(), Rate: 20, SeqBase: 100, SamplesPerMessage: 4}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 10*time.Second, "four telemetry messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 4
	})
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d bad telemetry messages, first: %s", len(bad), bad[0])
	}
	for i, tel := range got {
		if len(tel.Samples) != 4 {
			t.Errorf("telemetry %d = %d samples, want 4", i, len(tel.Samples))
			continue
		}
		if d := tel.Samples[1].TS.Sub(tel.Samples[0].TS); d != 50*time.Millisecond || len(tel.Samples[0].GPUs) != 2 {
			t.Errorf("telemetry %d: samples %s apart with %d GPUs, want 50ms apart (20 Hz), 2 GPUs", i, d, len(tel.Samples[0].GPUs))
		}
	}
	if _, err := NewPublisher(f, PublishConfig{Broker: broker.URL(), Rate: 1, SamplesPerMessage: wire.MaxSamples + 1}, nil); err == nil {
		t.Errorf("NewPublisher(%d samples per message) = nil error, want one", wire.MaxSamples+1)
	}
}

package load

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"twinchain/internal/wire"
)

func TestQuantile(t *testing.T) {
	var h Histogram
	for i := 1; i <= 100; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	s := h.Snapshot()
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		got := s.Quantile(nil, c.q)
		if got < c.want || got > c.want*106/100 {
			t.Errorf("Quantile(%g) = %s, want %s to +5%%", c.q, got, c.want)
		}
	}
	h.Record(time.Second)
	if got := h.Snapshot().Quantile(s, 0.5); got < time.Second || got > 1060*time.Millisecond {
		t.Errorf("Quantile since snapshot = %s, want 1s to +5%%", got)
	}
}

func TestLag(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := &Monitor{heads: []headAt{{t0, 0, 0}, {t0.Add(time.Second), 100, 10}, {t0.Add(2 * time.Second), 200, 20}}}
	s := Sample{At: t0.Add(2 * time.Second)}
	// The head passed 150 at 1.5 s: a consumer at 150 is 50 messages and 0.5 s behind.
	if n, d := m.Lag(s, 150, false); n != 50 || d != 500*time.Millisecond {
		t.Errorf("Lag(150) = %g, %s, want 50, 500ms", n, d)
	}
	if n, d := m.Lag(s, 200, false); n != 0 || d != 0 {
		t.Errorf("Lag(200) = %g, %s, want 0, 0s (caught up)", n, d)
	}
	if n, d := m.Lag(s, 5, true); n != 15 || d != 1500*time.Millisecond {
		t.Errorf("Lag(events 5) = %g, %s, want 15, 1.5s", n, d)
	}
}

// TestDistinct: with Distinct, later messages are the signed ones again,
// each with the packet id it must carry.
func TestDistinct(t *testing.T) {
	cfg := Config{Gateways: 3, GPUs: 2, Rate: 30, Duration: time.Second, Distinct: 2}
	l, err := Presign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, gw := range l.gws {
		if len(gw.msgs) != cfg.PerGateway() || len(gw.msgs) < 5 {
			t.Fatalf("%s: %d messages, want %d (at least 5)", gw.id, len(gw.msgs), cfg.PerGateway())
		}
		for k := range gw.msgs {
			pk := publish(t, l, gw, k)
			if pk.PacketID != packetID(k) || pk.TopicName != topicOf(gw.id) {
				t.Errorf("%s message %d: packet id %d topic %q, want %d %q", gw.id, k, pk.PacketID, pk.TopicName, packetID(k), topicOf(gw.id))
			}
			if want := publish(t, l, gw, k%2).Payload; !bytes.Equal(pk.Payload, want) {
				t.Errorf("%s message %d: payload is not message %d's", gw.id, k, k%2)
			}
		}
	}
}

// publish decodes the PUBLISH packet gateway gw sends as its message k.
func publish(t *testing.T, l *Load, gw *gateway, k int) packets.Packet {
	t.Helper()
	m, done, err := l.message(gw, k)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	pk := packets.Packet{ProtocolVersion: 4}
	if err := pk.FixedHeader.Decode(m[0]); err != nil {
		t.Fatal(err)
	}
	n, skip, err := packets.DecodeLength(bytes.NewReader(m[1:]))
	if err != nil {
		t.Fatal(err)
	}
	pk.FixedHeader.Remaining = n
	if 1+skip+n != len(m) {
		t.Fatalf("%s message %d: %d bytes, the header says %d", gw.id, k, len(m), 1+skip+n)
	}
	if err := pk.PublishDecode(m[1+skip:]); err != nil {
		t.Fatalf("%s message %d: %v", gw.id, k, err)
	}
	pk.Payload = bytes.Clone(pk.Payload) // the buffer goes back to the pool
	return pk
}

// TestHeldCompressed: the pre-signed messages are held compressed, several
// times smaller than they go on the wire (in the heap, not only by their
// lengths), and a run whose compressed messages would pass MaxBytes is
// refused.
func TestHeldCompressed(t *testing.T) {
	cfg := Config{Gateways: 4, Rate: 4, Duration: 10 * time.Second, Samples: 10}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, err := Presign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if live := int64(after.HeapAlloc) - int64(before.HeapAlloc); live*3 > l.Bytes {
		t.Errorf("the prepared load takes %d bytes of heap for %d bytes on the wire, want at least 3x less", live, l.Bytes)
	}
	var onWire int64
	for _, gw := range l.gws {
		for k := range gw.msgs {
			m, done, err := l.message(gw, k)
			if err != nil {
				t.Fatal(err)
			}
			onWire += int64(len(m))
			done()
		}
	}
	if onWire != l.Bytes || l.Held*4 > l.Bytes {
		t.Errorf("%d bytes on the wire held in %d, Bytes = %d: want Bytes = the wire's, held at least 4x smaller", onWire, l.Held, l.Bytes)
	}
	cfg.Gateways, cfg.Rate, cfg.MaxBytes = 8, 8, l.Held/4
	if _, err := Presign(cfg); err == nil || !strings.Contains(err.Error(), "over the") {
		t.Errorf("Presign with MaxBytes %d (a quarter of 4 gateways' messages) for 8 gateways = %v, want over the limit", cfg.MaxBytes, err)
	}
}

// TestSamplesPerMessage: with Samples 5 each pre-signed message carries
// five samples of the host, period/5 apart, the newest at the envelope's
// time, which wire.DecodeTelemetry accepts.
func TestSamplesPerMessage(t *testing.T) {
	cfg := Config{Gateways: 2, GPUs: 3, Rate: 1, Duration: 3 * time.Second, Samples: 5}
	l, err := Presign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	step := cfg.Period() / 5
	for _, gw := range l.gws {
		for k := range gw.msgs {
			pk := publish(t, l, gw, k)
			env, err := wire.Decode(pk.Payload)
			if err != nil {
				t.Fatal(err)
			}
			tel, err := wire.DecodeTelemetry(&env)
			if err != nil || len(tel.Samples) != 5 {
				t.Fatalf("%s message %d: %d samples, %v; want 5", gw.id, k, len(tel.Samples), err)
			}
			for j, s := range tel.Samples {
				if want := env.Time.Add(-time.Duration(4-j) * step); !s.TS.Equal(want) || len(s.GPUs) != 3 {
					t.Errorf("%s message %d sample %d at %s with %d GPUs, want %s with 3", gw.id, k, j, s.TS, len(s.GPUs), want)
				}
			}
		}
	}
	if err := (&Config{Gateways: 1, Rate: 1, Duration: time.Second, Samples: wire.MaxSamples + 1}).Validate(); err == nil {
		t.Errorf("Validate(%d samples) = nil, want an error", wire.MaxSamples+1)
	}
}

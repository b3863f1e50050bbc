package broker

import (
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/ingest"
	"twinchain/internal/wire"
)

// slowStore delays the ingest's answer to every message by delay: in the
// ingest's writer goroutine for SubmitAsync (each commit's answers, and so
// the next commit, wait), in the connection's for Submit. It stands in for
// a disk that commits more slowly than the gateways publish, which a test
// cannot make of the real one; the ingest and its store behind it are real.
type slowStore struct {
	Submitter
	delay time.Duration
}

func (s slowStore) Submit(src ingest.Source, topic string, payload []byte) (ingest.Outcome, error) {
	out, err := s.Submitter.Submit(src, topic, payload)
	time.Sleep(s.delay)
	return out, err
}

func (s slowStore) SubmitAsync(src ingest.Source, topic string, payload []byte, done func(ingest.Outcome, error)) {
	s.Submitter.SubmitAsync(src, topic, payload, func(out ingest.Outcome, err error) {
		time.Sleep(s.delay)
		done(out, err)
	})
}

// bigTelemetry is a 10-sample, 8-GPU telemetry body of host (about 20 KB
// sealed), its samples a second apart up to at.
func bigTelemetry(host string, at time.Time) wire.Telemetry {
	tel := wire.Telemetry{Host: host}
	for i := range 10 {
		s := wire.TelemetrySample{TS: at.Add(time.Duration(i-9) * time.Second)}
		for g := range 8 {
			s.GPUs = append(s.GPUs, wire.GPUSample{Asset: fmt.Sprintf("%s.gpu%d", host, g), Index: g, UUID: fmt.Sprintf("GPU-%s-%d", host, g),
				TempC: 55 + float64(i), PowerW: 300, PowerLimitW: 700, UtilPct: 90, MemUtilPct: 40, SMClockMHz: 1980, MemClockMHz: 2619})
		}
		tel.Samples = append(tel.Samples, s)
	}
	return tel
}

// TestInflightBytesBounded publishes 20 KB messages from real MQTT clients,
// without waiting for their PUBACKs, far faster than the store commits.
// The bytes the broker holds between a message's read and the ingest's
// answer stay within max_inflight_bytes per connection and
// max_inflight_bytes_total in all (the broker's own counters, the most at
// once), messages did wait for room (the bound was reached), and every
// acknowledged message is stored, each once and in order.
func TestInflightBytesBounded(t *testing.T) {
	for _, ack := range []string{AckPipelined, AckSync} {
		t.Run(ack, func(t *testing.T) { testInflightBytesBounded(t, ack) })
	}
}

func testInflightBytesBounded(t *testing.T, ack string) {
	const (
		gateways  = 3
		perGW     = 20
		connLimit = 64 << 10
	)
	// In sync mode a connection has one message in flight: the bound in
	// all is reached with room for two of the three.
	limit := int64(96 << 10)
	if ack == AckSync {
		limit = 48 << 10
	}
	gws := make([]string, gateways)
	for i := range gws {
		gws[i] = fmt.Sprintf("gw-big-%d", i)
	}
	bcfg := Config{Ack: ack, MaxPacketSize: 48 << 10, MaxInflightBytes: connLimit, MaxInflightBytesTotal: limit}
	s := startStackWrapped(t, ingest.Config{CheckpointInterval: time.Nanosecond}, true, bcfg,
		func(in Submitter) Submitter { return slowStore{Submitter: in, delay: 15 * time.Millisecond} }, gws...)

	start := time.Now().Add(-time.Hour)
	var size int
	msgs := make([][][]byte, gateways)
	for i, gw := range gws {
		for seq := uint64(1); seq <= perGW; seq++ {
			b, err := wire.Seal(key(gw), gw, seq, start.Add(time.Duration(seq)*10*time.Second), wire.KindTelemetry,
				bigTelemetry("srv-"+gw, start.Add(time.Duration(seq)*10*time.Second)))
			if err != nil {
				t.Fatal(err)
			}
			msgs[i] = append(msgs[i], b)
			size = len(b)
		}
	}
	if size < 15<<10 || size > 40<<10 {
		t.Fatalf("a message is %d bytes, want 15-40 KB for this test", size)
	}

	var toks []paho.Token
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, gw := range gws {
		c := s.connect(t, gw, nil)
		wg.Add(1)
		go func() { // every message at once, PUBACKs not awaited
			defer wg.Done()
			for _, m := range msgs[i] {
				tok := c.Publish(wire.Topic(gw, wire.KindTelemetry), 1, false, m)
				mu.Lock()
				toks = append(toks, tok)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, tok := range toks {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			t.Fatalf("publish not acknowledged: %v", tok.Error())
		}
	}

	st := s.b.Stats().Inflight
	t.Logf("%d messages of %d bytes: %+v", len(toks), size, st)
	if st.PeakBytes > limit || st.PeakBytes < int64(size) {
		t.Errorf("most bytes in flight at once = %d, want %d (one message) to %d (max_inflight_bytes_total)", st.PeakBytes, size, limit)
	}
	if ack == AckPipelined && (st.ConnPeakBytes > connLimit || st.ConnPeakBytes < int64(size)) {
		t.Errorf("most bytes of one connection in flight = %d, want %d to %d (max_inflight_bytes)", st.ConnPeakBytes, size, connLimit)
	}
	if st.Waited == 0 {
		t.Errorf("no message waited for room: the bound was never reached (%+v)", st)
	}
	if st.Bytes != 0 || st.WaitingBytes != 0 {
		t.Errorf("after every PUBACK: %d bytes in flight, %d waiting; want 0 and 0", st.Bytes, st.WaitingBytes)
	}
	inStats := s.in.Stats()
	for _, gw := range gws {
		g := gatewayStats(inStats, gw)
		if g.Accepted != perGW || g.LastSeq != perGW || g.Gaps != 0 || len(g.Rejected) != 0 {
			t.Errorf("%s: accepted %d, last seq %d, gaps %d, rejected %v; want %d, %d, 0, none", gw, g.Accepted, g.LastSeq, g.Gaps, g.Rejected, perGW, perGW)
		}
		gpu, err := s.store.Asset("srv-" + gw + ".gpu7")
		if err != nil || gpu.Health.Samples != perGW*10 {
			t.Errorf("%s.gpu7: %d samples stored (%v), want %d", "srv-"+gw, gpu.Health.Samples, err, perGW*10)
		}
	}
}

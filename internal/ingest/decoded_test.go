package ingest

import (
	"fmt"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"twinchain/internal/wire"
)

// TestDecoded: an accepted message is handed to the log's consumers as the
// ingest decoded it, by its log position; a rejected or duplicate message
// is not, nor a position the ring has moved past.
func TestDecoded(t *testing.T) {
	r := newRig(t, Config{}, "gw-a")
	tel := telemetry("srv-a", 2, 0)
	raw := seal(t, "gw-a", 1, t0, wire.KindTelemetry, tel)
	out := r.submit("gw-a", wire.KindTelemetry, raw)
	if out.Reason != "" {
		t.Fatalf("telemetry: %s %v", out.Reason, out.Err)
	}
	d, ok := r.in.Decoded(out.Pos)
	tel = wire.Telemetry{Host: tel.Host, Samples: []wire.TelemetrySample{{TS: t0, GPUs: tel.GPUs}}} // as wire.DecodeTelemetry returns it
	if !ok || d.Pos != out.Pos || d.Telemetry == nil || !reflect.DeepEqual(*d.Telemetry, tel) {
		t.Fatalf("Decoded(%d) = %+v, %v, want the telemetry %+v", out.Pos, d, ok, tel)
	}
	if d.Env.Gateway != "gw-a" || d.Env.Seq != 1 || !d.Env.Time.Equal(t0) || d.Env.Body != nil || d.Env.Sig != nil || d.Status != nil {
		t.Errorf("Decoded envelope = %+v, want gw-a seq 1 at %s without body bytes and signature, no status", d.Env, t0)
	}
	st := r.submit("gw-a", wire.KindStatus, seal(t, "gw-a", 2, t0.Add(time.Second), wire.KindStatus, status(wire.StateOnline)))
	if d, ok := r.in.Decoded(st.Pos); !ok || d.Status == nil || d.Status.State != wire.StateOnline || d.Telemetry != nil {
		t.Errorf("Decoded(status %d) = %+v, %v, want the online status only", st.Pos, d, ok)
	}
	if dup := r.submit("gw-a", wire.KindTelemetry, raw); dup.Reason != ReasonDuplicate {
		t.Fatalf("redelivery: %s, want duplicate", dup.Reason)
	}
	for _, pos := range []uint64{0, st.Pos + 1, out.Pos + decodedRing} {
		if d, ok := r.in.Decoded(pos); ok {
			t.Errorf("Decoded(%d) = %+v, want none (not stored, or not the message in that slot)", pos, d)
		}
	}
}

// TestDecodedBytes: the ring holds at most decodedBytes of envelopes; big
// messages push the oldest out, and the newest is always there.
func TestDecodedBytes(t *testing.T) {
	var c decodedCache
	small, big := &message{raw: make([]byte, 2500)}, &message{raw: make([]byte, 100_000)}
	small.env.Kind, big.env.Kind = wire.KindStatus, wire.KindStatus
	pos := uint64(0)
	for range 3 * decodedRing { // small ones: the count bounds the ring
		pos++
		c.put(pos, small)
	}
	if c.bytes != decodedRing*2500 || c.slots[(pos+1)%decodedRing].Load().Pos != pos+1-decodedRing {
		t.Errorf("after small messages: %d bytes, want the whole ring (%d)", c.bytes, decodedRing*2500)
	}
	for range 2000 {
		pos++
		c.put(pos, big)
	}
	held := 0
	for i := range c.slots {
		if d := c.slots[i].Load(); d != nil {
			held++
		}
	}
	if c.bytes > decodedBytes || held != decodedBytes/100_000 || c.slots[pos%decodedRing].Load().Pos != pos {
		t.Errorf("after 100 KB messages: %d bytes (limit %d), %d held (want %d), newest held: %v", c.bytes, decodedBytes, held, decodedBytes/100_000, c.slots[pos%decodedRing].Load() != nil)
	}
	sum := 0
	for i := range c.size {
		sum += int(c.size[i])
	}
	if sum != c.bytes {
		t.Errorf("slot sizes sum to %d, counted %d", sum, c.bytes)
	}
}

// TestRejectionsKeepNoPacket: the embedded broker hands the ingest a topic
// and a client id that point into the whole packet (mochi decodes strings
// without copying); a rejection the stats keep must not keep that packet
// alive (300 rejected 200 KB messages held 60 MB before).
func TestRejectionsKeepNoPacket(t *testing.T) {
	r := newRig(t, Config{}, "gw-a")
	var freed atomic.Int64
	const n = 20
	for i := range n {
		pk := make([]byte, 200_000) // a PUBLISH packet: topic, then payload
		topic := wire.Topic("gw-a", wire.KindStatus)
		copy(pk, topic)
		copy(pk[len(topic):], fmt.Sprintf("client-%d", i))
		runtime.AddCleanup(&pk[0], func(struct{}) { freed.Add(1) }, struct{}{})
		alias := func(from, to int) string { return unsafe.String(&pk[from], to-from) }
		out, err := r.in.Submit(Source{Client: alias(len(topic), len(topic)+8), Remote: "192.0.2.1:5000"}, alias(0, len(topic)), pk[len(topic)+16:])
		if err != nil || out.Reason != ReasonMalformed {
			t.Fatalf("Submit = %+v, %v; want a malformed rejection", out, err)
		}
	}
	if got := r.in.Stats().Rejected[ReasonMalformed]; got != n {
		t.Fatalf("%d malformed rejections counted, want %d", got, n)
	}
	for range 20 {
		runtime.GC()
		if freed.Load() == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d of %d rejected packets still held after GC: the stats keep strings that point into them", n-freed.Load(), n)
}

// TestDecodedBeforeVisible: a consumer that finds a message in the log
// finds it decoded too. The ring was filled after the commit made the batch
// readable; a consumer reading in between decoded the envelope again (the
// telemetry writer's test saw it once in CI). A reader spins on the log's
// newest position while single-message batches commit.
func TestDecodedBeforeVisible(t *testing.T) {
	r := newRig(t, Config{}, "gw-a")
	tel := telemetry("srv-a", 2, 0)
	if out := r.submit("gw-a", wire.KindTelemetry, seal(t, "gw-a", 1, t0, wire.KindTelemetry, tel)); out.Reason != "" {
		t.Fatalf("first contact: %s %v", out.Reason, out.Err)
	}
	var stop atomic.Bool
	var seen, missed int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for last := r.store.LastPos(); !stop.Load(); {
			if p := r.store.LastPos(); p != last {
				last = p
				seen++
				if _, ok := r.in.Decoded(p); !ok {
					missed++
				}
			}
		}
	}()
	const n = 100
	for i := range n {
		seq := uint64(i + 2)
		if out := r.submit("gw-a", wire.KindTelemetry, seal(t, "gw-a", seq, t0.Add(time.Duration(seq)*time.Second), wire.KindTelemetry, tel)); out.Reason != "" || out.Pos == 0 {
			t.Fatalf("telemetry %d: %+v", seq, out)
		}
	}
	stop.Store(true)
	<-done
	if seen == 0 || missed != 0 {
		t.Errorf("reader found %d of %d new log positions it saw not yet decoded, want 0", missed, seen)
	}
}

// TestDecodedDrop: a batch whose commit failed leaves the ring, and its
// bytes leave the count: the next batch takes its positions, and a consumer
// must never be handed a message the log does not hold.
func TestDecodedDrop(t *testing.T) {
	var c decodedCache
	msg := func(pos uint64, n int) *item {
		it := &item{out: Outcome{Pos: pos}}
		it.m.raw, it.m.env.Kind = make([]byte, n), wire.KindStatus
		return it
	}
	failed := []*item{msg(3, 300), msg(4, 400), {change: &change{}, out: Outcome{Pos: 5}}}
	c.putBatch([]*item{msg(1, 100), msg(2, 200)})
	c.putBatch(failed)
	c.drop(failed)
	for pos, want := range map[uint64]bool{1: true, 2: true, 3: false, 4: false, 5: false} {
		if d := c.slots[pos%decodedRing].Load(); (d != nil && d.Pos == pos) != want {
			t.Errorf("position %d held = %v, want %v", pos, d != nil, want)
		}
	}
	if c.bytes != 300 {
		t.Errorf("bytes after the drop = %d, want 300 (positions 1 and 2)", c.bytes)
	}
	c.putBatch([]*item{msg(3, 50)})
	if d := c.slots[3].Load(); d == nil || d.Pos != 3 || c.bytes != 350 {
		t.Errorf("position 3 after the next batch: %+v, %d bytes; want held, 350 bytes", d, c.bytes)
	}
}

package ingest

import (
	"reflect"
	"testing"
	"time"

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

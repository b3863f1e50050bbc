package ingest

import (
	"testing"
	"time"

	"twinchain/internal/latency"
	"twinchain/internal/wire"
)

// TestStagesTimed: every stored message is timed in each stage of its way
// to the store (the rig's clock moves 1 ms a call, so each takes some
// time); one the checks reject is not timed.
func TestStagesTimed(t *testing.T) {
	r := newRig(t, Config{}, "gw-1")
	for seq := uint64(1); seq <= 5; seq++ {
		if out := r.submit("gw-1", wire.KindStatus, seal(t, "gw-1", seq, t0.Add(time.Hour), wire.KindStatus, status(wire.StateOnline))); out.Reason != "" {
			t.Fatalf("message %d: %s %v", seq, out.Reason, out.Err)
		}
	}
	forged, err := wire.Seal(testKey("someone else"), "gw-1", 6, t0.Add(time.Hour), wire.KindStatus, status(wire.StateOnline))
	if err != nil {
		t.Fatal(err)
	}
	if out := r.submit("gw-1", wire.KindStatus, forged); out.Reason != ReasonBadSignature {
		t.Fatalf("forged message: %q, want %q", out.Reason, ReasonBadSignature)
	}
	st := r.in.Stats().Stages
	for name, s := range map[string]latency.Snapshot{"check": st.Check, "queue": st.Queue, "commit": st.Commit} {
		if s.Count() != 5 {
			t.Errorf("%s: %d messages timed, want 5", name, s.Count())
		}
		if s.Sum < 5*time.Millisecond {
			t.Errorf("%s: %s in all, want at least 1 ms each", name, s.Sum)
		}
	}
}

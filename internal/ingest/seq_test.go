package ingest

import (
	"crypto/ed25519"
	"fmt"
	"math"
	"testing"
	"time"

	"twinchain/internal/registry"
	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestSeqTooFar: one validly signed message with a sequence number far
// above the highest (2^64-1 in the issue) is refused and moves nothing, so
// the gateway's next messages are still applied.
func TestSeqTooFar(t *testing.T) {
	const gw = "gw-far"
	r := newRig(t, Config{}, gw)
	msg := func(seq uint64) []byte {
		return seal(t, gw, seq, t0.Add(time.Duration(seq%1000)*time.Second), wire.KindStatus, status(wire.StateOnline))
	}
	for _, s := range []struct {
		seq  uint64
		want Reason
	}{
		{math.MaxUint64, ReasonSeqTooFar}, // even as a stream's first
		{1, ""}, {2, ""},
		{math.MaxUint64, ReasonSeqTooFar},
		{2 + MaxSeqJump + 1, ReasonSeqTooFar},
		{3, ""},
		{3 + MaxSeqJump, ""}, // exactly the limit: a gap, accepted
		{4, ReasonReplay},    // now older than the window, never stored
	} {
		out := r.submit(gw, wire.KindStatus, msg(s.seq))
		if out.Reason != s.want {
			t.Errorf("Submit(seq %d) = %q (%v), want %q", s.seq, out.Reason, out.Err, s.want)
		}
	}
	st := r.in.Stats()
	if st.Rejected[ReasonSeqTooFar] != 3 || st.Gateways[0].LastSeq != 3+MaxSeqJump {
		t.Errorf("after: rejected %v, last seq %d; want 3 seq_too_far and last seq %d", st.Rejected, st.Gateways[0].LastSeq, 3+MaxSeqJump)
	}
	if out := r.submit(gw, wire.KindStatus, msg(4+MaxSeqJump)); !out.Accepted() {
		t.Errorf("Submit(next after the jump) = %q (%v), want accepted", out.Reason, out.Err)
	}
}

// TestReinstalledAgent: an agent re-keyed (or reinstalled with a new key)
// starts again at sequence 1 in a new epoch: nothing is lost and nothing
// is a replay. Its old key's queued messages are accepted in their own
// epoch (TestRetiredKey); if the old key is ever registered again, its
// stream (and its replays) come back.
func TestReinstalledAgent(t *testing.T) {
	const gw = "gw-re"
	r := newRig(t, Config{SeqWindow: 64}, gw)
	oldKey, newKey := testKey(gw), testKey(gw+" reinstalled")
	msg := func(key ed25519.PrivateKey, seq uint64, variant int) []byte {
		b, err := wire.Seal(key, gw, seq, t0.Add(time.Duration(seq%1000)*time.Second+time.Duration(variant)), wire.KindStatus, status(wire.StateOnline))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	submit := func(step string, payload []byte, want Reason) {
		t.Helper()
		if out := r.submit(gw, wire.KindStatus, payload); out.Reason != want {
			t.Errorf("%s: Submit = %q (%v), want %q", step, out.Reason, out.Err, want)
		}
	}
	rekey := func(key ed25519.PrivateKey) {
		t.Helper()
		if err := r.reg.Put(registry.Gateway{ID: gw, PublicKey: key.Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(1); seq <= 100; seq++ {
		submit("old key", msg(oldKey, seq, 0), "")
	}
	rekey(newKey)
	for seq := uint64(1); seq <= 5; seq++ {
		submit("new key from 1", msg(newKey, seq, 0), "")
	}
	// An agent re-keyed but not reinstalled keeps its counter: its first
	// number in a new epoch may be anywhere.
	farKey := testKey(gw + " re-keyed after years")
	rekey(farKey)
	submit("re-keyed agent keeps its counter", msg(farKey, 5_000_000, 0), "")
	submit("re-keyed agent's next", msg(farKey, 5_000_001, 0), "")
	rekey(newKey)
	submit("new key redelivered", msg(newKey, 5, 0), ReasonDuplicate)
	submit("old agent's queued message after the re-key (retired key, own epoch)", msg(oldKey, 101, 0), "")
	r.reopen(Config{SeqWindow: 64})
	submit("new key after a restart", msg(newKey, 6, 0), "")
	submit("new key replayed after a restart", msg(newKey, 3, 1), ReasonReplay)

	rekey(oldKey) // the old key comes back: its stream, not a fresh one
	submit("old key back: captured message replayed", msg(oldKey, 100, 1), ReasonReplay)
	submit("old key back: older than its window", msg(oldKey, 2, 1), ReasonReplay)
	submit("old key back: next", msg(oldKey, 102, 0), "")

	for _, rj := range r.in.Recent(time.Time{}) {
		if rj.Reason == ReasonReplay && rj.Seq <= 5 && rj.Seq != 3 && rj.Seq != 2 {
			t.Errorf("a replay rejection of the new stream: %+v", rj)
		}
	}
	if got := r.store.LastPos(); got != 100+6+2+1+1 {
		t.Errorf("messages stored = %d, want %d", got, 100+6+2+1+1)
	}
	events, err := r.store.AssetEvents(gw, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == twin.EventSequenceGap {
			t.Errorf("a new epoch made a sequence gap event: %+v", e)
		}
	}
}

// TestRetiredKey: a re-keyed agent's queue still holds messages signed
// with its old key. They are accepted in the old key's epoch, before and
// after the new key's first messages, each once; a message of the retired
// key with a reading time after its retirement, or arriving after
// registry.RetiredKeyWindow, is a bad signature, as is every message of a
// key retired MaxRetiredKeys re-keys ago or of a deleted (revoked) gateway.
func TestRetiredKey(t *testing.T) {
	const gw = "gw-rk"
	r := newRig(t, Config{SeqWindow: 64, MaxClockSkew: time.Minute}, gw)
	regNow := t0.Add(time.Hour)
	r.reg.Clock(func() time.Time { return regNow })
	ingestNow := t0.Add(time.Hour)
	r.clock = func() time.Time { return ingestNow }
	r.reopen(Config{SeqWindow: 64, MaxClockSkew: time.Minute})
	key := func(i int) ed25519.PrivateKey { return testKey(fmt.Sprintf("%s key %d", gw, i)) }
	k0 := testKey(gw)
	msg := func(k ed25519.PrivateKey, seq uint64, at time.Time) []byte {
		b, err := wire.Seal(k, gw, seq, at, wire.KindStatus, status(wire.StateOnline))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	submit := func(step string, payload []byte, want Reason) {
		t.Helper()
		if out := r.submit(gw, wire.KindStatus, payload); out.Reason != want {
			t.Errorf("%s: Submit = %q (%v), want %q", step, out.Reason, out.Err, want)
		}
	}
	rekey := func(k ed25519.PrivateKey) {
		t.Helper()
		if err := r.reg.Put(registry.Gateway{ID: gw, PublicKey: k.Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	at := func(seq uint64) time.Time { return t0.Add(time.Duration(seq) * time.Second) }
	for seq := uint64(1); seq <= 10; seq++ {
		submit("old key", msg(k0, seq, at(seq)), "")
	}
	queued := make([][]byte, 0, 10) // signed before the re-key, not yet sent
	for seq := uint64(11); seq <= 20; seq++ {
		queued = append(queued, msg(k0, seq, at(seq)))
	}
	rekey(key(1))
	submit("new key first", msg(key(1), 1, at(30)), "")
	for i, b := range queued[:5] {
		submit(fmt.Sprintf("queued old-key message %d", 11+i), b, "")
	}
	submit("new key next", msg(key(1), 2, at(31)), "")
	for i, b := range queued[5:] {
		submit(fmt.Sprintf("queued old-key message %d", 16+i), b, "")
	}
	submit("queued old-key message redelivered", queued[0], ReasonDuplicate)
	submit("old key, seq reused", msg(k0, 12, at(12).Add(time.Millisecond)), ReasonReplay)
	submit("old key, reading time after its retirement", msg(k0, 21, regNow.Add(2*time.Minute)), ReasonBadSignature)
	submit("new key after the old stream", msg(key(1), 3, at(32)), "")

	ingestNow = regNow.Add(registry.RetiredKeyWindow)
	submit("old key after the window", msg(k0, 21, at(21)), ReasonBadSignature)
	ingestNow = regNow.Add(time.Minute)

	for i := 2; i <= 1+registry.MaxRetiredKeys; i++ {
		rekey(key(i))
	}
	g, _ := r.reg.Get(gw)
	if len(g.Retired) != registry.MaxRetiredKeys {
		t.Fatalf("retired keys = %d, want %d", len(g.Retired), registry.MaxRetiredKeys)
	}
	submit("key retired more than MaxRetiredKeys re-keys ago", msg(k0, 22, at(22)), ReasonBadSignature)
	submit("key 1, still kept", msg(key(1), 4, at(33)), "")

	if _, err := r.reg.Delete(gw); err != nil {
		t.Fatal(err)
	}
	rekey(key(1 + registry.MaxRetiredKeys))
	submit("retired key of a deleted gateway", msg(key(2), 1, at(34)), ReasonBadSignature)

	st := r.in.Stats()
	if got, want := st.Gateways[0].Accepted, uint64(10+10+3+1); got != want {
		t.Errorf("accepted = %d, want %d", got, want)
	}
	if st.Rejected[ReasonBadSignature] != 4 || st.Rejected[ReasonReplay] != 1 {
		t.Errorf("rejected = %v, want 4 bad_signature and 1 replay", st.Rejected)
	}
}

// TestRetryTable pins what the agent does with each rejection reason (the
// table in Reason.Retry and docs/design.md): a new reason must be placed.
func TestRetryTable(t *testing.T) {
	keep := map[Reason]bool{
		ReasonDuplicate: false, ReasonReplay: false, ReasonBadSignature: false, ReasonMalformed: false,
		ReasonOversize: false, ReasonTopicMismatch: false,
		ReasonUnknownGateway: true, ReasonUnboundAsset: true, ReasonSeqTooFar: true, ReasonClockAhead: true, ReasonBadSamples: false,
	}
	for _, r := range Reasons {
		want, ok := keep[r]
		if !ok {
			t.Errorf("reason %s is not in the agent's table", r)
			continue
		}
		if r.Retry() != want {
			t.Errorf("%s.Retry() = %v, want %v", r, r.Retry(), want)
		}
		if (Outcome{Reason: r}).Ack() == want {
			t.Errorf("Outcome{%s}.Ack() = %v, want %v", r, !want, !want)
		}
	}
	if !(Outcome{}).Ack() {
		t.Error("a stored message is not acknowledged")
	}
}

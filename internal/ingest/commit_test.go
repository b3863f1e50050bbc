package ingest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"twinchain/internal/wire"
)

// TestCommitInterval: with CommitInterval set, a message after a quiet
// spell is committed at once; one that comes right after a commit waits
// for the rest of the interval; and messages that come meanwhile go in
// one commit together. (Bounds are loose: the waits are 1 s, what is
// checked is that the writer waits for them, or does not.)
func TestCommitInterval(t *testing.T) {
	const interval = time.Second
	gws := make([]string, 20)
	for i := range gws {
		gws[i] = fmt.Sprintf("gw-%02d", i)
	}
	r := newRig(t, Config{CommitInterval: interval}, gws...)
	msg := func(gw string, seq uint64) []byte {
		return seal(t, gw, seq, t0.Add(time.Hour+time.Duration(seq)*time.Second), wire.KindStatus, status(wire.StateOnline))
	}
	timed := func(gw string, seq uint64) time.Duration {
		start := time.Now()
		if out := r.submit(gw, wire.KindStatus, msg(gw, seq)); out.Reason != "" {
			t.Fatalf("%s %d: %s %v", gw, seq, out.Reason, out.Err)
		}
		return time.Since(start)
	}

	time.Sleep(interval) // no commit yet: the first is a quiet spell's
	if took := timed(gws[0], 1); took > interval/2 {
		t.Errorf("a message after a quiet spell took %s, want it committed at once (interval %s)", took, interval)
	}
	if took := timed(gws[0], 2); took < interval*3/4 {
		t.Errorf("a message right after a commit took %s, want it to wait for most of the interval %s", took, interval)
	}

	// Right after that commit, 20 messages at once: they wait for the
	// interval's end and go in one commit (two if a slow machine let the
	// interval pass before some were queued).
	before := r.in.Stats().Commits
	var wg sync.WaitGroup
	for _, gw := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := r.in.Submit(Source{}, wire.Topic(gw, wire.KindStatus), msg(gw, 3)); err != nil || out.Reason != "" {
				t.Errorf("%s: %v %s %v", gw, err, out.Reason, out.Err)
			}
		}()
	}
	wg.Wait()
	if n := r.in.Stats().Commits - before; n < 1 || n > 2 {
		t.Errorf("20 messages at once made %d commits, want 1 (or 2)", n)
	}
	for _, gw := range gws {
		if a, err := r.store.Asset(gw); err != nil || a.LastSeen.IsZero() {
			t.Errorf("%s not stored: %v (%+v)", gw, err, a)
		}
	}
}

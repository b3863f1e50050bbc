package ingest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"twinchain/internal/wire"
)

// TestSubmitAsyncAfterStop: SubmitAsync calls back exactly once, with
// ErrClosed, when the ingest has stopped, and every call made while it
// stops is answered too (stored or ErrClosed), none left in the queue.
func TestSubmitAsyncAfterStop(t *testing.T) {
	const gw = "gw-a"
	r := newRig(t, Config{QueueSize: 64}, gw)
	var calls, answered, closed atomic.Int64
	submit := func(seq uint64) {
		calls.Add(1)
		var once atomic.Bool
		r.in.SubmitAsync(Source{}, wire.Topic(gw, wire.KindStatus), seal(t, gw, seq, t0, wire.KindStatus, status(wire.StateOnline)), func(_ Outcome, err error) {
			if !once.CompareAndSwap(false, true) {
				t.Errorf("seq %d answered twice", seq)
			}
			if errors.Is(err, ErrClosed) {
				closed.Add(1)
			}
			answered.Add(1)
		})
	}
	// Submitters race with the stop.
	var wg sync.WaitGroup
	var seq atomic.Uint64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				submit(seq.Add(1))
			}
		}()
	}
	r.stop()
	r.stop = nil
	defer r.store.Close()
	wg.Wait()
	// And after it.
	for range 200 {
		submit(seq.Add(1))
	}
	deadline := time.Now().Add(10 * time.Second)
	for answered.Load() < calls.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if answered.Load() != calls.Load() || closed.Load() < 200 {
		t.Errorf("%d SubmitAsync calls, %d answered (%d with ErrClosed), want every one answered and the 200 after the stop with ErrClosed", calls.Load(), answered.Load(), closed.Load())
	}
}

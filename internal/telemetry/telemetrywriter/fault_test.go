package telemetrywriter_test

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"twinchain/internal/telemetry/telemetrywriter"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// fullDisk is the real store whose cursor writes fail while full is set,
// as bbolt's do when the disk is full; it counts the cursor writes.
type fullDisk struct {
	*twinstore.Store
	full     atomic.Bool
	attempts atomic.Int64 // failed
	writes   atomic.Int64 // stored
}

func (d *fullDisk) SetCursor(name string, pos uint64) error {
	if d.full.Load() {
		d.attempts.Add(1)
		return fmt.Errorf("set cursor %s: write twins.db: %w", name, syscall.ENOSPC)
	}
	d.writes.Add(1)
	return d.Store.SetCursor(name, pos)
}

// TestWriterSurvivesFullDisk: a cursor write that fails (a full disk) does
// not end the writer: it reports the failure, tries again, and goes on
// from where it was once the write succeeds.
func TestWriterSurvivesFullDisk(t *testing.T) {
	r := newRig(t)
	disk := &fullDisk{Store: r.store}
	disk.full.Store(true)
	w := telemetrywriter.New(disk, r.in, r.ts, slog.New(slog.DiscardHandler), telemetrywriter.Options{Poll: 20 * time.Millisecond, Retry: 20 * time.Millisecond})
	r.start(w.Run)
	for i := range 5 {
		r.submit(i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for disk.attempts.Load() < 3 || w.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %d failed cursor writes, Err() = %v; want retries and the failure reported", disk.attempts.Load(), w.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
	disk.full.Store(false)
	for i := 5; i < 10; i++ {
		r.submit(i)
	}
	r.waitWritten(w)
	if err := w.Err(); err != nil {
		t.Errorf("Err() after the disk has room = %v, want nil", err)
	}
	if got := r.count("srv-s1-001.gpu0"); got != 10 {
		t.Errorf("points of gpu0 = %v, want 10", got)
	}
	testsvc.Eventually(t, 30*time.Second, "the cursor stored once the writer caught up", func() bool {
		cur, err := r.store.Cursor(telemetrywriter.CursorName)
		return err == nil && cur == w.Stats().Position
	})
}

// wakeOnly is the ingest as a Waker only, without its decoded messages:
// the writer decodes every message from the log.
type wakeOnly struct{ telemetrywriter.Waker }

// TestWriterCursorNotPerBatch: the writer does not take the store's write
// lock for its cursor after every batch, nor each time it catches up (the
// ingest needs the lock for every commit): with 100 one-message batches
// and 20 more caught up with one by one, and a cursor interval longer than
// the test, it stores the cursor once, when it stops. It decodes from the
// log here (wakeOnly).
func TestWriterCursorNotPerBatch(t *testing.T) {
	r := newRig(t)
	for i := range 50 {
		r.submit(i) // a telemetry and a status message each
	}
	disk := &fullDisk{Store: r.store}
	w := telemetrywriter.New(disk, wakeOnly{r.in}, r.ts, slog.New(slog.DiscardHandler), telemetrywriter.Options{Batch: 1, CursorEvery: time.Hour, Poll: 20 * time.Millisecond})
	stop := r.start(w.Run)
	r.waitWritten(w)
	for i := 50; i < 60; i++ {
		r.submit(i)
		r.waitWritten(w)
	}
	if n := disk.writes.Load(); n != 0 {
		t.Errorf("cursor writes for 120 batches, caught up with 11 times = %d, want 0 before the interval or the stop", n)
	}
	stop()
	if cur, err := r.store.Cursor(telemetrywriter.CursorName); err != nil || cur != 120 {
		t.Errorf("cursor after the stop = %d, %v, want 120", cur, err)
	}
	if n := disk.writes.Load(); n != 1 {
		t.Errorf("cursor writes = %d, want 1 (at the stop)", n)
	}
	if got := r.count("srv-s1-001.gpu0"); got != 60 {
		t.Errorf("points of gpu0 = %v, want 60", got)
	}
}

// rawCount is the real store counting the envelopes it hands the writer.
type rawCount struct {
	*twinstore.Store
	raws, msgs atomic.Int64
}

func (c *rawCount) MessagesAfterFor(pos uint64, limit int, needRaw func(uint64, wire.Kind) bool) ([]twinstore.Message, error) {
	msgs, err := c.Store.MessagesAfterFor(pos, limit, needRaw)
	for i := range msgs {
		c.msgs.Add(1)
		if msgs[i].Raw != nil {
			c.raws.Add(1)
		}
	}
	return msgs, err
}

// TestWriterReadsNoEnvelopeItHas: with the ingest's decoded messages at
// hand, the writer takes no envelope from the log (neither a telemetry
// message it has decoded nor a status message it skips), and writes the
// same points; without them, it reads each telemetry envelope.
func TestWriterReadsNoEnvelopeItHas(t *testing.T) {
	for _, decoded := range []bool{true, false} {
		t.Run(fmt.Sprintf("decoded=%v", decoded), func(t *testing.T) {
			r := newRig(t)
			c := &rawCount{Store: r.store}
			var wake telemetrywriter.Waker = r.in
			if !decoded {
				wake = wakeOnly{r.in}
			}
			w := telemetrywriter.New(c, wake, r.ts, slog.New(slog.DiscardHandler), telemetrywriter.Options{Poll: 20 * time.Millisecond})
			r.start(w.Run)
			for i := range 20 {
				r.submit(i)
			}
			r.waitWritten(w)
			want := int64(20) // the telemetry envelopes
			if decoded {
				want = 0
			}
			if got := c.raws.Load(); got != want || c.msgs.Load() < 40 {
				t.Errorf("envelopes read = %d of %d messages, want %d of at least 40", got, c.msgs.Load(), want)
			}
			if got := r.count("srv-s1-001.gpu0"); got != 20 {
				t.Errorf("points of gpu0 = %v, want 20", got)
			}
		})
	}
}

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

// TestWriterCursorNotPerBatch: a busy writer does not take the store's
// write lock for its cursor after every batch (the ingest needs it for
// every commit): with 100 one-message batches waiting, it stores the cursor
// once, when it has caught up. It decodes from the log here (wakeOnly).
func TestWriterCursorNotPerBatch(t *testing.T) {
	r := newRig(t)
	for i := range 50 {
		r.submit(i) // a telemetry and a status message each
	}
	disk := &fullDisk{Store: r.store}
	w := telemetrywriter.New(disk, wakeOnly{r.in}, r.ts, slog.New(slog.DiscardHandler), telemetrywriter.Options{Batch: 1, CursorEvery: time.Hour, Poll: 20 * time.Millisecond})
	r.start(w.Run)
	r.waitWritten(w)
	testsvc.Eventually(t, 30*time.Second, "the cursor stored", func() bool {
		cur, err := r.store.Cursor(telemetrywriter.CursorName)
		return err == nil && cur == 100
	})
	if n := disk.writes.Load(); n != 1 {
		t.Errorf("cursor writes for 100 batches = %d, want 1 (once caught up)", n)
	}
	if got := r.count("srv-s1-001.gpu0"); got != 50 {
		t.Errorf("points of gpu0 = %v, want 50", got)
	}
}

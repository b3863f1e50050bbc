package embeddedstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
	"twinchain/internal/testsvc"
)

// storeOnSmallDisk opens a store on a 48 MB filesystem of its own and writes
// 1,000 points at start.
func storeOnSmallDisk(t *testing.T, opts embeddedstore.Options) (dir string, s *embeddedstore.Store, start time.Time) {
	t.Helper()
	dir = testsvc.SmallDisk(t, "48m")
	s, err := embeddedstore.Open(filepath.Join(dir, "telemetry"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	start = time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := s.Write(context.Background(), gpuBatch(start, 1000, 0, 1000)); err != nil {
		t.Fatal(err)
	}
	return dir, s, start
}

// TestFullDiskRefusedUpFront: on a full disk Write refuses the batch with
// ErrDiskFull before Pebble writes its log (a failed log write is fatal to
// Pebble: this panicked twin-service in CI), and writes again once there is
// room; nothing written before is lost.
func TestFullDiskRefusedUpFront(t *testing.T) {
	dir, s, start := storeOnSmallDisk(t, embeddedstore.Options{})
	ctx := context.Background()
	filler := testsvc.FillDisk(t, dir)
	for range 3 {
		if err := s.Write(ctx, gpuBatch(start, 1000, 1000, 1000)); !errors.Is(err, embeddedstore.ErrDiskFull) {
			t.Fatalf("Write on a full disk = %v, want ErrDiskFull", err)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, gpuBatch(start, 1000, 1000, 1000)); err != nil {
		t.Fatalf("Write after the disk has room again: %v", err)
	}
	q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-000.gpu0", Field: "temp_c", From: start.Add(-time.Hour), To: start.Add(time.Hour), Step: 2 * time.Hour, Agg: telemetry.AggCount}
	got, err := s.Query(ctx, q)
	if err != nil || len(got) != 1 || got[0].Value != 2 {
		t.Errorf("points of srv-s1-000.gpu0 = %v, %v, want one window counting 2 (one per batch)", got, err)
	}
}

// TestFailedLogWriteStopsWrites: with the up-front check off, the disk fills
// under Pebble's own log write. The process lives on: that Write and every
// later one return an error that says to restart, and reads still work.
func TestFailedLogWriteStopsWrites(t *testing.T) {
	dir, s, start := storeOnSmallDisk(t, embeddedstore.Options{DiskReserve: -1})
	ctx := context.Background()
	testsvc.FillDisk(t, dir)
	var werr error
	for i := 1; i <= 200 && werr == nil; i++ {
		werr = s.Write(ctx, gpuBatch(start, 1000, i*1000, 1000))
	}
	if werr == nil || !strings.Contains(werr.Error(), "restart") {
		t.Fatalf("Write on a full disk with the check off = %v, want the stopped-store error", werr)
	}
	if err := s.Write(ctx, gpuBatch(start, 1000, 0, 10)); err == nil || !strings.Contains(err.Error(), "stopped taking writes") {
		t.Errorf("the next Write = %v, want the stopped-store error again", err)
	}
	q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-000.gpu0", Field: "temp_c", From: start.Add(-time.Hour), To: start.Add(time.Hour), Step: 2 * time.Hour, Agg: telemetry.AggCount}
	if got, err := s.Query(ctx, q); err != nil || len(got) != 1 || got[0].Value < 1 {
		t.Errorf("query after the failure = %v, %v, want the points written before", got, err)
	}
}

package latency

import (
	"sync"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{0, time.Millisecond, 1001 * time.Microsecond, 99 * time.Millisecond, 100 * time.Millisecond, 101 * time.Millisecond, time.Minute} {
		h.Observe(d)
	}
	s := h.Snapshot()
	if s.Count() != 7 {
		t.Fatalf("count %d, want 7", s.Count())
	}
	if want := time.Minute + 301*time.Millisecond + 1001*time.Microsecond; s.Sum != want {
		t.Errorf("sum %s, want %s", s.Sum, want)
	}
	c := s.Cumulative()
	for le, want := range map[float64]uint64{0.001: 2, 0.0025: 3, 0.05: 3, 0.1: 5, 0.25: 6, 10: 6} {
		if c[le] != want {
			t.Errorf("at or below %gs: %d, want %d", le, c[le], want)
		}
	}
	if s.Counts[len(Bounds)] != 1 {
		t.Errorf("above every bound: %d, want 1", s.Counts[len(Bounds)])
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 1000 {
				h.Observe(time.Duration(i) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if n := h.Snapshot().Count(); n != 4000 {
		t.Errorf("count %d, want 4000", n)
	}
}

package load

import (
	"math"
	"sync/atomic"
	"time"
)

// Histogram counts durations in buckets 5% wide, from 10 µs to about 100 s;
// safe for concurrent use without locks. A quantile is read from the
// difference of two snapshots, so one histogram serves every interval.
type Histogram struct {
	b [bucketCount]atomic.Uint64
}

const (
	bucketMin   = 10 * time.Microsecond
	bucketGrow  = 1.05
	bucketCount = 330 // 10 µs * 1.05^330 ≈ 100 s
)

var logGrow = math.Log(bucketGrow)

func bucketOf(d time.Duration) int {
	if d <= bucketMin {
		return 0
	}
	i := int(math.Log(float64(d)/float64(bucketMin))/logGrow) + 1
	return min(i, bucketCount-1)
}

// upper is the largest duration bucket i holds.
func upper(i int) time.Duration {
	return time.Duration(float64(bucketMin) * math.Pow(bucketGrow, float64(i)))
}

// Record counts one duration.
func (h *Histogram) Record(d time.Duration) { h.b[bucketOf(d)].Add(1) }

// Snapshot is a histogram's counts at one moment.
type Snapshot [bucketCount]uint64

// Snapshot copies the counts.
func (h *Histogram) Snapshot() *Snapshot {
	var s Snapshot
	for i := range s {
		s[i] = h.b[i].Load()
	}
	return &s
}

// Quantile is the q-quantile (0..1) of what was recorded between prev and s
// (prev nil: since the start), as the upper edge of its bucket (at most 5%
// high); zero when nothing was recorded.
func (s *Snapshot) Quantile(prev *Snapshot, q float64) time.Duration {
	var total uint64
	for i := range s {
		total += s.count(prev, i)
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i := range s {
		if seen += s.count(prev, i); seen >= max(want, 1) {
			return upper(i)
		}
	}
	return upper(bucketCount - 1)
}

func (s *Snapshot) count(prev *Snapshot, i int) uint64 {
	if prev == nil {
		return s[i]
	}
	return s[i] - prev[i]
}

// Package latency counts durations in fixed buckets without locks, for the
// histograms in /metrics that tell where a message's time goes inside
// twin-service (read by the broker, checked, queued for the writer,
// committed).
package latency

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounds are the buckets' upper bounds in seconds: 1 ms to 10 s, so the
// goals (a PUBACK within 100 ms, a twin visible within 250 ms) fall on
// bucket edges.
var Bounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Histogram counts durations by bucket. Its zero value is ready; it is
// safe for concurrent use.
type Histogram struct {
	counts [len(Bounds) + 1]atomic.Uint64 // the last: above every bound
	sum    atomic.Int64                   // ns
}

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) {
	i, _ := slices.BinarySearch(Bounds[:], d.Seconds()) // the first bound >= d
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot is a histogram's counts at one moment.
type Snapshot struct {
	Counts [len(Bounds) + 1]uint64 // per bucket, not cumulative
	Sum    time.Duration
}

// Snapshot reads h (each bucket atomically, not all at one instant).
func (h *Histogram) Snapshot() Snapshot {
	var s Snapshot
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// Count is how many durations were observed.
func (s Snapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Cumulative is the number of durations at or below each bound, as
// Prometheus histograms expose them.
func (s Snapshot) Cumulative() map[float64]uint64 {
	m := make(map[float64]uint64, len(Bounds))
	var n uint64
	for i, b := range Bounds {
		n += s.Counts[i]
		m[b] = n
	}
	return m
}

// Metric is s as a Prometheus histogram of d (in seconds).
func (s Snapshot) Metric(d *prometheus.Desc, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstHistogram(d, s.Count(), s.Sum.Seconds(), s.Cumulative(), labels...)
}

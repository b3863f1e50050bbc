package broker

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// inflight bounds the bytes of the gateway messages between their read
// and the ingest's answer (stored or rejected), per connection and in all
// (Config.MaxInflightBytes, MaxInflightBytesTotal). A message is admitted
// when its fixed header has been read, before the rest of it (the
// listener's framer, conn.admit); one that does not fit waits in its
// connection's read goroutine with its bytes still in the socket, so
// mochi reads nothing more from that socket until it fits: the gateway's
// TCP window fills and its PUBACKs come later. Waiting messages take no
// memory but their headers (WaitingBytes counts the bytes they will
// take). The service's own inline client publishes no gateway
// messages and is not counted.
type inflight struct {
	connLimit, limit int64
	total            *semaphore.Weighted

	held     atomic.Int64 // admitted, not answered
	peak     atomic.Int64 // the most held at once
	connPeak atomic.Int64 // the most one connection held at once
	waiting  atomic.Int64 // read, waiting to be admitted
	waited   atomic.Uint64
}

func newInflight(connLimit, limit int64) *inflight {
	return &inflight{connLimit: connLimit, limit: limit, total: semaphore.NewWeighted(limit)}
}

// connBudget is one connection's share.
type connBudget struct {
	sem  *semaphore.Weighted
	held atomic.Int64
}

func (f *inflight) newConn() *connBudget {
	return &connBudget{sem: semaphore.NewWeighted(f.connLimit)}
}

// acquire admits n bytes for connection c, waiting for room until ctx
// ends; false if it ended first. Waiters are admitted in the order they
// came (semaphore.Weighted is FIFO). wait is called before waiting, and
// waited after.
func (f *inflight) acquire(ctx context.Context, c *connBudget, n int64, wait, waited func()) bool {
	n = min(n, f.connLimit, f.limit) // never more than fits: mochi bounds a packet by max_packet_size
	haveConn := c.sem.TryAcquire(n)
	if haveConn && f.total.TryAcquire(n) {
		f.admit(c, n)
		return true
	}
	wait()
	defer waited()
	f.waited.Add(1)
	f.waiting.Add(n)
	defer f.waiting.Add(-n)
	if !haveConn {
		if err := c.sem.Acquire(ctx, n); err != nil {
			return false
		}
	}
	if err := f.total.Acquire(ctx, n); err != nil {
		c.sem.Release(n)
		return false
	}
	f.admit(c, n)
	return true
}

func (f *inflight) admit(c *connBudget, n int64) {
	raise(&f.peak, f.held.Add(n))
	raise(&f.connPeak, c.held.Add(n))
}

// release gives back what acquire admitted (the same c and n).
func (f *inflight) release(c *connBudget, n int64) {
	n = min(n, f.connLimit, f.limit)
	f.held.Add(-n)
	f.total.Release(n)
	c.held.Add(-n)
	c.sem.Release(n)
}

// room is what a connection's PUBLISH holds in flight (n 0: nothing).
type room struct {
	budget *connBudget
	n      int64
}

// give gives r back.
func (f *inflight) give(r room) {
	if r.n > 0 {
		f.release(r.budget, r.n)
	}
}

// raise sets v to x if x is larger.
func raise(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// InflightStats are the bytes of gateway messages between their
// admission (when their fixed header is read, before the rest) and the
// ingest's answer.
type InflightStats struct {
	Bytes         int64  `json:"bytes"`           // admitted (being read, or read), not answered yet
	PeakBytes     int64  `json:"peak_bytes"`      // the most at once since the start
	ConnPeakBytes int64  `json:"conn_peak_bytes"` // the most one connection held at once
	WaitingBytes  int64  `json:"waiting_bytes"`   // header read, waiting for room: the rest is still unread in the socket (their connections are not read meanwhile)
	Waited        uint64 `json:"waited"`          // messages that waited for room
	Limit         int64  `json:"limit"`           // max_inflight_bytes_total
	ConnLimit     int64  `json:"conn_limit"`      // max_inflight_bytes
}

func (f *inflight) stats() InflightStats {
	return InflightStats{Bytes: f.held.Load(), PeakBytes: f.peak.Load(), ConnPeakBytes: f.connPeak.Load(),
		WaitingBytes: f.waiting.Load(), Waited: f.waited.Load(), Limit: f.limit, ConnLimit: f.connLimit}
}

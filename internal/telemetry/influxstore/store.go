// Package influxstore is the InfluxDB telemetry.Store, through
// github.com/influxdata/influxdb-client-go/v2. It works with InfluxDB 2.x
// (org, bucket, token) and with 1.8+ through its v2-compatible API (bucket
// "database/retention-policy" or "database", token "user:password" or empty,
// org ignored; the server needs `flux-enabled = true` for queries).
//
// # Schema
//
// One measurement per kind of reading ("gpu" for wire.GPUSample), one line
// per asset and sampling instant:
//
//		gpu,asset=srv-s1-001.gpu3,gateway=gw-srv-s1-001,kind=gpu,site=s1 temp_c=61,power_w=412.5,... <ns>
//
//	  - tags: asset (the series), gateway, kind, site. Their values are bounded
//	    by the fleet: series = assets x the gateways each one has reported
//	    through. Nothing per reading (sequence numbers, message ids, UUIDs,
//	    throttle reasons, values) is ever a tag.
//	  - fields: the readings, all float64 (counters too, so a field never
//	    changes type and never conflicts).
//	  - time: the reading's own time in nanoseconds, as the gateway stamped
//	    it. InfluxDB keeps one point per series and time, so writing a point
//	    again (a replay after an outage or a crash) overwrites it with the same
//	    values: points are never counted twice.
//
// # Writing: a durable replay log and a blocking sender
//
// Write encodes points as line protocol and appends them to an on-disk
// replay log (segment files, fsynced) before it returns; Run's sender reads
// the log in batches (BatchPoints lines, at most 4 MiB) and writes each batch
// with the client's blocking WriteAPI, one HTTP request per batch,
// gzip-compressed unless InfluxDB is on a loopback address (useGzip). A
// batch is acknowledged in the log only when InfluxDB answered 204;
// on a network error, a 5xx or 429 the same batch is retried with backoff
// (100 ms doubling to 10 s) for as long as it takes, so an outage of any
// length loses nothing while the log fits its budget (ReplayBudgetBytes).
// Past the budget the oldest unsent segments are dropped, counted (Stats,
// metrics) and logged once per outage. A batch InfluxDB rejects as bad data
// (other 4xx) is counted, logged once per status and skipped so one bad
// point cannot block the log.
//
// Why not the client's non-blocking WriteAPI: it batches and retries in
// memory and drops a batch once its retry window (MaxRetryTime) passes, and
// it reports only errors, on a channel, without saying which points
// failed, never which were written. Here every point is on disk before Write
// returns, and the acknowledgement position in the log is exactly the set of
// points InfluxDB accepted: a crash or restart resumes from it, and a memory
// footprint that does not grow with the outage (the log is on disk). The
// cost is one fsync per Write call and one per batch sent.
package influxstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"

	"twinchain/internal/telemetry"
)

// maxBatchBytes bounds one write request before compression (InfluxDB 1.8
// refuses bodies over 25 MB by default).
const maxBatchBytes = 4 << 20

// Options are what a Store takes besides its telemetry.Config.
type Options struct {
	Now func() time.Time // default time.Now
	Log *slog.Logger     // default slog.Default()
	// SegmentBytes is the size of one replay-log segment; default
	// budget/16, between 64 KiB and 16 MiB.
	SegmentBytes int64
}

// Store writes telemetry to InfluxDB. It is safe for concurrent use.
type Store struct {
	cfg    telemetry.Config
	now    func() time.Time
	log    *slog.Logger
	client influxdb2.Client
	write  api.WriteAPIBlocking
	query  api.QueryAPI
	spool  *spool

	encMu  sync.Mutex
	encBuf []byte

	kick    chan struct{} // data appended or a flush asked for: send now
	flushes atomic.Int32  // Flush calls waiting

	written, rejected, retries atomic.Int64
	down                       atomic.Bool
	closed                     atomic.Bool
	loggedDrop                 atomic.Bool
	loggedReject               sync.Map // status code -> struct{}
}

var _ telemetry.Store = (*Store)(nil)

// Open opens the replay log in dir (creating it) and makes the client. It
// does not contact InfluxDB: Run does, and keeps trying.
func Open(dir string, cfg telemetry.Config, opts Options) (*Store, error) {
	cfg = cfg.WithDefaults()
	if cfg.ReplayBudgetBytes <= 0 {
		return nil, fmt.Errorf("influxstore: replay budget %d must be positive", cfg.ReplayBudgetBytes)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	seg := opts.SegmentBytes
	if seg <= 0 {
		seg = min(max(cfg.ReplayBudgetBytes/16, 64<<10), 16<<20)
	}
	sp, err := openSpool(dir, cfg.ReplayBudgetBytes, seg)
	if err != nil {
		return nil, fmt.Errorf("influxstore: %w", err)
	}
	copts := influxdb2.DefaultOptions().
		SetUseGZip(useGzip(cfg.URL)).
		SetHTTPRequestTimeout(uint(max(cfg.Timeout/time.Second, 1)))
	client := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, copts)
	s := &Store{
		cfg:    cfg,
		now:    opts.Now,
		log:    opts.Log,
		client: client,
		write:  client.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		query:  client.QueryAPI(cfg.Org),
		spool:  sp,
		kick:   make(chan struct{}, 1),
	}
	if lines, size := sp.pending(); lines > 0 {
		s.log.Info("influxdb replay log holds unsent points", "points", lines, "bytes", size)
	}
	return s, nil
}

// useGzip reports whether write requests to InfluxDB at rawURL are
// compressed: not on a loopback address (localhost, 127.0.0.0/8, ::1),
// where compression saves no bandwidth and costs CPU on both ends of the
// same machine (the client's gzip was ~10% of twin-service's CPU with 10
// samples per message; make bench-influx, docs/performance.md).
func useGzip(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return true
	}
	host := u.Hostname()
	if host == "localhost" {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback()
}

// Write appends the valid points to the replay log, durably.
func (s *Store) Write(ctx context.Context, pts []telemetry.Point) error {
	if s.closed.Load() {
		return telemetry.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var skipped telemetry.Skipped
	s.encMu.Lock()
	buf := s.encBuf[:0]
	var n int64
	for i := range pts {
		if err := pts[i].Validate(); err != nil {
			skipped.Add(err)
			continue
		}
		buf = appendLine(buf, &pts[i])
		n++
	}
	var dropped int64
	var err error
	if n > 0 {
		dropped, err = s.spool.append(buf, n)
	}
	if cap(buf) <= 16<<20 {
		s.encBuf = buf
	} else {
		s.encBuf = nil // do not hold on to a huge buffer
	}
	s.encMu.Unlock()
	if err != nil {
		return fmt.Errorf("influxstore: %w", err)
	}
	if dropped > 0 && !s.loggedDrop.Swap(true) {
		lines, size := s.spool.pending()
		s.log.Error("influxdb replay log over budget: dropping the oldest unsent points (logged once per outage; see dropped count)",
			"dropped", dropped, "pending_points", lines, "pending_bytes", size, "budget_bytes", s.cfg.ReplayBudgetBytes)
	}
	if n > 0 {
		s.nudge()
	}
	return skipped.Err()
}

func (s *Store) nudge() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Flush waits until every point written before the call is in InfluxDB.
func (s *Store) Flush(ctx context.Context) error {
	if s.closed.Load() {
		return telemetry.ErrClosed
	}
	target := s.spool.end()
	s.flushes.Add(1)
	defer s.flushes.Add(-1)
	s.nudge()
	for {
		pos, acked := s.spool.ackPos()
		if !pos.before(target) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("flush to influxdb (%s): %w", s.cfg.URL, ctx.Err())
		case <-acked:
		}
	}
}

// Run sends the replay log to InfluxDB until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	var buf []byte
	backoff := time.Duration(0)
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	sleep := func(d time.Duration) bool {
		wait.Reset(d)
		select {
		case <-ctx.Done():
			return false
		case <-wait.C:
			return true
		}
	}
	var partialSince time.Time
	for {
		batch, n, next, err := s.spool.peek(buf, s.cfg.BatchPoints, maxBatchBytes)
		buf = batch
		if err != nil {
			s.log.Error("influxdb replay log read", "err", err)
			if !sleep(time.Second) {
				return nil
			}
			continue
		}
		if n == 0 {
			partialSince = time.Time{}
			select {
			case <-ctx.Done():
				return nil
			case <-s.kick:
			}
			continue
		}
		if n < s.cfg.BatchPoints && s.flushes.Load() == 0 && backoff == 0 {
			// A partial batch waits up to FlushInterval for more points.
			if partialSince.IsZero() {
				partialSince = time.Now()
			}
			if left := s.cfg.FlushInterval - time.Since(partialSince); left > 0 {
				wait.Reset(left)
				select {
				case <-ctx.Done():
					return nil
				case <-wait.C:
				case <-s.kick:
					wait.Stop()
				}
				continue
			}
		}
		partialSince = time.Time{}
		switch err := s.send(ctx, batch); {
		case err == nil:
			if aerr := s.spool.ack(next, n); aerr != nil {
				s.log.Error("influxdb replay log ack", "err", aerr)
			}
			s.written.Add(int64(n))
			if s.down.Swap(false) {
				lines, _ := s.spool.pending()
				s.log.Info("influxdb reachable again, replaying", "pending_points", lines, "dropped_total", s.spool.droppedTotal())
				s.loggedDrop.Store(false)
			}
			backoff = 0
		case ctx.Err() != nil:
			return nil
		case permanent(err):
			code := statusCode(err)
			if _, seen := s.loggedReject.LoadOrStore(code, struct{}{}); !seen {
				s.log.Error("influxdb rejected a batch as bad data; skipping it (logged once per status)", "status", code, "points", n, "err", err)
			}
			s.rejected.Add(int64(n))
			if aerr := s.spool.ack(next, n); aerr != nil {
				s.log.Error("influxdb replay log ack", "err", aerr)
			}
		default:
			s.retries.Add(1)
			if !s.down.Swap(true) {
				lines, size := s.spool.pending()
				s.log.Warn("influxdb unavailable, keeping points in the replay log", "url", s.cfg.URL, "err", err, "pending_points", lines, "pending_bytes", size)
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			if !sleep(backoff) {
				return nil
			}
		}
	}
}

func (s *Store) send(ctx context.Context, batch []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	// WriteRecord joins its arguments with '\n'; one argument holding many
	// lines is one request. Drop the final newline.
	return s.write.WriteRecord(ctx, string(batch[:len(batch)-1]))
}

func statusCode(err error) int {
	var he *http2.Error
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return 0
}

// permanent reports whether InfluxDB refused a batch for its content, so
// sending it again cannot help. Authentication, a missing database, rate
// limits and server errors are not permanent: they are fixed on the server
// while the points wait.
func permanent(err error) bool {
	switch code := statusCode(err); {
	case code == 0, code >= 500:
		return false
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusNotFound,
		code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return false
	default:
		return code >= 400
	}
}

// Stats are the store's counters.
type Stats struct {
	PendingPoints int64 // in the replay log, not yet in InfluxDB
	PendingBytes  int64
	Written       int64 // points InfluxDB accepted since Open
	Rejected      int64 // points in batches InfluxDB refused as bad data
	Dropped       int64 // points dropped from the replay log for its budget
	Retries       int64 // failed write attempts that will be retried
	Down          bool  // the last write attempt failed
}

// Stats returns the current counters.
func (s *Store) Stats() Stats {
	lines, size := s.spool.pending()
	return Stats{
		PendingPoints: lines,
		PendingBytes:  size,
		Written:       s.written.Load(),
		Rejected:      s.rejected.Load(),
		Dropped:       s.spool.droppedTotal(),
		Retries:       s.retries.Load(),
		Down:          s.down.Load(),
	}
}

// Close closes the client and the replay log. Call it after Run returned.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.encMu.Lock()
	defer s.encMu.Unlock()
	s.client.Close()
	return s.spool.close()
}

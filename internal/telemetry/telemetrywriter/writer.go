// Package telemetrywriter is the twin-service component that feeds the
// telemetry store: it reads the message log from its own persisted cursor
// after each wake-up from ingest, turns telemetry envelopes into points (one
// per GPU sample) and writes them to the configured telemetry.Store. It
// moves its cursor only after the store has the points durably, so a crash
// or a store error never loses a reading, and ingest never waits for it.
package telemetrywriter

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"twinchain/internal/ingest"
	"twinchain/internal/telemetry"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// CursorName is the writer's cursor in the message log.
const CursorName = "telemetry"

// MessageLog is what the writer reads; *twinstore.Store is one.
type MessageLog interface {
	MessagesAfterFor(pos uint64, limit int, needRaw func(pos uint64, kind wire.Kind) bool) ([]twinstore.Message, error)
	Cursor(name string) (uint64, error)
	SetCursor(name string, pos uint64) error
}

// Waker wakes the writer when messages are stored; *ingest.Ingest is one.
type Waker interface {
	Subscribe() (wake <-chan struct{}, cancel func())
}

// Decoder hands out the newest messages as the ingest decoded them;
// *ingest.Ingest is one. When the Waker is one too, the writer decodes the
// stored bytes only for messages it no longer has.
type Decoder interface {
	Decoded(pos uint64) (*ingest.Decoded, bool)
}

// Options tune a Writer.
type Options struct {
	// Site names a gateway's site (the registry knows it); nil leaves the
	// site tag empty.
	Site func(gateway string) string
	// Batch is how many messages one read takes (default 1000).
	Batch int
	// Poll is how often the log is read without a wake-up (default 2s).
	Poll time.Duration
	// Retry is the wait after a failed store write (default 1s).
	Retry time.Duration
	// CursorEvery is how often, at most, the cursor is stored (default
	// 1s): after a batch once that long has passed, when the writer has
	// caught up (at the latest a Poll later), and when it stops. The
	// cursor lives in the message log's store, whose single write lock the
	// ingest holds for every commit: one cursor write per batch starved
	// the writer under load, and one each time it caught up (after every
	// commit, below the writer's limit) cost a transaction and two fsyncs
	// per commit. After a crash the points since the stored cursor are
	// written again, which only overwrites them with the same values.
	CursorEvery time.Duration
}

// Stats are the writer's counters.
type Stats struct {
	Position    uint64 // message log position written up to
	Messages    int64  // telemetry messages turned into points
	Points      int64  // points written
	BadMessages int64  // telemetry messages that did not decode
	BadPoints   int64  // points the store refused as invalid
	WriteErrors int64  // failed store writes, log reads and cursor writes (retried)
}

// Writer copies telemetry from the message log into a telemetry store.
type Writer struct {
	log     MessageLog
	wake    Waker
	decoded Decoder // nil: decode every message from the log
	// held are the telemetry messages of the batch being read that the
	// decoder had, by position: the log hands them over without their
	// envelopes (needRaw).
	held  map[uint64]*ingest.Decoded
	store telemetry.Store
	opts  Options
	l     *slog.Logger

	pos                                                 atomic.Uint64
	messages, points, badMessages, badPoints, writeErrs atomic.Int64
	failing                                             atomic.Pointer[error]
	loggedBad, loggedBadPoint                           bool
}

// New makes a Writer; it starts nothing.
func New(log MessageLog, wake Waker, store telemetry.Store, l *slog.Logger, opts Options) *Writer {
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Poll <= 0 {
		opts.Poll = 2 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.CursorEvery <= 0 {
		opts.CursorEvery = time.Second
	}
	if opts.Site == nil {
		opts.Site = func(string) string { return "" }
	}
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	dec, _ := wake.(Decoder)
	return &Writer{log: log, wake: wake, decoded: dec, held: map[uint64]*ingest.Decoded{}, store: store, opts: opts, l: l}
}

// needRaw tells the log which envelopes to read: telemetry the decoder no
// longer has (the rest is skipped, or taken decoded and held for toPoints).
func (w *Writer) needRaw(pos uint64, kind wire.Kind) bool {
	if kind != wire.KindTelemetry {
		return false
	}
	if w.decoded != nil {
		if d, ok := w.decoded.Decoded(pos); ok && d.Telemetry != nil {
			w.held[pos] = d
			return false
		}
	}
	return true
}

// Stats returns the current counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Position:    w.pos.Load(),
		Messages:    w.messages.Load(),
		Points:      w.points.Load(),
		BadMessages: w.badMessages.Load(),
		BadPoints:   w.badPoints.Load(),
		WriteErrors: w.writeErrs.Load(),
	}
}

// Err is why the writer is not making progress (its store or its cursor
// cannot be written, e.g. a full disk), or nil.
func (w *Writer) Err() error {
	if p := w.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records a failure that Run waits out and tries again: logged once
// until it recovers. It returns false when ctx ended meanwhile.
func (w *Writer) fail(ctx context.Context, what string, err error, pos uint64) bool {
	w.writeErrs.Add(1)
	if w.failing.Swap(&err) == nil {
		w.l.Error(what+" failed; retrying, the message log keeps the points", "err", err, "position", pos)
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(w.opts.Retry):
		return true
	}
}

func (w *Writer) recovered(pos uint64) {
	if w.failing.Swap(nil) != nil {
		w.l.Info("telemetry writer recovered", "position", pos)
	}
}

// Run copies telemetry until ctx ends, then returns nil. A failure to
// read the log, write the store or move the cursor (a full disk) is waited
// out and tried again: it never ends Run.
func (w *Writer) Run(ctx context.Context) error {
	wake, cancel := w.wake.Subscribe()
	defer cancel()
	var pos uint64
	for {
		p, err := w.log.Cursor(CursorName)
		if err == nil {
			pos = p
			break
		}
		if !w.fail(ctx, "reading the telemetry cursor", err, 0) {
			return nil
		}
	}
	w.pos.Store(pos)
	poll := time.NewTicker(w.opts.Poll)
	defer poll.Stop()
	var pts []telemetry.Point
	var fields []telemetry.Field
	saved, savedAt := pos, time.Now()
	// save stores the cursor at pos, retrying until it is stored or ctx
	// ends (then it reports false).
	save := func(ctx context.Context) bool {
		for {
			err := w.log.SetCursor(CursorName, pos)
			if err == nil {
				saved, savedAt = pos, time.Now()
				w.recovered(pos)
				return true
			}
			// The points are in the store; writing them again after a
			// restart only overwrites them with the same values.
			if !w.fail(ctx, "moving the telemetry cursor", err, pos) {
				return false
			}
		}
	}
	defer func() {
		if pos != saved { // stopping: one try, without the cancelled ctx
			if err := w.log.SetCursor(CursorName, pos); err != nil {
				w.l.Warn("telemetry cursor not stored at stop; its points are written again at the next start", "err", err, "position", pos)
			}
		}
	}()
	for {
		clear(w.held)
		msgs, err := w.log.MessagesAfterFor(pos, w.opts.Batch, w.needRaw)
		if err != nil {
			if !w.fail(ctx, "reading the message log", err, pos) {
				return nil
			}
			continue
		}
		if len(msgs) == 0 {
			if pos != saved && time.Since(savedAt) >= w.opts.CursorEvery && !save(ctx) { // caught up
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
			case <-poll.C:
			}
			continue
		}
		pts, fields = w.toPoints(msgs, pts[:0], fields[:0])
		if len(pts) > 0 {
			err := w.store.Write(ctx, pts)
			var skipped *telemetry.SkippedError
			switch {
			case err == nil:
			case errors.As(err, &skipped):
				w.badPoints.Add(int64(skipped.Skipped))
				if !w.loggedBadPoint {
					w.loggedBadPoint = true
					w.l.Warn("invalid telemetry points skipped (logged once; see the bad points count)", "skipped", skipped.Skipped, "first", skipped.First)
				}
			case ctx.Err() != nil:
				return nil
			default:
				if !w.fail(ctx, "telemetry store write", err, pos) {
					return nil
				}
				continue
			}
			w.points.Add(int64(len(pts) - skippedCount(err)))
		}
		pos = msgs[len(msgs)-1].Pos
		w.pos.Store(pos)
		clear(pts) // drop references to this batch's strings
		if time.Since(savedAt) >= w.opts.CursorEvery && !save(ctx) {
			return nil
		}
	}
}

func skippedCount(err error) int {
	var skipped *telemetry.SkippedError
	if errors.As(err, &skipped) {
		return skipped.Skipped
	}
	return 0
}

// toPoints turns the telemetry messages of a batch into points.
func (w *Writer) toPoints(msgs []twinstore.Message, pts []telemetry.Point, fields []telemetry.Field) ([]telemetry.Point, []telemetry.Field) {
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != wire.KindTelemetry {
			continue
		}
		if d := w.held[m.Pos]; d != nil {
			w.messages.Add(1)
			pts, fields = AppendGPUPoints(pts, fields, &d.Env, d.Telemetry, w.opts.Site(d.Env.Gateway))
			continue
		}
		env, err := wire.Decode(m.Raw)
		var body wire.Telemetry
		if err == nil {
			body, err = wire.DecodeTelemetry(&env)
		}
		if err != nil {
			w.badMessages.Add(1)
			if !w.loggedBad {
				w.loggedBad = true
				w.l.Warn("undecodable telemetry message skipped (logged once; see the bad messages count)", "position", m.Pos, "gateway", m.Gateway, "err", err)
			}
			continue
		}
		w.messages.Add(1)
		pts, fields = AppendGPUPoints(pts, fields, &env, &body, w.opts.Site(env.Gateway))
	}
	return pts, fields
}

// Package ingest turns gateway messages into stored twin changes. Submit
// checks a message (size, envelope, topic, registered gateway, signature,
// body) in the caller's goroutine, then hands it to one writer goroutine that
// checks its sequence number, folds it into the twins and stores the message,
// the events, the twins and the gateway's sequence state in one transaction
// shared with every other message queued at that moment (group commit).
// Submit returns only after that transaction is durable, so a broker that
// acknowledges after Submit acknowledges stored messages only.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// ErrClosed is returned by Submit when the ingest is not running.
var ErrClosed = errors.New("ingest stopped")

// Config tunes the ingest. Zero values take the defaults.
type Config struct {
	QueueSize        int           `yaml:"queue_size"`        // messages waiting for the writer; default 8192
	QueueBytes       int64         `yaml:"queue_bytes"`       // their envelopes' bytes (each also held decoded); default 64 MiB
	MaxBatch         int           `yaml:"max_batch"`         // messages per commit; default 4096
	SeqWindow        uint64        `yaml:"seq_window"`        // out-of-order window below the highest sequence number; default 4096
	RecentRejections int           `yaml:"recent_rejections"` // rejections kept for Recent; default 1024
	MoveThresholdM   float64       `yaml:"move_threshold_m"`  // GPS move that makes a location event; default 25
	MaxClockSkew     time.Duration `yaml:"max_clock_skew"`    // how far ahead a reading time may be; default 10m
	// CheckpointInterval is how often observations (sample counts, latest
	// samples, last seen) are written to the twins; tracked changes and
	// events are written with every message. Observations are readable
	// (twinstore's Asset, Assets) as soon as their message is stored; after a
	// crash those of the messages since the last checkpoint are replayed
	// from the message log. Each twin is written CheckpointInterval after
	// its observations changed, a share of the fleet with each commit; the
	// gateways' stream states and sequence-index entries likewise.
	// Default 30s: at 100,000 GPUs (every twin observed every 10 s) the
	// commits that carry 10 s shares were most of a PUBACK's wait (commit
	// p99 160-216 ms against 45-53 ms with 30 s); the price is the replay
	// after a crash (kill -9 at 100%: 37,520 messages replayed, ready in
	// 10.5 s, against 12,487 and 4.6 s with 10 s). docs/performance.md,
	// stop 34.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// CommitInterval is the least time from the start of one commit to the
	// start of the next: messages that come sooner wait for the rest of it
	// and go in one commit together (at most MaxBatch). A message after a
	// quiet spell is committed at once. Each commit costs its fixed pages
	// (from each changed bucket up to the root, ~37 KB) and an fsync
	// whatever it holds; committing as soon as the writer was free made
	// 2.2 messages per commit at 100,000 GPUs. Default 20ms: there, 26
	// messages per commit, CPU per message 0.79x, ack p50 / p99 8.8 / 282
	// -> 19 / 96 ms, API p99 92-101 -> 31-36 ms, bytes written per message
	// 0.46x (10 ms: 14 messages per commit, CPU 0.82-0.86x; docs/performance.md,
	// stop 35). 1ns commits as soon as the writer is free.
	CommitInterval time.Duration `yaml:"commit_interval"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.QueueSize < 0 || c.QueueBytes < 0 || c.MaxBatch < 0 || c.RecentRejections < 0 || c.MoveThresholdM < 0 || c.MaxClockSkew < 0 || c.CheckpointInterval < 0 || c.CommitInterval < 0 {
		return fmt.Errorf("ingest: sizes, thresholds and durations must not be negative")
	}
	if c.SeqWindow > 1<<20 {
		return fmt.Errorf("ingest: seq_window %d is above the limit %d", c.SeqWindow, 1<<20)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.QueueBytes == 0 {
		c.QueueBytes = 64 << 20
	}
	if c.QueueBytes < wire.MaxEnvelopeSize {
		c.QueueBytes = wire.MaxEnvelopeSize
	}
	if c.QueueSize == 0 {
		c.QueueSize = 8192
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 4096
	}
	if c.SeqWindow == 0 {
		c.SeqWindow = 4096
	}
	if c.RecentRejections == 0 {
		c.RecentRejections = 1024
	}
	if c.MoveThresholdM == 0 {
		c.MoveThresholdM = 25
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = 10 * time.Minute
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 30 * time.Second
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = 20 * time.Millisecond
	}
	return c
}

// Outcome is what happened to a submitted message.
type Outcome struct {
	Pos    uint64 // message log position when accepted
	Reason Reason // empty when accepted
	Err    error  // why it was rejected
}

// Accepted reports whether the message was stored now.
func (o Outcome) Accepted() bool { return o.Reason == "" }

// Ack reports whether the message may be acknowledged to its sender (who
// then deletes it): it was stored, or it was rejected for a final reason
// (see Reason.Retry).
func (o Outcome) Ack() bool { return !o.Reason.Retry() }

// item is one message, or one API change, on its way through the writer.
type item struct {
	m      message
	src    Source
	change *change              // an API change instead of a message (change.go)
	cb     func(Outcome, error) // SubmitAsync: called instead of signalling done
	out    Outcome
	err    error
	done   chan struct{}
	weight int64 // bytes held of Ingest.queued
	// arrived is when Submit or SubmitAsync began (a message's, zero for a
	// change), queued when the item went to the writer's queue.
	arrived, queued time.Time
}

// Ingest is the check-fold-store pipeline. Create it with New, run it with
// Run, feed it with Submit from any number of goroutines.
type Ingest struct {
	cfg     Config
	store   *twinstore.Store
	gws     Gateways
	log     *slog.Logger
	now     func() time.Time
	queue   chan *item
	stopped chan struct{}
	// queued bounds the bytes of the messages between their check and
	// their commit (Config.QueueBytes): a submitter waits for room, as for
	// a full queue (backpressure onto its connection). life ends at stop.
	queued  *semaphore.Weighted
	life    context.Context
	endLife context.CancelFunc
	running atomic.Bool
	pool    sync.Pool

	w     *writer // owned by the Run goroutine
	stats stats

	subMu sync.Mutex
	subs  map[*chan struct{}]struct{}

	// skipFinalCheckpoint makes Run end like a crash, for the replay test.
	skipFinalCheckpoint bool
	// stale is set when the writer's state could not be reloaded from the
	// store after a failed commit (owned by the Run goroutine).
	stale error
	// storeErr is the last commit's error while commits fail (a full
	// disk): nil again after the next commit that stores.
	storeErr atomic.Pointer[error]
	// decoded keeps the newest accepted messages decoded for the
	// consumers of the message log (Decoded).
	decoded decodedCache
}

// StoreErr is why the store takes no messages now (the last commit failed,
// e.g. on a full disk: messages are refused, not acknowledged), or nil.
func (in *Ingest) StoreErr() error {
	if p := in.storeErr.Load(); p != nil {
		return *p
	}
	return nil
}

// New builds an ingest over an open store. It loads the twins and the
// gateways' sequence state from the store; it starts no goroutine.
func New(cfg Config, store *twinstore.Store, gws Gateways, log *slog.Logger, now func() time.Time) (*Ingest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if now == nil {
		now = time.Now
	}
	in := &Ingest{
		cfg:     cfg,
		store:   store,
		gws:     gws,
		log:     log,
		now:     now,
		queue:   make(chan *item, cfg.QueueSize),
		stopped: make(chan struct{}),
		subs:    map[*chan struct{}]struct{}{},
		queued:  semaphore.NewWeighted(cfg.QueueBytes),
	}
	in.life, in.endLife = context.WithCancel(context.Background())
	in.pool.New = func() any { return &item{done: make(chan struct{}, 1)} }
	in.stats.init(cfg.RecentRejections)
	w, err := loadWriter(cfg, store, log, now)
	if err != nil {
		return nil, err
	}
	in.w = w
	in.stats.setGateways(w.snapshotStates(nil))
	return in, nil
}

// Submit checks one message from topic and, when it is valid, stores and
// applies it. It blocks until the message is durably stored. The error is
// non-nil only when the message could not be stored (the store failed or the
// ingest stopped): such a message must not be acknowledged. A rejected
// message comes back as an Outcome with a Reason and a nil error.
// payload must not be modified until Submit returns. src is where it came
// from (kept with a rejection).
func (in *Ingest) Submit(src Source, topic string, payload []byte) (Outcome, error) {
	arrived := in.now()
	it := in.pool.Get().(*item)
	if rej := check(&it.m, topic, payload, in.gws, arrived, in.cfg.MaxClockSkew); rej != nil {
		in.release(it)
		rej.src = src
		in.stats.reject(in.log, in.now(), rej)
		return Outcome{Reason: rej.reason, Err: rej.err}, nil
	}
	it.src = src
	if err := in.hold(it, len(payload)); err != nil {
		return Outcome{}, err
	}
	it.arrived, it.queued = arrived, in.now()
	if err := in.enqueue(it); err != nil {
		return Outcome{}, err
	}
	out, err := it.out, it.err
	in.release(it)
	return out, err
}

// SubmitAsync is Submit without waiting: done is called exactly once with
// what Submit would return: at once when the checks reject the message,
// otherwise from the writer goroutine after the commit (or with ErrClosed
// when the ingest stops first). done must not block. SubmitAsync itself
// blocks only while the writer's queue is full (backpressure).
func (in *Ingest) SubmitAsync(src Source, topic string, payload []byte, done func(Outcome, error)) {
	arrived := in.now()
	it := in.pool.Get().(*item)
	if rej := check(&it.m, topic, payload, in.gws, arrived, in.cfg.MaxClockSkew); rej != nil {
		in.release(it)
		rej.src = src
		in.stats.reject(in.log, in.now(), rej)
		done(Outcome{Reason: rej.reason, Err: rej.err}, nil)
		return
	}
	it.cb, it.src = done, src
	if err := in.hold(it, len(payload)); err != nil {
		done(Outcome{}, err)
		return
	}
	it.arrived, it.queued = arrived, in.now()
	select {
	case <-in.stopped:
		in.release(it)
		done(Outcome{}, ErrClosed)
		return
	default:
	}
	select {
	case in.queue <- it:
	case <-in.stopped:
		in.release(it)
		done(Outcome{}, ErrClosed)
		return
	}
	// The writer may have stopped while the item went in: it drains the
	// queue only after marking itself stopped, so what it may have missed
	// is answered here.
	select {
	case <-in.stopped:
		in.drain()
	default:
	}
}

// drain answers every queued item with ErrClosed; for after the writer
// stopped.
func (in *Ingest) drain() {
	for {
		select {
		case it := <-in.queue:
			it.err = ErrClosed
			in.finish(it)
		default:
			return
		}
	}
}

// finish answers an item the writer is done with.
func (in *Ingest) finish(it *item) {
	if it.cb == nil {
		it.done <- struct{}{}
		return
	}
	cb, out, err := it.cb, it.out, it.err
	in.release(it)
	cb(out, err)
}

func (in *Ingest) enqueue(it *item) error { return in.enqueueCtx(context.Background(), it) }

// enqueueCtx hands it to the writer and waits until it is committed. On an
// error it has released it (or left it to the stopped writer).
func (in *Ingest) enqueueCtx(ctx context.Context, it *item) error {
	select {
	case <-ctx.Done():
		in.release(it)
		return ctx.Err()
	default:
	}
	select {
	case in.queue <- it:
	case <-in.stopped:
		in.release(it)
		return ErrClosed
	case <-ctx.Done():
		in.release(it)
		return ctx.Err()
	}
	select {
	case <-it.done:
	case <-in.stopped:
		// Run ended; it and drain answer every item they take, so wait
		// for ours only if it was taken.
		in.drain()
		select {
		case <-it.done:
		default:
			return ErrClosed
		}
	}
	return nil
}

// hold waits until n more bytes may be queued (Config.QueueBytes) and
// counts them on it; release gives them back. On ErrClosed it has
// released it.
func (in *Ingest) hold(it *item, n int) error {
	if err := in.queued.Acquire(in.life, int64(n)); err != nil {
		in.release(it)
		return ErrClosed
	}
	it.weight = int64(n)
	return nil
}

func (in *Ingest) release(it *item) {
	if it.weight > 0 {
		in.queued.Release(it.weight)
	}
	done := it.done
	*it = item{done: done}
	in.pool.Put(it)
}

// Run is the writer: it commits queued messages in batches until ctx ends,
// each commit starting at least CommitInterval after the one before (what
// comes meanwhile waits for it and goes in it). Messages still queued
// then, and every later Submit or SubmitAsync, are answered with ErrClosed.
func (in *Ingest) Run(ctx context.Context) error {
	if !in.running.CompareAndSwap(false, true) {
		return fmt.Errorf("ingest: already running")
	}
	tick := time.NewTicker(in.cfg.CheckpointInterval)
	defer tick.Stop()
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	var last time.Time // the start of the last commit
	batch := make([]*item, 0, in.cfg.MaxBatch)
	for {
		select {
		case <-ctx.Done():
			// Stopped first, then drained: a submitter that queues after
			// the drain sees stopped and drains what it queued.
			close(in.stopped)
			in.endLife()
			in.drain()
			in.checkpoint(true)
			return nil
		case <-tick.C:
			if in.w.due(in.now()) {
				in.checkpoint(false)
			}
		case it := <-in.queue:
			batch = append(batch[:0], it)
			if wait := in.cfg.CommitInterval - time.Since(last); wait > 0 {
				gather.Reset(wait)
			gathering:
				for len(batch) < cap(batch) {
					select {
					case it := <-in.queue:
						batch = append(batch, it)
					case <-gather.C:
						break gathering
					case <-ctx.Done():
						break gathering // committed, then stopped
					}
				}
				gather.Stop()
			}
		fill:
			for len(batch) < cap(batch) {
				select {
				case it := <-in.queue:
					batch = append(batch, it)
				default:
					break fill
				}
			}
			last = time.Now()
			in.commit(batch)
		}
	}
}

// checkpoint writes the twins with unsaved observations that are due (all
// of them when all is set) in a transaction of its own (the writer is idle
// or stopping).
func (in *Ingest) checkpoint(all bool) {
	if in.skipFinalCheckpoint || len(in.w.obsDirty) == 0 && !in.w.pendingStates() {
		return
	}
	err := in.store.Update(func(tx *twinstore.Tx) error { return in.w.checkpoint(tx, in.now(), all) })
	if err != nil {
		in.log.Error("checkpoint failed; observations will be replayed at the next start", "err", err)
		in.reload()
	}
}

// reload rebuilds the writer's state from the store after a failed
// transaction. If that fails too, the state is marked stale and every
// commit fails until a reload succeeds: nothing is folded onto a state that
// does not match the store.
func (in *Ingest) reload() {
	if err := in.w.reload(); err != nil {
		in.stale = fmt.Errorf("state not reloaded after a failed commit: %w", err)
		in.log.Error("reload state from the store", "err", err)
		return
	}
	in.stale = nil
}

// commit applies and stores one batch and answers every item in it.
func (in *Ingest) commit(batch []*item) {
	start := in.now()
	if in.stale != nil {
		in.reload()
	}
	err := in.stale
	if err == nil {
		err = in.store.Update(func(tx *twinstore.Tx) error {
			if err := in.w.apply(tx, batch, start); err != nil {
				return err
			}
			// Decoded before the commit makes the batch readable: a
			// consumer that finds a message in the log finds it here.
			in.decoded.putBatch(batch)
			return nil
		})
	}
	if err != nil {
		in.log.Error("commit failed; messages not acknowledged", "messages", len(batch), "err", err)
		in.decoded.drop(batch) // their positions will hold other messages
		if in.stale == nil {
			in.reload()
		}
		for _, it := range batch {
			it.err = err
			it.out = Outcome{}
		}
		in.stats.commitFailed()
		in.storeErr.Store(&err)
	} else {
		in.storeErr.Store(nil)
		in.store.Observe(in.store.LastPos(), in.w.obsNew)
		clear(in.w.obsNew)
		in.w.obsNew = in.w.obsNew[:0]
		end := in.now()
		in.stats.committed(in.log, end, batch, in.w.snapshotStates(in.w.dirtyStates), end.Sub(start))
		in.w.dirtyStates = in.w.dirtyStates[:0]
		in.wake()
	}
	for _, it := range batch {
		in.finish(it)
	}
}

// Subscribe returns a channel that receives a value after commits that
// stored something (coalesced: capacity one), and a cancel function.
func (in *Ingest) Subscribe() (wake <-chan struct{}, cancel func()) {
	ch := make(chan struct{}, 1)
	in.subMu.Lock()
	in.subs[&ch] = struct{}{}
	in.subMu.Unlock()
	return ch, func() {
		in.subMu.Lock()
		delete(in.subs, &ch)
		in.subMu.Unlock()
	}
}

func (in *Ingest) wake() {
	in.subMu.Lock()
	for ch := range in.subs {
		select {
		case *ch <- struct{}{}:
		default:
		}
	}
	in.subMu.Unlock()
}

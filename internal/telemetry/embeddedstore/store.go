// Package embeddedstore is the single-machine telemetry.Store: an on-disk
// time-series store inside twin-service, built on the Pebble LSM engine
// (github.com/cockroachdb/pebble/v2), which gives it a write-ahead log, crash
// safety, compression and ordered range scans.
//
// # Layout
//
// A series is one measurement of one asset. Series and field names get small
// numeric ids, kept in the store's metadata keys. Every point is one key:
//
//	'e' | bucket (uint32, 2-minute spans since the Unix epoch) | series id (uint32) | time (uint64 ns)  ->  fields
//
// with big-endian integers, so one series' points within 2 minutes are
// adjacent and in time order, and a chart over a range is one short scan per
// bucket. The value is the point's fields, each a uvarint of its id and how
// its number is kept: a decimal of up to three places (a clock, a counter, a
// tenth of a degree, a milliwatt: most of GPU telemetry) as a varint, any
// other as its float64 bits. Either way the number read is the one written,
// bit for bit. Writing the same series and time again overwrites the point.
//
// The bucket comes first so that a memtable flush overlaps only the current
// bucket's keys: a flush of a large fleet holds every series, so it overlaps
// all of its bucket's data, which the compactions rewrite again and again,
// more the fuller the bucket. The width trades that against seeks, one per
// bucket a query or Latest visits (25 to 60 µs each on the benchmark
// machine, where the blocks are not in Pebble's cache).
//
// Measured on the 2-core VM, each width in one sitting (December 2026):
// BenchmarkWriteFleet, 100,000 GPUs for ten minutes (one whole 10-minute
// bucket), 10-minute / 2-minute / 1-minute buckets: compaction bytes per
// point 188.6 / 122.4 / 88.7 (0.65x and 0.47x), CPU per point 5.08 / 4.04 /
// 3.25 µs (0.79x and 0.64x), write amplification 2.85 / 2.37 / 2.12. At
// 100,000 GPUs the 10-minute buckets' compactions took 21% of twin-service's
// CPU over ten minutes. BenchmarkQueryDay (100 GPUs for a day): a 24-hour
// chart 25 / 36 / 67 ms, Latest of a GPU silent for 12 hours 1.2 / 5.2 /
// 16.4 ms. 2 minutes keeps the chart under the 50 ms an API call may take.
// (Day buckets, the first layout, cost what 10-minute ones do in a bucket's
// first two minutes, and their cost grew through the day.)
//
// Decimal values against float64 bits, 2-minute buckets, the same sitting
// (GPU fields as agents report them: a tenth of a degree, a milliwatt,
// integer clocks and counters): BenchmarkWriteFleet, 100,000 GPUs for ten
// minutes, bytes flushed per point 72.7 -> 31.2 (0.43x), compacted 131.3 ->
// 57.7 (0.44x), CPU per point 4.11 -> 2.71 µs (0.66x); BenchmarkQueryDay's
// 24-hour chart 38-39 -> 36-37 ms.
//
// Stores written by earlier versions (keys 'd' with day buckets, 'b' with
// 10-minute ones, 'c' with 2-minute ones; all three with float64 bits for
// every value) are read as they are, beside the new keys, until the
// retention has deleted their last bucket; points of the times they hold
// are written with their keys too, so a point written before the upgrade
// and again after it (the telemetry writer rewrites the points since its
// cursor after a crash) replaces itself instead of being counted twice.
//
// Tags (site, gateway, kind) are accepted and not indexed: they never split
// a series (see the telemetry package) and nothing queries by them here.
//
// # Retention
//
// Queries never return points older than the retention. Run deletes whole
// buckets (2 minutes; those of the old layouts) that lie entirely before it
// (one range tombstone per layout and pass, then a compaction of that range
// reclaims the disk).
//
// # Cost
//
// Write validates, encodes into one Pebble batch and commits it with an
// fsync: a point costs about a microsecond and no allocations once its
// series is known (see BenchmarkWrite), so the store keeps up with ingest
// when writes come in batches (the telemetry writer sends one per log read).
package embeddedstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"twinchain/internal/telemetry"
)

// Options configure a Store.
type Options struct {
	Retention time.Duration    // 0 keeps points forever
	Now       func() time.Time // default time.Now
	Log       *slog.Logger     // default slog.Default()
	// NoSync skips the fsync of each Write. Only for benchmarks: a crash
	// may then lose the last writes.
	NoSync bool
	// DiskReserve is the free space Write leaves on the filesystem beside
	// the batch: 0 means two memtables' worth, room for Pebble to rotate
	// its write-ahead log (preallocated at 110% of a memtable) and flush a
	// memtable (32 MiB; 8 MiB on a filesystem under 1 GiB); negative turns the check off
	// (only for the test of what happens when Pebble's log write fails).
	DiskReserve int64
	// layout is the layout writes use: bucketLayout unless a test or a
	// benchmark sets another (export_test.go).
	layout layout
}

// Store is the embedded telemetry store. It is safe for concurrent use.
type Store struct {
	db   *pebble.DB
	opts Options
	log  *slog.Logger
	wo   *pebble.WriteOptions
	dir  string
	// memTable is Pebble's memtable size (memTableSize).
	memTable uint64

	mu     sync.Mutex
	closed bool
	// broken is set when Pebble failed a commit fatally (its write-ahead log
	// cannot go on after a failed write): every later Write returns it.
	broken  error
	series  map[string]map[string]*series // measurement -> asset -> series
	byAsset map[string][]*series
	fields  map[string]uint32 // field name -> id
	names   []string          // field id -> name
	nextSID uint32
	batch   *pebble.Batch
	keyBuf  []byte
	valBuf  []byte
	// layouts are the layouts holding data, oldest first; the last is the
	// one writes use. Replaced, never changed in place: readers keep the
	// slice they took under mu.
	layouts []layout
	// olds are the layouts of earlier versions holding data, oldest first.
	olds []oldLayout
}

type series struct {
	id          uint32
	measurement string
	asset       string
	fields      []uint64 // bitset of field ids this series has had
	// newest bounds the series' points (ns) once bounded is set: no stored
	// point is newer. Latest starts there instead of walking back through
	// every bucket since (a GPU silent for 30 days is 21,600 buckets back).
	// Writes raise it; the first Latest after Open finds it.
	newest  int64
	bounded bool
}

func (s *series) hasField(id uint32) bool {
	w := int(id / 64)
	return w < len(s.fields) && s.fields[w]&(1<<(id%64)) != 0
}

func (s *series) addField(id uint32) {
	for int(id/64) >= len(s.fields) {
		s.fields = append(s.fields, 0)
	}
	s.fields[id/64] |= 1 << (id % 64)
}

var _ telemetry.Store = (*Store)(nil)

// memTableSize is the size of Pebble's memtables on a filesystem of
// fsBytes (0: unknown): 16 MiB, but Pebble's own 4 MiB on a filesystem under
// 1 GiB, where the write-ahead log Pebble preallocates (110% of a memtable)
// and the reserve Write keeps for it (DiskReserve) would take much of it.
func memTableSize(fsBytes uint64) uint64 {
	if fsBytes > 0 && fsBytes < 1<<30 {
		return 4 << 20
	}
	return 16 << 20
}

// Open opens (or creates) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.layout == (layout{}) {
		opts.layout = bucketLayout
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open telemetry store %s: %w", dir, err)
	}
	fsBytes, _, _ := diskSpace(dir)
	memTable := memTableSize(fsBytes)
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{opts.Log}, FS: privateFS{vfs.Default},
		// 16 MiB memtables, not Pebble's 4 MiB: a flush covers every series
		// of its bucket (keys are bucket, series, time), so each small L0
		// file overlaps all of the bucket's data in Lbase, which compactions
		// rewrite again and again. Measured with day buckets, before the
		// 10-minute ones (not measured again since):
		// BenchmarkWrite (CPU per point, whole process, alternating runs):
		// 5.2 vs 6.5-7.5 µs with fsync (-20 to -31%), 3.0 vs 4.8 µs without;
		// 32 and 64 MiB, L0 thresholds 8/32, no compression on L0-L2 and a
		// 256 MiB Lbase measured no better than 16 MiB. Costs up to two
		// memtables (32 MiB) of memory.
		MemTableSize: memTable})
	if err != nil {
		return nil, fmt.Errorf("open telemetry store %s: %w", dir, err)
	}
	s := &Store{
		db:       db,
		dir:      dir,
		memTable: memTable,
		opts:     opts,
		log:      opts.Log,
		wo:       pebble.Sync,
		series:   map[string]map[string]*series{},
		byAsset:  map[string][]*series{},
		fields:   map[string]uint32{},
		nextSID:  1,
		layouts:  []layout{opts.layout},
	}
	if opts.NoSync {
		s.wo = pebble.NoSync
	}
	if err := s.findOldLayouts(); err != nil {
		_ = db.Close() // the error being returned says more
		return nil, fmt.Errorf("open telemetry store %s: %w", dir, err)
	}
	if err := s.loadMeta(); err != nil {
		_ = db.Close() // the error being returned says more
		return nil, fmt.Errorf("open telemetry store %s: %w", dir, err)
	}
	return s, nil
}

// findOldLayouts adds the old layouts holding data to the layouts read:
// stores written by earlier versions keep their points in them until the
// retention deletes them, with no rewrite at Open.
func (s *Store) findOldLayouts() error {
	for _, l := range oldLayouts {
		if l.prefix == s.opts.layout.prefix {
			continue
		}
		last, ok, err := s.edgeBucket(l, true)
		if err != nil {
			return err
		}
		if ok {
			s.olds = append(s.olds, oldLayout{l, l.start(last + 1)})
			s.layouts = slices.Insert(s.layouts, len(s.layouts)-1, l)
		}
	}
	return nil
}

// loadMeta reads the series and field dictionaries.
func (s *Store) loadMeta() (err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMeta}, UpperBound: []byte{prefixMeta + 1}})
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		switch {
		case len(k) > 2 && k[1] == metaField && len(v) == 4:
			id := binary.BigEndian.Uint32(v)
			s.setField(string(k[2:]), id)
		case len(k) > 2 && k[1] == metaSeries && len(v) >= 4:
			m, a, ok := splitSeriesKey(k[2:])
			if !ok {
				return fmt.Errorf("corrupt series key %q", k)
			}
			se := &series{id: binary.BigEndian.Uint32(v), measurement: m, asset: a}
			for rest := v[4:]; len(rest) >= 8; rest = rest[8:] {
				se.fields = append(se.fields, binary.BigEndian.Uint64(rest))
			}
			s.addSeries(se)
			if se.id >= s.nextSID {
				s.nextSID = se.id + 1
			}
		}
	}
	return it.Error()
}

func (s *Store) setField(name string, id uint32) {
	s.fields[name] = id
	for int(id) >= len(s.names) {
		s.names = append(s.names, "")
	}
	s.names[id] = name
}

func (s *Store) addSeries(se *series) {
	m := s.series[se.measurement]
	if m == nil {
		m = map[string]*series{}
		s.series[se.measurement] = m
	}
	m[se.asset] = se
	s.byAsset[se.asset] = append(s.byAsset[se.asset], se)
}

// Write stores pts durably (one fsynced batch). Invalid points are skipped
// and reported by a *telemetry.SkippedError.
func (s *Store) Write(ctx context.Context, pts []telemetry.Point) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var skipped telemetry.Skipped
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return telemetry.ErrClosed
	}
	if s.broken != nil {
		return s.broken
	}
	if s.batch == nil {
		s.batch = s.db.NewBatch()
	}
	b := s.batch
	defer b.Reset()
	u := s.undoPoint()
	if err := s.encode(b, pts, &skipped, &u); err != nil {
		s.undo(u)
		return fmt.Errorf("telemetry batch: %w", err)
	}
	if !b.Empty() {
		if err := s.commit(b); err != nil {
			s.undo(u)
			return fmt.Errorf("commit %d telemetry points: %w", len(pts), err)
		}
	}
	return skipped.Err()
}

// ErrDiskFull is returned by Write when the filesystem has too little room
// for the batch and the reserve. Nothing is written; the caller retries.
var ErrDiskFull = errors.New("telemetry store: disk nearly full")

// commit commits b with an fsync. Pebble cannot survive a failed write to
// its log (it calls Fatalf, "the commit pipeline will be horked"), so a
// batch is refused up front when the disk cannot take it; should a commit
// still fail that way, the store stops taking writes (the telemetry
// writer's cursor has not moved: a restart writes those points again).
// Called with s.mu held.
func (s *Store) commit(b *pebble.Batch) (err error) {
	if reserve := s.opts.DiskReserve; reserve >= 0 {
		if reserve == 0 {
			reserve = int64(2 * s.memTable)
		}
		if _, free, ok := diskSpace(s.dir); ok && free < uint64(2*b.Len())+uint64(reserve) {
			return fmt.Errorf("%w: %d bytes free in %s", ErrDiskFull, free, s.dir)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			s.broken = fmt.Errorf("telemetry store stopped taking writes after a failed log write (restart twin-service once the disk has room; the writer resumes from its cursor): %s", f)
			s.log.Error(s.broken.Error())
			err = s.broken
		}
	}()
	return b.Commit(s.wo)
}

// diskSpace is the size of dir's filesystem and the space an unprivileged
// writer has left on it.
func diskSpace(dir string) (size, free uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), true
}

// encode adds the valid points of pts to b, with the metadata of the series
// and fields they are the first to use, and records in u what it added to
// the dictionaries. Called with s.mu held.
func (s *Store) encode(b *pebble.Batch, pts []telemetry.Point, skipped *telemetry.Skipped, u *undo) error {
	for i := range pts {
		p := &pts[i]
		if err := p.Validate(); err != nil {
			skipped.Add(err)
			continue
		}
		se, err := s.seriesFor(b, p.Measurement, p.Asset)
		if err != nil {
			return err
		}
		l, ns := s.opts.layout, p.Time.UnixNano()
		se.newest = max(se.newest, ns)
		for _, o := range s.olds {
			if ns < o.end {
				l = o.layout
				break
			}
		}
		val := s.valBuf[:0]
		changed := false
		for _, f := range p.Fields {
			id, ok := s.fields[f.Name]
			if !ok {
				id = uint32(len(s.names))
				s.setField(f.Name, id)
				if err := b.Set(metaFieldKey(f.Name), binary.BigEndian.AppendUint32(nil, id), nil); err != nil {
					return err
				}
			}
			if !se.hasField(id) {
				se.addField(id)
				if se.id < u.nextSID {
					u.gained = append(u.gained, fieldOf{se, id})
				}
				changed = true
			}
			val = l.appendField(val, id, f.Value)
		}
		if changed {
			if err := b.Set(metaSeriesKey(se.measurement, se.asset), seriesValue(se), nil); err != nil {
				return err
			}
		}
		s.valBuf = val
		s.keyBuf = l.appendKey(s.keyBuf[:0], se.id, ns)
		if err := b.Set(s.keyBuf, val, nil); err != nil {
			return err
		}
	}
	return nil
}

// seriesFor finds or creates the series of measurement and asset; a new one
// is recorded in b. Called with s.mu held.
func (s *Store) seriesFor(b *pebble.Batch, measurement, asset string) (*series, error) {
	if se := s.series[measurement][asset]; se != nil {
		return se, nil
	}
	se := &series{id: s.nextSID, measurement: measurement, asset: asset}
	s.nextSID++
	s.addSeries(se)
	return se, b.Set(metaSeriesKey(measurement, asset), seriesValue(se), nil)
}

// undo is what a Write added to the dictionaries. Their metadata keys are
// in the batch, so when it is not committed they are taken out again: kept,
// the store would write points of a series or field it never recorded, and
// give the series' id to another after a restart.
type undo struct {
	nextSID uint32    // series from this id on are new
	names   int       // fields from this id on are new
	gained  []fieldOf // fields that older series gained
}

type fieldOf struct {
	se *series
	id uint32
}

func (s *Store) undoPoint() undo { return undo{nextSID: s.nextSID, names: len(s.names)} }

// undo takes out of the dictionaries what was added since u. Called with
// s.mu held.
func (s *Store) undo(u undo) {
	for _, g := range u.gained {
		g.se.fields[g.id/64] &^= 1 << (g.id % 64)
	}
	if s.nextSID != u.nextSID {
		for m, byAsset := range s.series {
			for a, se := range byAsset {
				if se.id >= u.nextSID {
					delete(byAsset, a)
				}
			}
			if len(byAsset) == 0 {
				delete(s.series, m)
			}
		}
		for a, list := range s.byAsset {
			list = slices.DeleteFunc(list, func(se *series) bool { return se.id >= u.nextSID })
			if len(list) == 0 {
				delete(s.byAsset, a)
			} else {
				s.byAsset[a] = list
			}
		}
		s.nextSID = u.nextSID
	}
	for _, name := range s.names[u.names:] {
		delete(s.fields, name)
	}
	s.names = s.names[:u.names]
}

// Flush returns at once: a Write is durable and readable when it returns.
func (s *Store) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return telemetry.ErrClosed
	}
	return nil
}

// PruneInterval is how often Run applies the retention.
const PruneInterval = 10 * time.Minute

// Run applies the retention now and every PruneInterval until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	if s.opts.Retention <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(PruneInterval)
	defer t.Stop()
	for {
		if _, err := s.Prune(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("telemetry retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Prune deletes the buckets that lie entirely before the retention, in
// every layout, and compacts them away. It returns how many buckets it
// removed in this pass.
func (s *Store) Prune(ctx context.Context) (int, error) {
	if s.opts.Retention <= 0 {
		return 0, nil
	}
	rs := s.opts.Now().Add(-s.opts.Retention).UnixNano()
	s.mu.Lock()
	closed, layouts := s.closed, s.layouts
	s.mu.Unlock()
	if closed {
		return 0, telemetry.ErrClosed
	}
	deleted := 0
	for _, l := range layouts {
		n, err := s.pruneLayout(ctx, l, l.bucketOf(rs))
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// pruneLayout deletes the buckets of l before cut and returns how many
// there were. A layout that no longer holds data and that writes do not use
// is no longer read.
func (s *Store) pruneLayout(ctx context.Context, l layout, cut uint32) (int, error) {
	from, ok, err := s.edgeBucket(l, false)
	if err != nil || !ok || from >= cut {
		return 0, err
	}
	start, end := l.bucketPrefix(from), l.bucketPrefix(cut)
	if err := s.db.DeleteRange(start, end, s.wo); err != nil {
		return 0, fmt.Errorf("delete buckets %c %d..%d: %w", l.prefix, from, cut, err)
	}
	if err := s.db.Compact(ctx, start, end, false); err != nil {
		return 0, fmt.Errorf("compact buckets %c %d..%d: %w", l.prefix, from, cut, err)
	}
	s.log.Info("telemetry retention applied", "buckets_deleted", cut-from, "bucket", time.Duration(l.width), "kept_from", time.Unix(0, l.start(cut)).UTC())
	if l == s.opts.layout {
		return int(cut - from), nil
	}
	if _, ok, err := s.edgeBucket(l, false); err != nil || ok {
		return int(cut - from), err
	}
	s.mu.Lock()
	s.layouts = slices.DeleteFunc(slices.Clone(s.layouts), func(m layout) bool { return m == l })
	s.olds = slices.DeleteFunc(slices.Clone(s.olds), func(o oldLayout) bool { return o.layout == l })
	s.mu.Unlock()
	return int(cut - from), nil
}

// edgeBucket is the oldest bucket of l holding data, or the newest when
// last is set; ok is false when l holds none.
func (s *Store) edgeBucket(l layout, last bool) (b uint32, ok bool, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{l.prefix}, UpperBound: []byte{l.prefix + 1}})
	if err != nil {
		return 0, false, fmt.Errorf("find the edge bucket %c: %w", l.prefix, err)
	}
	defer closeIter(it, &err)
	if last && !it.Last() || !last && !it.First() {
		return 0, false, nil
	}
	return l.keyBucket(it.Key()), true, nil
}

// Close closes the store's files.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.batch != nil {
		err = s.batch.Close()
	}
	return errors.Join(err, s.db.Close())
}

// closeIter closes it and, when *err is nil, sets it to the error Close
// returns: one the iteration met that the caller did not see, or one from
// closing its files.
func closeIter(it *pebble.Iterator, err *error) {
	if cerr := it.Close(); *err == nil {
		*err = cerr
	}
}

// pebbleLogger sends Pebble's messages to slog.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble", "msg", fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble", "msg", fmt.Sprintf(format, args...))
}

// Fatalf panics with a pebbleFatal, which commit turns into an error when
// it comes from a commit.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	panic(pebbleFatal(fmt.Sprintf(format, args...)))
}

type pebbleFatal string

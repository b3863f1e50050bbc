package embeddedstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"twinchain/internal/telemetry"
)

func float64frombits(b []byte) float64 { return math.Float64frombits(binary.BigEndian.Uint64(b)) }

type window struct {
	n                   int
	sum, min, max, last float64
	lastT               int64
}

// add adds the point v at time t. The points of one layout come in time
// order, those of the layouts one after the other, oldest layout first.
func (w *window) add(t int64, v float64) {
	if w.n == 0 {
		w.min, w.max = v, v
	}
	w.n++
	w.sum += v
	w.min = math.Min(w.min, v)
	w.max = math.Max(w.max, v)
	if t >= w.lastT {
		w.last, w.lastT = v, t
	}
}

func (w *window) value(agg telemetry.Agg) float64 {
	switch agg {
	case telemetry.AggMin:
		return w.min
	case telemetry.AggMax:
		return w.max
	case telemetry.AggLast:
		return w.last
	case telemetry.AggCount:
		return float64(w.n)
	}
	return w.sum / float64(w.n)
}

// Query aggregates one field of one asset per aligned window.
func (s *Store) Query(ctx context.Context, q telemetry.Query) (_ []telemetry.Sample, err error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	q = q.Aligned()
	lo, hi := q.From.UnixNano(), q.To.UnixNano()
	if rs := telemetry.RetentionStart(s.opts.Now(), s.opts.Retention); !rs.IsZero() && rs.UnixNano() > lo {
		lo = rs.UnixNano()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, telemetry.ErrClosed
	}
	se := s.series[q.Measurement][q.Asset]
	fid, ok := s.fields[q.Field]
	has := se != nil && ok && se.hasField(fid)
	layouts := s.layouts
	s.mu.Unlock()
	if !has || lo >= hi {
		return nil, nil
	}
	step := int64(q.Step)
	wins := make([]window, (q.To.UnixNano()-q.From.UnixNano())/step)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	for _, l := range layouts {
		err := l.walk(ctx, it, se.id, lo, hi, false, func(t int64, v []byte) bool {
			if f, ok := l.fieldValue(v, fid); ok {
				wins[(t-q.From.UnixNano())/step].add(t, f)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	var out []telemetry.Sample
	for i := range wins {
		if wins[i].n > 0 {
			out = append(out, telemetry.Sample{Time: q.From.Add(time.Duration(int64(i) * step)), Value: wins[i].value(q.Agg)})
		}
	}
	return out, nil
}

// walk calls fn with the time and value of each point of series sid in
// [lo, hi) of layout l, in time order (newest first when backward), until
// fn returns false. It seeks once per bucket, and from a bucket where the
// series has no point straight to the next one holding any point, so a
// range reaching far beyond the store's data costs one seek, not one per
// bucket.
func (l layout) walk(ctx context.Context, it *pebble.Iterator, sid uint32, lo, hi int64, backward bool, fn func(t int64, v []byte) bool) error {
	if lo >= hi {
		return nil
	}
	first, last := l.bucketOf(lo), l.bucketOf(hi-1)
	it.SetBounds(l.bucketPrefix(first), l.bucketPrefix(last+1))
	b := first
	if backward {
		b = last
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		lower, upper := l.seriesBounds(b, sid, lo, hi)
		valid := false
		if backward {
			valid = it.SeekLT(upper)
		} else {
			valid = it.SeekGE(lower)
		}
		for ; valid && bytes.Compare(it.Key(), lower) >= 0 && bytes.Compare(it.Key(), upper) < 0; valid = advance(it, backward) {
			if !fn(dataKeyTime(it.Key()), it.Value()) {
				return it.Error()
			}
		}
		if !valid || (backward && b == first) || (!backward && b == last) {
			return it.Error()
		}
		// The iterator is on the nearest key past the series' points in b.
		switch next := l.keyBucket(it.Key()); {
		case next != b:
			b = next
		case backward:
			b--
		default:
			b++
		}
	}
}

// advance moves it to the next key, or the previous one when backward.
func advance(it *pebble.Iterator, backward bool) bool {
	if backward {
		return it.Prev()
	}
	return it.Next()
}

// Latest returns the newest value of each field of asset.
func (s *Store) Latest(ctx context.Context, asset string) (_ []telemetry.Value, err error) {
	from, to := telemetry.LatestRange(s.opts.Now(), s.opts.Retention)
	lo, hi := from.UnixNano(), to.UnixNano()
	type want struct {
		se          *series
		id          uint32
		measurement string
		fields      []uint64
		newest      int64
		bounded     bool
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, telemetry.ErrClosed
	}
	var list []want
	for _, se := range s.byAsset[asset] {
		list = append(list, want{se, se.id, se.measurement, slices.Clone(se.fields), se.newest, se.bounded})
	}
	names := slices.Clone(s.names)
	layouts := s.layouts
	s.mu.Unlock()

	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	var out []telemetry.Value
	for _, w := range list {
		newest := map[uint32]telemetry.Value{} // field id -> value, over all layouts
		if !w.bounded {
			n, err := s.newestOf(ctx, it, layouts, w.id, lo)
			if err != nil {
				return nil, err
			}
			s.mu.Lock()
			w.se.newest, w.se.bounded = max(w.se.newest, n), true
			w.newest = w.se.newest
			s.mu.Unlock()
		}
		top := min(hi, w.newest+1)
		for _, l := range layouts {
			if err := latestOf(ctx, it, l, w.id, w.fields, lo, top, func(id uint32, v telemetry.Value) {
				if old, ok := newest[id]; !ok || v.Time.After(old.Time) {
					v.Measurement, v.Field = w.measurement, names[id]
					newest[id] = v
				}
			}); err != nil {
				return nil, err
			}
		}
		for _, v := range newest {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b telemetry.Value) int {
		if c := strings.Compare(a.Measurement, b.Measurement); c != 0 {
			return c
		}
		return strings.Compare(a.Field, b.Field)
	})
	return out, nil
}

// newestOf is the time of the newest point of series sid at or after lo in
// any of the layouts, however far ahead, or lo-1 when there is none.
func (s *Store) newestOf(ctx context.Context, it *pebble.Iterator, layouts []layout, sid uint32, lo int64) (int64, error) {
	newest := lo - 1
	for _, l := range layouts {
		last, ok, err := s.edgeBucket(l, true)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		if err := l.walk(ctx, it, sid, lo, l.start(last+1), true, func(t int64, _ []byte) bool {
			newest = max(newest, t)
			return false
		}); err != nil {
			return 0, err
		}
	}
	return newest, nil
}

// latestOf calls fn with the newest value in [lo, hi) of each of the fields
// (a bitset of field ids) that series sid has in layout l.
func latestOf(ctx context.Context, it *pebble.Iterator, l layout, sid uint32, fields []uint64, lo, hi int64, fn func(id uint32, v telemetry.Value)) error {
	remaining := 0
	for _, word := range fields {
		remaining += bits.OnesCount64(word)
	}
	seen := make([]uint64, len(fields))
	return l.walk(ctx, it, sid, lo, hi, true, func(t int64, v []byte) bool {
		ts := time.Unix(0, t).UTC()
		l.eachField(v, func(id uint32, v float64) {
			if int(id/64) >= len(seen) || seen[id/64]&(1<<(id%64)) != 0 {
				return
			}
			seen[id/64] |= 1 << (id % 64)
			remaining--
			fn(id, telemetry.Value{Time: ts, Value: v})
		})
		return remaining > 0
	})
}

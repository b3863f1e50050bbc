package embeddedstore

import (
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
}

func (w *window) add(v float64) {
	if w.n == 0 {
		w.min, w.max = v, v
	}
	w.n++
	w.sum += v
	w.min = math.Min(w.min, v)
	w.max = math.Max(w.max, v)
	w.last = v // keys are in time order
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
	for day := dayOf(lo); day <= dayOf(hi-1); day++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		lower, upper := dayBounds(day, se.id, lo, hi)
		it.SetBounds(lower, upper)
		for valid := it.First(); valid; valid = it.Next() {
			v, ok := fieldValue(it.Value(), fid)
			if !ok {
				continue
			}
			wins[(dataKeyTime(it.Key())-q.From.UnixNano())/step].add(v)
		}
		if err := it.Error(); err != nil {
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

// dayBounds are the keys of series sid within day and [lo, hi).
func dayBounds(day, sid uint32, lo, hi int64) (lower, upper []byte) {
	start, end := int64(day)*nsPerDay, int64(day+1)*nsPerDay
	lower = appendDataKey(nil, sid, max(lo, start))
	if hi < end {
		upper = appendDataKey(nil, sid, hi)
	} else {
		upper = binary.BigEndian.AppendUint32(dayPrefix(day), sid+1)
	}
	return lower, upper
}

// Latest returns the newest value of each field of asset.
func (s *Store) Latest(ctx context.Context, asset string) (_ []telemetry.Value, err error) {
	from, to := telemetry.LatestRange(s.opts.Now(), s.opts.Retention)
	lo, hi := from.UnixNano(), to.UnixNano()
	type want struct {
		id          uint32
		measurement string
		fields      []uint64
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, telemetry.ErrClosed
	}
	var list []want
	for _, se := range s.byAsset[asset] {
		list = append(list, want{se.id, se.measurement, slices.Clone(se.fields)})
	}
	names := slices.Clone(s.names)
	s.mu.Unlock()

	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	var out []telemetry.Value
	for _, w := range list {
		remaining := 0
		for _, word := range w.fields {
			remaining += bits.OnesCount64(word)
		}
		seen := make([]uint64, len(w.fields))
		for day := dayOf(hi - 1); day >= dayOf(lo) && remaining > 0; day-- {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			lower, upper := dayBounds(day, w.id, lo, hi)
			it.SetBounds(lower, upper)
			for valid := it.Last(); valid && remaining > 0; valid = it.Prev() {
				ts := time.Unix(0, dataKeyTime(it.Key())).UTC()
				eachField(it.Value(), func(id uint32, v float64) {
					if int(id/64) >= len(seen) || seen[id/64]&(1<<(id%64)) != 0 {
						return
					}
					seen[id/64] |= 1 << (id % 64)
					remaining--
					out = append(out, telemetry.Value{Measurement: w.measurement, Field: names[id], Time: ts, Value: v})
				})
			}
			if err := it.Error(); err != nil {
				return nil, err
			}
			if day == 0 {
				break
			}
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

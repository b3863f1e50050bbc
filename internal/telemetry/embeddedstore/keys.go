package embeddedstore

import (
	"bytes"
	"encoding/binary"
	"time"
)

// Metadata key prefix and kinds.
const (
	prefixMeta = 'm'
	metaField  = 'f' // 'm' 'f' name -> id (uint32)
	metaSeries = 's' // 'm' 's' measurement 0 asset -> id (uint32), field bitset (uint64s)
)

// A layout is one way of keying points: a prefix byte and the width of the
// time buckets that split each series' points,
//
//	prefix | bucket (uint32, time / width) | series id (uint32) | time (uint64 ns)
//
// so a memtable flush overlaps only the buckets it was written in.
type layout struct {
	prefix byte
	width  int64 // ns
}

const nsPerDay = int64(24 * time.Hour)

var (
	// dayLayout is the layout of stores written before the buckets: its
	// flushes spanned the whole day's keys.
	dayLayout = layout{'d', nsPerDay}
	// tenMinuteLayout is the layout of stores written before bucketLayout:
	// at 100,000 GPUs its compactions cost 1.26x the CPU per point of 2-minute
	// buckets over ten minutes (see the package comment).
	tenMinuteLayout = layout{'b', int64(10 * time.Minute)}
	// bucketLayout is the layout every write uses.
	bucketLayout = layout{'c', int64(2 * time.Minute)}
	// oldLayouts are the layouts of earlier versions, oldest first: read
	// while they hold data, and written only with points of the times they
	// hold (oldLayout).
	oldLayouts = []layout{dayLayout, tenMinuteLayout}
)

// oldLayout is a layout of an earlier version that holds data, and the end
// of its newest bucket: points before it are written there too, so a point
// written again after the upgrade (the telemetry writer rewrites those
// since its cursor after a crash) replaces itself instead of being kept in
// two layouts.
type oldLayout struct {
	layout
	end int64
}

// bucketOf is the bucket of time ns (ns >= 0: points are after 1971).
func (l layout) bucketOf(ns int64) uint32 { return uint32(max(ns, 0) / l.width) }

// start is the time bucket b starts at.
func (l layout) start(b uint32) int64 { return int64(b) * l.width }

// bucketPrefix is the start of bucket b's keys, and the end of bucket b-1's.
func (l layout) bucketPrefix(b uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{l.prefix}, b)
}

// keyBucket is the bucket of a data key of l.
func (l layout) keyBucket(k []byte) uint32 { return binary.BigEndian.Uint32(k[1:5]) }

// appendKey appends the key of a point of series sid at ns.
func (l layout) appendKey(dst []byte, sid uint32, ns int64) []byte {
	dst = append(dst, l.prefix)
	dst = binary.BigEndian.AppendUint32(dst, l.bucketOf(ns))
	dst = binary.BigEndian.AppendUint32(dst, sid)
	return binary.BigEndian.AppendUint64(dst, uint64(ns))
}

// seriesBounds are the keys of series sid within bucket b and [lo, hi).
func (l layout) seriesBounds(b, sid uint32, lo, hi int64) (lower, upper []byte) {
	lower = l.appendKey(nil, sid, max(lo, l.start(b)))
	if hi < l.start(b+1) {
		upper = l.appendKey(nil, sid, hi)
	} else {
		upper = binary.BigEndian.AppendUint32(l.bucketPrefix(b), sid+1)
	}
	return lower, upper
}

// dataKeyTime is the time of a data key.
func dataKeyTime(k []byte) int64 {
	if len(k) != 17 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(k[9:]))
}

func metaFieldKey(name string) []byte {
	return append([]byte{prefixMeta, metaField}, name...)
}

func metaSeriesKey(measurement, asset string) []byte {
	k := append([]byte{prefixMeta, metaSeries}, measurement...)
	k = append(k, 0)
	return append(k, asset...)
}

func splitSeriesKey(k []byte) (measurement, asset string, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i <= 0 || i == len(k)-1 {
		return "", "", false
	}
	return string(k[:i]), string(k[i+1:]), true
}

func seriesValue(se *series) []byte {
	v := binary.BigEndian.AppendUint32(nil, se.id)
	for _, w := range se.fields {
		v = binary.BigEndian.AppendUint64(v, w)
	}
	return v
}

// fieldValue finds field id in an encoded value.
func fieldValue(v []byte, id uint32) (float64, bool) {
	for len(v) > 0 {
		fid, n := binary.Uvarint(v)
		if n <= 0 || len(v) < n+8 {
			return 0, false
		}
		if uint32(fid) == id {
			return float64frombits(v[n : n+8]), true
		}
		v = v[n+8:]
	}
	return 0, false
}

// eachField calls fn for every field of an encoded value.
func eachField(v []byte, fn func(id uint32, val float64)) {
	for len(v) > 0 {
		fid, n := binary.Uvarint(v)
		if n <= 0 || len(v) < n+8 {
			return
		}
		fn(uint32(fid), float64frombits(v[n:n+8]))
		v = v[n+8:]
	}
}

package embeddedstore

import (
	"bytes"
	"encoding/binary"
	"math"
	"time"
)

// Metadata key prefix and kinds.
const (
	prefixMeta = 'm'
	metaField  = 'f' // 'm' 'f' name -> id (uint32)
	metaSeries = 's' // 'm' 's' measurement 0 asset -> id (uint32), field bitset (uint64s)
)

// A layout is one way of keying and encoding points: a prefix byte, the
// width of the time buckets that split each series' points,
//
//	prefix | bucket (uint32, time / width) | series id (uint32) | time (uint64 ns)
//
// so a memtable flush overlaps only the buckets it was written in, and how
// a field's value is encoded (appendField).
type layout struct {
	prefix byte
	width  int64 // ns
	// decimal: values that are exact decimals of up to three places are
	// kept as a varint and the places (appendField); otherwise and in
	// earlier layouts as float64 bits.
	decimal bool
}

const nsPerDay = int64(24 * time.Hour)

var (
	// dayLayout is the layout of stores written before the buckets: its
	// flushes spanned the whole day's keys.
	dayLayout = layout{'d', nsPerDay, false}
	// tenMinuteLayout is the layout of stores written before the 2-minute
	// buckets: at 100,000 GPUs its compactions cost 1.26x the CPU per point
	// of 2-minute buckets over ten minutes (see the package comment).
	tenMinuteLayout = layout{'b', int64(10 * time.Minute), false}
	// floatLayout is the layout of stores written before the decimal
	// values: 2-minute buckets, every value 8 bytes.
	floatLayout = layout{'c', int64(2 * time.Minute), false}
	// bucketLayout is the layout every write uses.
	bucketLayout = layout{'e', int64(2 * time.Minute), true}
	// oldLayouts are the layouts of earlier versions, oldest first: read
	// while they hold data, and written only with points of the times they
	// hold (oldLayout).
	oldLayouts = []layout{dayLayout, tenMinuteLayout, floatLayout}
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

// pow10 are the scales of the decimal places a decimal value may have.
var pow10 = [...]float64{1, 10, 100, 1000}

// appendField appends field id with value v to a point's encoded value:
// uvarint(id) and the float64's bits in layouts that are not decimal; in
// decimal ones uvarint(id<<3 | kind), then for kind 0 the float64's bits,
// and for kind 1 to 4 the varint m with v == m / 10^(kind-1) exactly. GPU
// telemetry is mostly such numbers (clocks, counters, percentages, a
// temperature to a tenth, a power to a milliwatt): a field takes 2-4 bytes
// instead of 9, which the memtable, the log and every compaction carry.
func (l layout) appendField(dst []byte, id uint32, v float64) []byte {
	if l.decimal {
		if m, e, ok := decimalOf(v); ok {
			dst = binary.AppendUvarint(dst, uint64(id)<<3|uint64(e+1))
			return binary.AppendVarint(dst, m)
		}
		dst = binary.AppendUvarint(dst, uint64(id)<<3)
	} else {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(v))
}

// decimalOf finds the fewest places e (up to 3) for which v is exactly
// m / 10^e, the double a decoder computes (and the one a parser gives for
// that decimal). -0 is not one: m would lose its sign.
func decimalOf(v float64) (m int64, e int, ok bool) {
	if v == 0 && math.Signbit(v) {
		return 0, 0, false
	}
	for e, p := range pow10 {
		r := math.Round(v * p)
		if math.Abs(r) < 1<<53 && r/p == v {
			return int64(r), e, true
		}
	}
	return 0, 0, false
}

// nextField decodes the first field of an encoded value, with the bytes it
// took; n is 0 when the value is malformed.
func (l layout) nextField(v []byte) (id uint32, val float64, n int) {
	h, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, 0, 0
	}
	kind := uint64(0)
	if l.decimal {
		kind, h = h&7, h>>3
	}
	if kind == 0 {
		if len(v) < n+8 {
			return 0, 0, 0
		}
		return uint32(h), float64frombits(v[n : n+8]), n + 8
	}
	m, k := binary.Varint(v[n:])
	if k <= 0 || kind > uint64(len(pow10)) {
		return 0, 0, 0
	}
	return uint32(h), float64(m) / pow10[kind-1], n + k
}

// fieldValue finds field id in an encoded value.
func (l layout) fieldValue(v []byte, id uint32) (float64, bool) {
	for len(v) > 0 {
		fid, val, n := l.nextField(v)
		if n == 0 {
			return 0, false
		}
		if fid == id {
			return val, true
		}
		v = v[n:]
	}
	return 0, false
}

// eachField calls fn for every field of an encoded value.
func (l layout) eachField(v []byte, fn func(id uint32, val float64)) {
	for len(v) > 0 {
		fid, val, n := l.nextField(v)
		if n == 0 {
			return
		}
		fn(fid, val)
		v = v[n:]
	}
}

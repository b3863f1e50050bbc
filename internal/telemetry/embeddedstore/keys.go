package embeddedstore

import (
	"bytes"
	"encoding/binary"
)

// Key prefixes and metadata kinds.
const (
	prefixData = 'd'
	prefixMeta = 'm'
	metaField  = 'f' // 'm' 'f' name -> id (uint32)
	metaSeries = 's' // 'm' 's' measurement 0 asset -> id (uint32), field bitset (uint64s)
)

const nsPerDay = int64(24 * 60 * 60 * 1e9)

func dayOf(ns int64) uint32 { return uint32(ns / nsPerDay) }

func dayPrefix(day uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixData}, day)
}

// appendDataKey appends the key of a point of series sid at ns.
func appendDataKey(dst []byte, sid uint32, ns int64) []byte {
	dst = append(dst, prefixData)
	dst = binary.BigEndian.AppendUint32(dst, dayOf(ns))
	dst = binary.BigEndian.AppendUint32(dst, sid)
	return binary.BigEndian.AppendUint64(dst, uint64(ns))
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

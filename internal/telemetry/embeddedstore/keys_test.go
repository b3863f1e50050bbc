package embeddedstore

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDecimalValues: every float64 comes back bit for bit from a decimal
// layout's value, decimals of up to three places take few bytes, and other
// numbers (and -0) keep their float64 bits.
func TestDecimalValues(t *testing.T) {
	tenth := 0.1 // a variable: constant 0.1 + 0.2 is exactly 0.3
	cases := []struct {
		v     float64
		bytes int // the field's encoded size, id 5 included
	}{
		{0, 2}, {1, 2}, {-1, 2}, {65.3, 3}, {245.123, 4}, {1410, 3}, {-12.5, 3}, {0.001, 2},
		{math.Copysign(0, -1), 9}, {1.0 / 3, 9}, {tenth + 0.2, 9}, {0.0001, 9}, {1 << 53, 9}, {1<<53 - 1, 9},
		{math.MaxFloat64, 9}, {-math.MaxFloat64, 9}, {math.SmallestNonzeroFloat64, 9}, {math.Inf(1), 9},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 { // decimals as a parser gives them, and arbitrary doubles
		cases = append(cases, struct {
			v     float64
			bytes int
		}{float64(rng.Int64N(2e9)-1e9) / pow10[rng.IntN(4)], 0}, struct {
			v     float64
			bytes int
		}{math.Float64frombits(rng.Uint64()), 0})
	}
	for _, l := range []layout{floatLayout, bucketLayout} {
		for _, c := range cases {
			if math.IsNaN(c.v) {
				continue // Validate refuses NaN
			}
			enc := l.appendField(nil, 5, c.v)
			id, got, n := l.nextField(enc)
			if id != 5 || n != len(enc) || math.Float64bits(got) != math.Float64bits(c.v) {
				t.Fatalf("%c: %v (%x) decoded as id %d, %v (%x), %d of %d bytes", l.prefix, c.v, math.Float64bits(c.v), id, got, math.Float64bits(got), n, len(enc))
			}
			if !l.decimal && len(enc) != 9 {
				t.Errorf("%c: %v took %d bytes, want 9", l.prefix, c.v, len(enc))
			}
			if l.decimal && c.bytes > 0 && len(enc) != c.bytes {
				t.Errorf("%c: %v took %d bytes, want %d", l.prefix, c.v, len(enc), c.bytes)
			}
		}
	}
	// A truncated value is malformed, not misread.
	enc := bucketLayout.appendField(nil, 5, 245.123)
	for i := range len(enc) {
		if _, _, n := bucketLayout.nextField(enc[:i]); n != 0 {
			t.Errorf("%d of %d bytes decoded (%d)", i, len(enc), n)
		}
	}
}

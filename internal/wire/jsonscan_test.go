package wire

import "testing"

// scanCheck runs a scanner on data and reports whether it said ok, failing
// t where it did and the general path fails or gives another value.
type scanCheck func(t *testing.T, data []byte) (ok bool)

// testScanner checks that check's scanner takes every golden input (by
// name) and decodes each mutation as the general path does, or declines it.
func testScanner(t *testing.T, check scanCheck, golden map[string][]byte, mutations []string) {
	t.Helper()
	for name, data := range golden {
		if !check(t, data) {
			t.Errorf("the scanner declines %s, want ok", name)
		}
	}
	for _, data := range mutations {
		check(t, []byte(data))
	}
}

// fuzzScanner runs check on every input, seeded with the golden inputs and
// the mutations.
func fuzzScanner(f *testing.F, check scanCheck, golden map[string][]byte, mutations []string) {
	for _, data := range golden {
		f.Add(data)
	}
	for _, data := range mutations {
		f.Add([]byte(data))
	}
	f.Fuzz(func(t *testing.T, data []byte) { check(t, data) })
}

// benchDecode runs the benchmark name of decoding size bytes with decode.
func benchDecode(b *testing.B, name string, size int, decode func() error) {
	b.Run(name, func(b *testing.B) {
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			if err := decode(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

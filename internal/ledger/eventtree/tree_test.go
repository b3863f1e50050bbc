package eventtree

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// mth is the Merkle Tree Hash exactly as RFC 6962 section 2.1 defines it,
// written out recursively as an independent reference.
func mth(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		s := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return s[:]
	}
	k := 1 << (bits.Len(uint(len(leaves)-1)) - 1) // largest power of two < n
	l, r := mth(leaves[:k]), mth(leaves[k:])
	s := sha256.Sum256(append(append([]byte{1}, l...), r...))
	return s[:]
}

func leafData(i int) []byte {
	return fmt.Appendf(nil, `{"id":%d,"asset":"srv-s1-%03d.gpu%d","type":"health_changed"}`, i+1, i%50, i%8)
}

func build(t *testing.T, dir string, n int) (*Tree, [][]byte) {
	t.Helper()
	tr, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	var leaves [][]byte
	for i := 0; i < n; {
		// Append in uneven batches so batch boundaries land everywhere.
		k := min(1+i%5, n-i)
		var batch [][]byte
		for j := 0; j < k; j++ {
			batch = append(batch, leafData(i+j))
		}
		if _, err := tr.Append(batch...); err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, batch...)
		i += k
	}
	commit(t, tr)
	return tr, leaves
}

var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))

// commit signs and stores a checkpoint of the whole tree: what Open keeps.
func commit(t testing.TB, tr *Tree) Checkpoint {
	t.Helper()
	root, size, err := tr.Root()
	if err != nil {
		t.Fatal(err)
	}
	cp := SignCheckpoint(testKey, "test", size, root, time.Unix(int64(size), 0))
	if err := tr.AddCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestRFC6962Vectors(t *testing.T) {
	tr, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got, want := EmptyRoot(), testonly.EmptyRootHash(); !bytes.Equal(got, want) {
		t.Errorf("EmptyRoot() = %x, want %x", got, want)
	}
	// RootHashes()[k] is the root of the first k inputs.
	for i, leaf := range testonly.LeafInputs() {
		if _, err := tr.Append(leaf); err != nil {
			t.Fatal(err)
		}
		got, size, err := tr.Root()
		if err != nil {
			t.Fatal(err)
		}
		if want := testonly.RootHashes()[i+1]; size != uint64(i+1) || !bytes.Equal(got, want) {
			t.Errorf("Root() after %d vector leaves = %x (size %d), want %x", i+1, got, size, want)
		}
	}
}

func TestProofs(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 100, 1000, 1025} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			tr, leaves := build(t, t.TempDir(), n)
			root, size, err := tr.Root()
			if err != nil {
				t.Fatal(err)
			}
			if want := mth(leaves); size != uint64(n) || !bytes.Equal(root, want) {
				t.Fatalf("Root() = %x size %d, want %x size %d", root, size, want, n)
			}
			// Inclusion of every leaf (sampled for big trees) in the full tree and
			// in a smaller earlier tree.
			step := max(1, n/97)
			for i := 0; i < n; i += step {
				for _, sz := range []int{n, i + 1 + (n-i-1)/2} {
					p, err := tr.InclusionProof(uint64(i), uint64(sz))
					if err != nil {
						t.Fatalf("InclusionProof(%d, %d): %v", i, sz, err)
					}
					want := mth(leaves[:sz])
					if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), uint64(sz), LeafHash(leaves[i]), p, want); err != nil {
						t.Errorf("VerifyInclusion(leaf %d, size %d) = %v, want nil", i, sz, err)
					}
					if sz > 1 && len(p) > 0 {
						bad := append([][]byte(nil), p...)
						bad[0] = bytes.Clone(bad[0])
						bad[0][5] ^= 1
						if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), uint64(sz), LeafHash(leaves[i]), bad, want); err == nil {
							t.Errorf("VerifyInclusion(leaf %d, size %d) of a flipped proof = nil, want an error", i, sz)
						}
					}
				}
				got, err := tr.Leaf(uint64(i))
				if err != nil || !bytes.Equal(got, leaves[i]) {
					t.Errorf("Leaf(%d) = %q, %v, want %q", i, got, err, leaves[i])
				}
			}
			// Consistency between earlier sizes and later ones.
			for s1 := 1; s1 <= n; s1 += step {
				for _, s2 := range []int{s1, s1 + (n-s1)/3, n} {
					p, err := tr.ConsistencyProof(uint64(s1), uint64(s2))
					if err != nil {
						t.Fatalf("ConsistencyProof(%d, %d): %v", s1, s2, err)
					}
					r1, r2 := mth(leaves[:s1]), mth(leaves[:s2])
					if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(s1), uint64(s2), p, r1, r2); err != nil {
						t.Errorf("VerifyConsistency(%d, %d) = %v, want nil", s1, s2, err)
					}
					if got, err := tr.RootAt(uint64(s1)); err != nil || !bytes.Equal(got, r1) {
						t.Errorf("RootAt(%d) = %x, %v, want %x", s1, got, err, r1)
					}
				}
			}
			if err := tr.Verify(); err != nil {
				t.Errorf("Verify() = %v, want nil", err)
			}
		})
	}
}

func TestRootOfRange(t *testing.T) {
	tr, leaves := build(t, t.TempDir(), 40)
	for _, r := range [][2]int{{0, 1}, {0, 40}, {3, 10}, {16, 32}, {39, 40}} {
		got, err := tr.RootOfRange(uint64(r[0]), uint64(r[1]))
		if want := mth(leaves[r[0]:r[1]]); err != nil || !bytes.Equal(got, want) {
			t.Errorf("RootOfRange(%d, %d) = %x, %v, want %x", r[0], r[1], got, err, want)
		}
	}
	if _, err := tr.RootOfRange(5, 41); err == nil {
		t.Errorf("RootOfRange(5, 41) of a 40-leaf tree = nil error, want one")
	}
}

func TestReopenKeepsTree(t *testing.T) {
	dir := t.TempDir()
	tr, leaves := build(t, dir, 77)
	root, _, _ := tr.Root()
	tr.Close()
	tr2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	got, size, err := tr2.Root()
	if err != nil || size != 77 || !bytes.Equal(got, root) {
		t.Fatalf("reopened Root() = %x size %d %v, want %x size 77", got, size, err, root)
	}
	leaves = append(leaves, leafData(77), leafData(78))
	if _, err := tr2.Append(leafData(77), leafData(78)); err != nil {
		t.Fatal(err)
	}
	commit(t, tr2)
	if got, _, _ := tr2.Root(); !bytes.Equal(got, mth(leaves)) {
		t.Errorf("Root() after reopen and append = %x, want %x", got, mth(leaves))
	}
}

func TestOpenCutsTornWrite(t *testing.T) {
	dir := t.TempDir()
	tr, leaves := build(t, dir, 10)
	tr.Close()
	// A crash after writing leaf data and half an index entry.
	appendFile(t, filepath.Join(dir, "leaves.dat"), []byte(`{"torn":true}`))
	appendFile(t, filepath.Join(dir, "leaves.idx"), []byte{0, 0, 0})
	// And a node file that lost its tail.
	os.Truncate(filepath.Join(dir, "level-01.dat"), 32)
	tr2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if got, size, _ := tr2.Root(); size != 10 || !bytes.Equal(got, mth(leaves)) {
		t.Errorf("Root() after torn write = %x size %d, want %x size 10", got, size, mth(leaves))
	}
	if err := tr2.Verify(); err != nil {
		t.Errorf("Verify() after repair = %v", err)
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestTamperDetected(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	n := 50
	// Offsets of leaf 23's bytes, to flip one of them.
	var leaf23 int64
	for i := 0; i < 23; i++ {
		leaf23 += int64(len(leafData(i)))
	}
	for _, tc := range []struct {
		name      string
		file      string
		off       int64
		wantLeaf  uint64
		wantLevel uint
	}{
		{"leaf byte", "leaves.dat", leaf23 + 9, 23, 0},
		{"leaf hash", "level-00.dat", 31*32 + 4, 31, 0},
		{"inner node", "level-02.dat", 3*32 + 1, 12, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tr, _ := build(t, dir, n)
			root, size, _ := tr.Root()
			if err := tr.AddCheckpoint(SignCheckpoint(key, "test", size, root, time.Unix(1, 0))); err != nil {
				t.Fatal(err)
			}
			tr.Close()
			flipByte(t, filepath.Join(dir, tc.file), tc.off)
			tr2, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer tr2.Close()
			err = tr2.VerifyAll(key.Public().(ed25519.PublicKey))
			var te *TamperError
			if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
				t.Fatalf("VerifyAll() after flipping %s@%d = %v, want a TamperError", tc.file, tc.off, err)
			}
			if te.Leaf != tc.wantLeaf || te.Level != tc.wantLevel {
				t.Errorf("VerifyAll() = %v, want leaf %d level %d", err, tc.wantLeaf, tc.wantLevel)
			}
		})
	}
}

func TestCheckpoint(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	pub := key.Public().(ed25519.PublicKey)
	dir := t.TempDir()
	tr, _ := build(t, dir, 20)
	root, size, _ := tr.Root()
	cp := SignCheckpoint(key, "twinchain/events", size, root, time.Date(2026, 11, 25, 16, 0, 0, 5, time.UTC))
	if err := VerifyCheckpoint(&cp, pub); err != nil {
		t.Fatalf("VerifyCheckpoint(fresh) = %v", err)
	}
	if err := tr.AddCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	wrong := cp
	wrong.Size = 19
	if err := tr.AddCheckpoint(wrong); err == nil {
		t.Errorf("AddCheckpoint(root of 20 with size 19) = nil, want an error")
	}
	for _, tc := range []struct {
		name string
		mod  func(c *Checkpoint)
	}{
		{"size", func(c *Checkpoint) { c.Size++ }},
		{"root", func(c *Checkpoint) { c.Root = bytes.Clone(c.Root); c.Root[0] ^= 1 }},
		{"time", func(c *Checkpoint) { c.Time = c.Time.Add(time.Nanosecond) }},
		{"origin", func(c *Checkpoint) { c.Origin = "other" }},
		{"sig", func(c *Checkpoint) { c.Sig = bytes.Clone(c.Sig); c.Sig[10] ^= 1 }},
	} {
		c := cp
		tc.mod(&c)
		if err := VerifyCheckpoint(&c, pub); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("VerifyCheckpoint(changed %s) = %v, want ErrBadCheckpoint", tc.name, err)
		}
	}
	tr.Close()
	// A checkpoint edited on disk is caught.
	path := filepath.Join(dir, "checkpoints.jsonl")
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(b, []byte(`"size":20,"root"`), []byte(`"size":19,"root"`), 2), 0o644)
	tr2, err := OpenReadOnly(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if err := tr2.VerifyAll(pub); !errors.Is(err, ErrTampered) {
		t.Errorf("VerifyAll() with an edited checkpoint = %v, want ErrTampered", err)
	}
	// The service refuses to open it: the committing checkpoint's root is
	// not the leaves'.
	if tr3, err := Open(dir, Options{}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "checkpoints.jsonl line") {
		t.Errorf("Open() with an edited checkpoint = %v, want ErrTampered naming the line", err)
		if err == nil {
			tr3.Close()
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	tr, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	batch := make([][]byte, 256)
	for i := range batch {
		batch[i] = bytes.Repeat([]byte("x"), 300) // about one event's JSON
	}
	b.SetBytes(300)
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		if _, err := tr.Append(batch[:min(len(batch), b.N-i)]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}

func BenchmarkInclusionProof(b *testing.B) {
	tr, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	const n = 1 << 20
	batch := make([][]byte, 4096)
	for i := range batch {
		batch[i] = []byte(fmt.Sprintf("leaf %d", i))
	}
	for i := 0; i < n; i += len(batch) {
		tr.Append(batch...)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.InclusionProof(uint64(i*7919)%n, n-1); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRangeInclusionProof(t *testing.T) {
	tr, leaves := build(t, t.TempDir(), 60)
	for _, r := range [][2]uint64{{0, 1}, {0, 60}, {3, 10}, {16, 32}, {17, 58}, {59, 60}} {
		root, err := tr.RootOfRange(r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		for i := r[0]; i < r[1]; i++ {
			p, err := tr.RangeInclusionProof(r[0], r[1], i)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i-r[0], r[1]-r[0], LeafHash(leaves[i]), p, root); err != nil {
				t.Errorf("VerifyInclusion(leaf %d of range %v) = %v", i, r, err)
			}
		}
	}
	if _, err := tr.RangeInclusionProof(5, 10, 10); err == nil {
		t.Errorf("RangeInclusionProof(5, 10, 10) = nil error, want out of bounds")
	}
}

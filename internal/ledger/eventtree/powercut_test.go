package eventtree

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// uncommitted builds a tree of 10 committed leaves (a checkpoint covers
// them) and 5 more appended and synced but not committed, as the anchorer
// leaves it when the power goes between an append and its checkpoint. It
// returns the directory and the byte length of the committed leaves.
func uncommitted(t *testing.T) (string, int64) {
	t.Helper()
	dir := t.TempDir()
	tr, _ := build(t, dir, 10)
	var committed int64
	for i := range 10 {
		committed += int64(len(leafData(i)))
	}
	if _, err := tr.Append(leafData(10), leafData(11), leafData(12), leafData(13), leafData(14)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Sync(); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	return dir, committed
}

// TestPowerCutIsNotTamper: whatever part of an uncommitted append a power
// cut kept (the index but not the data, data that reads as zeros, a torn
// checkpoint line, node files short), Open drops the uncommitted leaves,
// says so, and the tree verifies; appending them again gives the same root.
func TestPowerCutIsNotTamper(t *testing.T) {
	var all [][]byte
	for i := range 15 {
		all = append(all, leafData(i))
	}
	for _, tc := range []struct {
		name string
		cut  func(t *testing.T, dir string, committed int64)
		note string
	}{
		{"index kept, data lost", func(t *testing.T, dir string, committed int64) {
			if err := os.Truncate(filepath.Join(dir, "leaves.dat"), committed); err != nil {
				t.Fatal(err)
			}
		}, "dropped 5 leaves"},
		{"data reads as zeros", func(t *testing.T, dir string, committed int64) {
			path := filepath.Join(dir, "leaves.dat")
			b, _ := os.ReadFile(path)
			clear(b[committed:])
			os.WriteFile(path, b, 0o600)
		}, "dropped 5 leaves"},
		{"node files lost", func(t *testing.T, dir string, committed int64) {
			os.Truncate(filepath.Join(dir, "level-00.dat"), 11*HashSize)
			os.Remove(filepath.Join(dir, "level-03.dat"))
		}, "dropped 5 leaves"},
		{"torn checkpoint line", func(t *testing.T, dir string, committed int64) {
			appendFile(t, filepath.Join(dir, "checkpoints.jsonl"), []byte(`{"origin":"test","size":15,"ro`))
		}, "unfinished last line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, committed := uncommitted(t)
			tc.cut(t, dir, committed)
			tr, err := Open(dir, Options{Key: testKey.Public().(ed25519.PublicKey)})
			if err != nil {
				t.Fatalf("Open after a power cut = %v, want the committed tree", err)
			}
			defer tr.Close()
			if root, size, _ := tr.Root(); size != 10 || !bytes.Equal(root, mth(all[:10])) {
				t.Errorf("Root() = %x size %d, want the committed %x size 10", root, size, mth(all[:10]))
			}
			if notes := strings.Join(tr.Notes(), "; "); !strings.Contains(notes, tc.note) {
				t.Errorf("Notes() = %q, want it to say %q", notes, tc.note)
			}
			if err := tr.VerifyAll(testKey.Public().(ed25519.PublicKey)); err != nil {
				t.Errorf("VerifyAll() = %v", err)
			}
			if _, err := tr.Append(all[10:]...); err != nil {
				t.Fatal(err)
			}
			commit(t, tr)
			if err := tr.Verify(); err != nil {
				t.Errorf("Verify() after appending again = %v", err)
			}
			if root, _, _ := tr.Root(); !bytes.Equal(root, mth(all)) {
				t.Errorf("Root() after appending again = %x, want %x", root, mth(all))
			}
		})
	}
}

// TestCommittedDamageIsTamper: committed data that is missing or changed is
// never taken for a power cut: Open refuses with the place, or (a changed
// leaf byte, which Open does not read) VerifyAll names it.
func TestCommittedDamageIsTamper(t *testing.T) {
	pub := testKey.Public().(ed25519.PublicKey)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	for _, tc := range []struct {
		name string
		harm func(t *testing.T, dir string, committed int64)
		want string // in Open's error
	}{
		{"leaves.dat cut into committed leaves", func(t *testing.T, dir string, committed int64) {
			os.Truncate(filepath.Join(dir, "leaves.dat"), committed-5)
		}, "leaves.dat has"},
		{"leaves.idx cut into committed leaves", func(t *testing.T, dir string, committed int64) {
			os.Truncate(filepath.Join(dir, "leaves.idx"), 8*7)
		}, "leaves.idx holds 7 leaves"},
		{"forged checkpoint", func(t *testing.T, dir string, committed int64) {
			tr, err := OpenReadOnly(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			cp := SignCheckpoint(other, "test", 10, mth(nil), time.Unix(99, 0))
			b, _ := json.Marshal(&cp)
			appendFile(t, filepath.Join(dir, "checkpoints.jsonl"), append(b, '\n'))
		}, "checkpoints.jsonl line 2"},
		{"committed node changed", func(t *testing.T, dir string, committed int64) {
			flipByte(t, filepath.Join(dir, "level-03.dat"), 5) // the node over leaves 0-7: in the committed root
		}, "node level 3 covering leaf 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, committed := uncommitted(t)
			tc.harm(t, dir, committed)
			tr, err := Open(dir, Options{Key: pub})
			if err == nil {
				tr.Close()
			}
			var te *TamperError
			if !errors.Is(err, ErrTampered) || !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open() = %v, want a TamperError saying %q", err, tc.want)
			}
		})
	}
}

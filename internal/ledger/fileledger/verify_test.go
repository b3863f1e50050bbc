package fileledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newestMetaPage is the offset of the bbolt meta page with the higher
// transaction id: the one that says what state.db holds.
func newestMetaPage(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int64(binary.LittleEndian.Uint32(b[16+8:])) // page header, magic, version, then the page size
	txid := func(off int64) uint64 { return binary.LittleEndian.Uint64(b[off+64:]) }
	if txid(pageSize) > txid(0) {
		return pageSize
	}
	return 0
}

func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte("\n"))
}

// TestVerifyEverythingOnDisk: Verify reads all of blocks.dat, not only the
// blocks state.db knows: anything added after them must be valid blocks,
// and a crash's leftovers (blocks not yet applied, an unfinished line) are
// notes, not damage.
func TestVerifyEverythingOnDisk(t *testing.T) {
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	pub := testKey.Public().(ed25519.PublicKey)
	for _, tc := range []struct {
		name       string
		harm       func(t *testing.T, dir string, head []byte)
		wantHeight uint64 // 0: no damage
		wantNote   string
	}{
		{"lines appended", func(t *testing.T, dir string, head []byte) {
			appendTo(t, filepath.Join(dir, "blocks.dat"), []byte(`{"body":{"height":9},"hash":"00"}`+"\n"))
		}, 9, ""},
		{"block by another key appended", func(t *testing.T, dir string, head []byte) {
			body := BlockBody{Height: 9, Prev: head, Time: time.Unix(9, 0).UTC(), Writes: []Write{{Key: "k001", Value: []byte("forged")}}}
			b, _ := sealBlock(other, &body)
			line, _ := json.Marshal(&b)
			appendTo(t, filepath.Join(dir, "blocks.dat"), append(line, '\n'))
		}, 9, ""},
		{"newest header page and last block changed", func(t *testing.T, dir string, head []byte) {
			db := filepath.Join(dir, "state.db")
			flip(t, db, newestMetaPage(t, db)+64+7) // its txid: the checksum fails, bbolt reads the older page
			path := filepath.Join(dir, "blocks.dat")
			ls := lines(t, path)
			ls[7] = change(t, ls[7], `"args":7`, `"args":9`)
			os.WriteFile(path, bytes.Join(ls, nil), 0o600)
		}, 8, ""},
		{"newest header page lost (a crash)", func(t *testing.T, dir string, head []byte) {
			db := filepath.Join(dir, "state.db")
			flip(t, db, newestMetaPage(t, db)+64+7)
		}, 0, "block 8 is written but not yet in state.db"},
		{"unfinished last line (a crash)", func(t *testing.T, dir string, head []byte) {
			appendTo(t, filepath.Join(dir, "blocks.dat"), []byte(`{"body":{"hei`))
		}, 0, "unfinished line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			e := openTestEngine(t, dir)
			submitN(t, e, 8)
			head := bytes.Clone(e.head)
			e.Close()
			tc.harm(t, dir, head)
			v, err := OpenVerifier(dir, pub)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			err = v.Verify()
			notes := strings.Join(v.Notes(), "; ")
			if tc.wantHeight == 0 {
				if err != nil || !strings.Contains(strings.ReplaceAll(notes, "blocks 8-8 are", "block 8 is"), tc.wantNote) {
					t.Errorf("Verify() = %v, notes %q; want no damage and a note saying %q", err, notes, tc.wantNote)
				}
				return
			}
			var te *TamperError
			if !errors.As(err, &te) || te.Height != tc.wantHeight {
				t.Errorf("Verify() = %v, want damage at block %d", err, tc.wantHeight)
			}
		})
	}
}

// TestWritesRefusedAfterTamper: a blocks.dat changed under the running
// engine is caught before the next block, and the ledger stays read-only.
func TestWritesRefusedAfterTamper(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir)
	submitN(t, e, 3)
	path := filepath.Join(dir, "blocks.dat")
	ls := lines(t, path)
	ls[2] = change(t, ls[2], `"args":2`, `"args":5`)
	os.WriteFile(path, bytes.Join(ls, nil), 0o600)
	if _, err := e.Submit(Caller{ID: "svc"}, "Put", 0, put("a", "b")); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "block 3") {
		t.Fatalf("Submit after block 3 was changed = %v, want ErrTampered naming block 3", err)
	}
	os.WriteFile(path, bytes.Join(lines(t, path), nil), 0o600)
	if _, err := e.Submit(Caller{ID: "svc"}, "Put", 0, put("a", "b")); !errors.Is(err, ErrTampered) || e.Height() != 3 {
		t.Errorf("Submit once damaged = %v at height %d, want it refused, height 3", err, e.Height())
	}
}

func appendTo(t *testing.T, path string, b []byte) {
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

func flip(t *testing.T, path string, off int64) {
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
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func change(t *testing.T, line []byte, from, to string) []byte {
	t.Helper()
	out := bytes.Replace(line, []byte(from), []byte(to), 1)
	if bytes.Equal(out, line) {
		t.Fatalf("%q not in %s", from, line)
	}
	return out
}

package fileledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))

func fixedClock() func() time.Time {
	t := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Millisecond); return t }
}

func openTestEngine(t *testing.T, dir string) *Engine {
	t.Helper()
	e, err := openEngine(Options{Dir: dir, Key: testKey, Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// put is a transaction that writes key=value, or fails on "refuse".
func put(key, value string) func(st *txState, id string, at time.Time) (any, error) {
	return func(st *txState, id string, at time.Time) (any, error) {
		if value == "refuse" {
			return nil, errors.New("refused")
		}
		old, _ := st.Get(key)
		if string(old) == value {
			return "unchanged", nil
		}
		return map[string]string{"key": key}, st.Put(key, []byte(value))
	}
}

func submitN(t *testing.T, e *Engine, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := e.Submit(Caller{ID: "svc", Role: "service"}, "Put", i, put(fmt.Sprintf("k%03d", i%7), fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEngineBlocks(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir)
	submitN(t, e, 10)
	if got := e.Height(); got != 10 {
		t.Fatalf("Height() = %d, want 10", got)
	}
	// A refused call and a call that changes nothing make no block.
	if _, err := e.Submit(Caller{ID: "svc"}, "Put", 0, put("x", "refuse")); err == nil {
		t.Errorf("Submit(refused) = nil error, want one")
	}
	if r, err := e.Submit(Caller{ID: "svc"}, "Put", 0, put("k002", "v9")); err != nil || r.Height != 0 {
		t.Errorf("Submit(unchanged) = %+v, %v, want no block", r, err)
	}
	if got := e.Height(); got != 10 {
		t.Errorf("Height() after refused and empty calls = %d, want 10", got)
	}
	var prev []byte = make([]byte, 32)
	for h := uint64(1); h <= 10; h++ {
		b, err := e.Block(h)
		if err != nil {
			t.Fatal(err)
		}
		body, err := CheckBlock(&b, e.PublicKey())
		if err != nil {
			t.Fatalf("CheckBlock(%d) = %v", h, err)
		}
		if body.Height != h || !bytes.Equal(body.Prev, prev) || len(body.Txs) != 1 || body.Txs[0].Func != "Put" {
			t.Errorf("block %d = height %d prev %x txs %+v, want height %d prev %x one Put", h, body.Height, []byte(body.Prev), body.Txs, h, prev)
		}
		prev = b.Hash
	}
	err := e.Query(func(st *txState) error {
		v, _ := st.Get("k002")
		if string(v) != "v9" {
			t.Errorf("Get(k002) = %q, want v9", v)
		}
		var keys []string
		st.Range("k001", "k004", func(k string, _ []byte) bool { keys = append(keys, k); return true })
		if fmt.Sprint(keys) != "[k001 k002 k003]" {
			t.Errorf("Range(k001, k004) = %v, want [k001 k002 k003]", keys)
		}
		if st.Put("a", nil) == nil {
			t.Errorf("Put in a query = nil error, want one")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Verify(); err != nil {
		t.Errorf("Verify() = %v", err)
	}
}

func TestEngineReplayAndTornLine(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir)
	submitN(t, e, 3)
	// A crash after block 4 reached blocks.dat but before state.db saw it,
	// followed by half of block 5.
	body := BlockBody{Height: 4, Prev: e.head, Time: time.Unix(5, 0).UTC(), Writes: []Write{{Key: "late", Value: []byte("yes")}}}
	b, err := sealBlock(testKey, &body)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(&b)
	e.Close()
	f, _ := os.OpenFile(filepath.Join(dir, "blocks.dat"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write(append(line, '\n'))
	f.Write(line[:40])
	f.Close()
	e2 := openTestEngine(t, dir)
	if got := e2.Height(); got != 4 {
		t.Fatalf("Height() after replay = %d, want 4", got)
	}
	e2.Query(func(st *txState) error {
		if v, _ := st.Get("late"); string(v) != "yes" {
			t.Errorf("Get(late) after replay = %q, want yes", v)
		}
		return nil
	})
	submitN(t, e2, 1)
	if err := e2.Verify(); err != nil {
		t.Errorf("Verify() after replay, cut and a new block = %v", err)
	}
}

func TestEngineTamper(t *testing.T) {
	// Each case flips one byte of blocks.dat somewhere inside block 4's line
	// (a digit of its body, a signature byte) or changes state.db.
	for _, tc := range []struct {
		name       string
		file       bool
		find       string // text in block 4's line to change
		wantHeight uint64
	}{
		{"body value", true, `"time"`, 4},
		{"signature", true, `"sig":"`, 4},
		{"hash", true, `"hash":"`, 4},
		{"state", false, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			e := openTestEngine(t, dir)
			submitN(t, e, 8)
			b4, _ := e.Block(4)
			e.Close()
			if tc.file {
				data, _ := os.ReadFile(filepath.Join(dir, "blocks.dat"))
				line, _ := json.Marshal(&b4)
				start := bytes.Index(data, line)
				at := start + bytes.Index(line, []byte(tc.find)) + len(tc.find) + 3
				data[at] ^= 0x01
				os.WriteFile(filepath.Join(dir, "blocks.dat"), data, 0o644)
			} else {
				db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o644, nil)
				if err != nil {
					t.Fatal(err)
				}
				db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketState).Put([]byte("k001"), []byte("forged")) })
				db.Close()
			}
			e2, err := openEngine(Options{Dir: dir, Key: testKey, Now: fixedClock()})
			if err != nil {
				t.Fatal(err)
			}
			defer e2.Close()
			err = e2.Verify()
			var te *TamperError
			if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify() = %v, want a TamperError", err)
			}
			if te.Height != tc.wantHeight {
				t.Errorf("Verify() = %v, want it at block %d", err, tc.wantHeight)
			}
		})
	}
}

func TestEngineWrongKey(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir)
	submitN(t, e, 2)
	e.Close()
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	e2, err := openEngine(Options{Dir: dir, Key: other})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.Verify(); !errors.Is(err, ErrTampered) {
		t.Errorf("Verify() with another service key = %v, want ErrTampered", err)
	}
}

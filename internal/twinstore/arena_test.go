package twinstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"twinchain/internal/wire"
)

// TestArenaReusedAfterCommit: the bytes of one transaction's messages are
// reused by the next ones (that is the point of the arena), and every
// message reads back as written: nothing is reused before bbolt has
// written it, including after a rolled-back transaction.
func TestArenaReusedAfterCommit(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "twins.db"))
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var want [][]byte
	starts := map[*byte]bool{} // where each transaction's first bytes were
	for u := range 40 {
		fail := u%7 == 3 // rolled back: its messages are not stored
		var batch [][]byte
		err := s.Update(func(tx *Tx) error {
			starts[&tx.alloc(1)[0]] = true
			for i := range 12 {
				raw := make([]byte, 8<<10+rng.IntN(24<<10)) // random: s2 does not shrink it
				for j := range raw {
					raw[j] = byte(rng.Uint32())
				}
				m := Message{Gateway: "gw", Seq: uint64(u*100 + i + 1), Kind: wire.KindTelemetry, Time: t0, Recorded: t0, Raw: raw}
				if err := tx.AppendMessage(&m); err != nil {
					return err
				}
				batch = append(batch, raw)
			}
			if fail {
				return errors.New("rolled back")
			}
			return nil
		})
		if fail != (err != nil) {
			t.Fatalf("update %d: err %v", u, err)
		}
		if !fail {
			want = append(want, batch...)
		}
	}
	if len(starts) > 10 { // each takes ~7 chunks; new ones each time would be 40 places
		t.Errorf("40 transactions began in %d places: chunks not reused", len(starts))
	}
	got, err := s.MessagesAfter(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages stored, want %d", len(got), len(want))
	}
	for i, m := range got {
		if !bytes.Equal(m.Raw, want[i]) {
			t.Fatalf("message %d (position %d) reads back changed", i, m.Pos)
		}
	}
}

// TestArenaKeepsBounded: a huge transaction's chunks are not all kept.
func TestArenaKeepsBounded(t *testing.T) {
	var a arena
	for range 3 * arenaKeep / arenaChunk {
		a.alloc(arenaChunk / 2)
	}
	a.alloc(4 * arenaChunk) // larger than a chunk: a chunk of its own
	a.reset()
	if a.kept > arenaKeep || a.kept < arenaKeep-4*arenaChunk {
		t.Errorf("kept %d bytes, want at most %d and about that", a.kept, arenaKeep)
	}
	n := 0
	for _, c := range a.free {
		n += cap(c)
		if len(c) != 0 {
			t.Fatalf("a free chunk holds %d bytes", len(c))
		}
	}
	if n != a.kept || a.cur != nil || len(a.used) != 0 {
		t.Errorf("free chunks %d bytes, kept %d, cur %d, used %d", n, a.kept, len(a.cur), len(a.used))
	}
	b := a.alloc(10)
	if len(b) != 10 || cap(b) != 10 {
		t.Errorf("alloc(10): len %d cap %d", len(b), cap(b))
	}
}

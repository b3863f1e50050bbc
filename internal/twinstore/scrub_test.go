package twinstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/wire"
)

var gwKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))

// storeSigned stores n signed status messages of gateway gw-s (seq 1..n,
// each body naming its seq in a marker) and a last will, as the ingest
// does: message, sequence-index entry.
func storeSigned(t *testing.T, s *Store, n int) {
	t.Helper()
	err := s.Update(func(tx *Tx) error {
		for seq := 0; seq <= n; seq++ {
			kind := wire.KindStatus
			raw, err := wire.SealRaw(gwKey, "gw-s", uint64(seq), t0.Add(time.Duration(seq)*time.Second), kind, fmt.Appendf(nil, `{"state":"online","agent_version":"marker-%05d"}`, seq))
			if err != nil {
				return err
			}
			env, _ := wire.Decode(raw)
			m := Message{Gateway: "gw-s", Seq: uint64(seq), Kind: kind, Time: env.Time, Recorded: t0, Raw: raw}
			if err := tx.AppendMessage(&m); err != nil {
				return err
			}
			if seq > 0 {
				sum := sha256.Sum256(raw)
				if err := tx.PutSeq("gw-s", env.Epoch, uint64(seq), m.Pos, &sum); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// damageMarker changes one byte of the stored message whose body carries
// marker-{seq}, in the store file itself.
func damageMarker(t *testing.T, path string, seq int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, fmt.Appendf(nil, "marker-%05d", seq))
	if i < 0 {
		t.Fatalf("marker %d not in the file", seq)
	}
	b[i+3] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestScrubFindsDamagedMessages: bytes changed inside stored messages (the
// store's own structure intact) are found and reported by position, by the
// sequence index's SHA-256 or, for the last will, by the signature.
func TestScrubFindsDamagedMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twins.db")
	s := open(t, path)
	storeSigned(t, s, 2000)
	s.Close()
	for _, seq := range []int{0, 17, 1000, 1999} {
		damageMarker(t, path, seq)
	}
	s = open(t, path)
	defer s.Close()
	keys := func(gw string) (ed25519.PublicKey, bool) {
		return gwKey.Public().(ed25519.PublicKey), gw == "gw-s"
	}
	var got []uint64
	res, err := s.Scrub(context.Background(), keys, func(d Damage) { got = append(got, d.Pos) })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []uint64{1, 18, 1001, 2000}; !slices.Equal(got, want) || res.Damaged != 4 || res.Messages != 2001 {
		t.Errorf("Scrub found %v (%+v), want positions %v of 2001 messages", got, res, want)
	}
}

// TestCompressedMessages: envelopes of compressMin bytes or more are stored
// compressed and read back byte for byte; a store of the previous format is
// read as it is and marked with the current one; a changed byte inside a
// compressed envelope is found by the scrub.
func TestCompressedMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twins.db")
	s := open(t, path)
	storeSigned(t, s, 1) // short: stored as they are
	// A store of the previous format: its records read as they are.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte(storeFormatPrev)) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	body := fmt.Appendf(nil, `{"state":"online","agent_version":"%s"}`, bytes.Repeat([]byte("v1.2.3 "), 300))
	raw, err := wire.SealRaw(gwKey, "gw-s", 2, t0.Add(2*time.Second), wire.KindStatus, body)
	if err != nil {
		t.Fatal(err)
	}
	var pos uint64
	err = s.Update(func(tx *Tx) error {
		m := Message{Gateway: "gw-s", Seq: 2, Kind: wire.KindStatus, Time: t0.Add(2 * time.Second), Recorded: t0, Raw: raw}
		err := tx.AppendMessage(&m)
		pos = m.Pos
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var format string
	var stored int
	if err := s.db.View(func(tx *bolt.Tx) error {
		format = string(tx.Bucket(bucketMeta).Get(keyFormat))
		stored = len(tx.Bucket(bucketMessages).Get(u64key(pos)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if format != storeFormat || stored > len(raw)/2 {
		t.Errorf("format %q, record of a %d-byte envelope %d bytes; want %q and compressed", format, len(raw), stored, storeFormat)
	}
	msgs, err := s.MessagesAfter(0, 10)
	if err != nil || len(msgs) != 3 || !bytes.Equal(msgs[2].Raw, raw) || msgs[2].Pos != pos || msgs[2].Kind != wire.KindStatus {
		t.Fatalf("MessagesAfter = %d messages (%v), want 3 with the compressed one's bytes back", len(msgs), err)
	}
	if env, err := wire.Decode(msgs[1].Raw); err != nil || env.Seq != 1 {
		t.Errorf("message of the previous format = %v (%v), want seq 1", env.Seq, err)
	}
	// Change one byte of the compressed envelope's signature (its last
	// bytes are the envelope's end, stored as a literal).
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMessages)
		v := bytes.Clone(b.Get(u64key(pos)))
		v[len(v)-40] ^= 0x01
		return b.Put(u64key(pos), v)
	}); err != nil {
		t.Fatal(err)
	}
	keys := func(gw string) (ed25519.PublicKey, bool) { return gwKey.Public().(ed25519.PublicKey), gw == "gw-s" }
	var got []uint64
	if _, err := s.Scrub(context.Background(), keys, func(d Damage) { got = append(got, d.Pos) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{pos}) {
		t.Errorf("Scrub found %v, want [%d]", got, pos)
	}
	s.Close()
}

package twinstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// Damage is one stored record that does not hold.
type Damage struct {
	Bucket  string `json:"bucket"` // messages, events, twins
	Pos     uint64 `json:"pos,omitempty"`
	Key     string `json:"key,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	What    string `json:"what"`
}

func (d Damage) String() string {
	switch d.Bucket {
	case "messages":
		return fmt.Sprintf("message %d (gateway %s seq %d): %s", d.Pos, d.Gateway, d.Seq, d.What)
	case "events":
		return fmt.Sprintf("event %d: %s", d.Pos, d.What)
	}
	return fmt.Sprintf("%s %s: %s", d.Bucket, d.Key, d.What)
}

// ScrubResult sums up a scrub.
type ScrubResult struct {
	Messages  int // messages checked
	Events    int
	Twins     int
	Damaged   int // records that do not hold
	Unchecked int // messages with no sequence-index entry whose gateway is no longer registered
}

// Keys looks up a gateway's public key (registry.Registry.Lookup's first
// and last results).
type Keys func(gateway string) (ed25519.PublicKey, bool)

// scrubChunk bounds how many records one read transaction covers, so a
// scrub never holds the file's old pages for long.
const scrubChunk = 1000

// Scrub re-checks every stored message, event and twin and calls report
// for each one that does not hold. A message must decode, carry the
// gateway, sequence, kind and time it was stored under, and either have
// the SHA-256 its sequence-index entry recorded when it was accepted or,
// with no entry (the last will, or an entry retention removed), carry a
// valid signature by the gateway's registered key. Events and twins must
// decode, under their own id. Scrub runs in short read transactions
// beside the writer; ctx stops it.
func (s *Store) Scrub(ctx context.Context, keys Keys, report func(Damage)) (ScrubResult, error) {
	var res ScrubResult
	bad := func(d Damage) {
		res.Damaged++
		report(d)
	}
	for pos := uint64(0); ; {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := 0
		err := s.db.View(func(tx *bolt.Tx) error {
			seqs := tx.Bucket(bucketSeqs)
			c := tx.Bucket(bucketMessages).Cursor()
			for k, v := c.Seek(u64key(pos + 1)); k != nil && n < scrubChunk; k, v = c.Next() {
				n++
				pos = binary.BigEndian.Uint64(k)
				res.Messages++
				if d, ok := checkMessage(pos, v, seqs, keys, &res); !ok {
					bad(d)
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("scrub messages after %d: %w", pos, err)
		}
		if n < scrubChunk {
			break
		}
	}
	for id := uint64(0); ; {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := 0
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			for k, v := c.Seek(u64key(id + 1)); k != nil && n < scrubChunk; k, v = c.Next() {
				n++
				id = binary.BigEndian.Uint64(k)
				res.Events++
				var e twin.Event
				if err := json.Unmarshal(v, &e); err != nil {
					bad(Damage{Bucket: "events", Pos: id, What: "does not decode: " + err.Error()})
				} else if e.ID != id {
					bad(Damage{Bucket: "events", Pos: id, What: fmt.Sprintf("stored under id %d, says %d", id, e.ID)})
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("scrub events after %d: %w", id, err)
		}
		if n < scrubChunk {
			break
		}
	}
	err := s.ForEachTwin(func(a *twin.Asset, _ uint64) error {
		res.Twins++
		return nil
	})
	if err != nil {
		// ForEachTwin stops at the first twin that does not decode.
		bad(Damage{Bucket: "twins", What: err.Error()})
	}
	return res, nil
}

// checkMessage checks one message record; see Scrub.
func checkMessage(pos uint64, v []byte, seqs *bolt.Bucket, keys Keys, res *ScrubResult) (Damage, bool) {
	m, err := decodeMessageRecord(pos, v, nil)
	d := Damage{Bucket: "messages", Pos: pos, Gateway: m.Gateway, Seq: m.Seq}
	if err != nil {
		d.What = "record does not decode: " + err.Error()
		return d, false
	}
	env, err := wire.Decode(m.Raw)
	if err != nil {
		d.What = "envelope does not decode: " + err.Error()
		return d, false
	}
	if env.Gateway != m.Gateway || env.Seq != m.Seq || env.Kind != m.Kind || !env.Time.Equal(m.Time) {
		d.What = fmt.Sprintf("envelope says gateway %s seq %d kind %s time %s, the record %s %d %s %s", env.Gateway, env.Seq, env.Kind, env.Time, m.Gateway, m.Seq, m.Kind, m.Time)
		return d, false
	}
	sigOK := func() (ok, checked bool) {
		pub, known := keys(m.Gateway)
		if !known {
			return false, false
		}
		return env.Verify(pub) == nil, true
	}
	if m.Seq > 0 {
		var kb [88]byte
		if e := seqs.Get(seqKey(kb[:0], m.Gateway, env.Epoch, m.Seq)); len(e) == 40 {
			sum := sha256.Sum256(m.Raw)
			switch {
			case binary.BigEndian.Uint64(e) == pos && bytes.Equal(e[8:], sum[:]):
				return d, true // the bytes accepted then (their signature held)
			case binary.BigEndian.Uint64(e) != pos:
				d.What = fmt.Sprintf("the sequence index puts it at position %d", binary.BigEndian.Uint64(e))
			default:
				d.What = "its bytes are not the bytes stored (SHA-256 in the sequence index)"
				if ok, _ := sigOK(); ok {
					d.What = "its sequence-index entry is damaged (the message's signature holds)"
				}
			}
			return d, false
		}
	}
	switch ok, checked := sigOK(); {
	case !checked:
		res.Unchecked++
		return d, true
	case !ok:
		d.What = "its signature does not hold under the gateway's registered key (damaged, or signed by a key since replaced)"
		return d, false
	}
	return d, true
}

package anchor

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
)

// queue is the durable hand-off between the batcher and the submitter: a
// bbolt file holding the batches cut but not yet anchored, the evidence not
// yet recorded, and where the batcher and the evidence scan stand.
type queue struct {
	db *bolt.DB
}

var (
	bucketBatches  = []byte("batches")  // first event (8) -> core.AnchorInput JSON
	bucketEvidence = []byte("evidence") // event id (8) + kind -> evidenceItem JSON
	bucketAnchored = []byte("anchored") // last event (8) -> core.Anchor JSON, as the ledger answered
	bucketReceipts = []byte("receipts") // last event (8) -> ledger.Receipt JSON (Fabric: tx id, block)
	bucketMeta     = []byte("meta")
	keyQueuedTo    = []byte("queued_to") // last event id put in a batch
	keyMsgCursor   = []byte("msg_cursor")
	keySafePos     = []byte("safe_pos") // message position whose events are all batched
)

// evidenceItem is a critical twin event waiting to be recorded as hardware
// evidence with the gateway-signed envelope that caused it.
type evidenceItem struct {
	EventID  uint64            `json:"event_id"`
	Asset    string            `json:"asset"`
	Kind     core.EvidenceKind `json:"kind"`
	Gateway  string            `json:"gateway"`
	Seq      uint64            `json:"seq"`
	Revision uint64            `json:"revision"`
	Note     string            `json:"note,omitempty"`
	// Register, when set, makes the item an asset registration on the
	// ledger (the asset's first event) instead of evidence.
	Register *core.AssetRegistration `json:"register,omitempty"`
	// Status, when set, makes the item a move of the asset's ledger status
	// into or out of quarantine (a twin-service quarantine or release).
	Status *core.StatusChange `json:"status,omitempty"`
}

func openQueue(path string) (*queue, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5e9})
	if err != nil {
		return nil, fmt.Errorf("anchor queue: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBatches, bucketEvidence, bucketAnchored, bucketReceipts, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close() // the error being returned says more
		return nil, fmt.Errorf("anchor queue: %w", err)
	}
	return &queue{db: db}, nil
}

func key(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func num(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (q *queue) meta(k []byte) (n uint64) {
	_ = q.db.View(func(tx *bolt.Tx) error { // fails only when closed: then 0
		n = num(tx.Bucket(bucketMeta).Get(k))
		return nil
	})
	return n
}

// push stores a cut batch, its evidence and the new batcher position in one
// transaction.
func (q *queue) push(in core.AnchorInput, ev []evidenceItem, safePos uint64) error {
	return q.db.Update(func(tx *bolt.Tx) error {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketBatches).Put(key(in.FirstEvent), b); err != nil {
			return err
		}
		for _, e := range ev {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketEvidence).Put(evidenceKey(e), b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if safePos > 0 {
			if err := m.Put(keySafePos, key(safePos)); err != nil {
				return err
			}
		}
		return m.Put(keyQueuedTo, key(in.LastEvent))
	})
}

// advanceSafe moves the safe position up to pos (never down); it writes
// only when that moves it. Only the batcher (cut) writes the position.
func (q *queue) advanceSafe(pos uint64) error {
	if pos <= q.meta(keySafePos) {
		return nil
	}
	return q.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySafePos, key(pos)) })
}

// nextBatches is the oldest batches waiting, at most limit.
func (q *queue) nextBatches(limit int) (ins []core.AnchorInput, err error) {
	err = q.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBatches).Cursor()
		for k, v := c.First(); k != nil && len(ins) < limit; k, v = c.Next() {
			var in core.AnchorInput
			if err := json.Unmarshal(v, &in); err != nil {
				return err
			}
			ins = append(ins, in)
		}
		return nil
	})
	return ins, err
}

// anchored removes batches and records the ledger's anchors for them, and
// the receipt of the call when the backend gave one.
func (q *queue) anchored(ins []core.AnchorInput, as []core.Anchor, rc ledger.Receipt) error {
	return q.db.Update(func(tx *bolt.Tx) error {
		for i := range ins {
			if rc.TxID != "" {
				b, err := json.Marshal(rc)
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketReceipts).Put(key(as[i].LastEvent), b); err != nil {
					return err
				}
			}
			b, err := json.Marshal(as[i])
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketAnchored).Put(key(as[i].LastEvent), b); err != nil {
				return err
			}
			if err := tx.Bucket(bucketBatches).Delete(key(ins[i].FirstEvent)); err != nil {
				return err
			}
		}
		return nil
	})
}

// receipt is where the anchor ending at lastEvent was committed, if known.
func (q *queue) receipt(lastEvent uint64) (rc ledger.Receipt, ok bool) {
	_ = q.db.View(func(tx *bolt.Tx) error { // fails only when closed: then none
		if v := tx.Bucket(bucketReceipts).Get(key(lastEvent)); v != nil {
			ok = json.Unmarshal(v, &rc) == nil
		}
		return nil
	})
	return rc, ok
}

// lastAnchored is the last event covered by an anchor the ledger accepted,
// or 0.
func (q *queue) lastAnchored() (n uint64) {
	_ = q.db.View(func(tx *bolt.Tx) error { // fails only when closed: then 0
		k, _ := tx.Bucket(bucketAnchored).Cursor().Last()
		n = num(k)
		return nil
	})
	return n
}

// pending counts the batches and evidence items waiting.
func (q *queue) pending() (batches, evidence int) {
	_ = q.db.View(func(tx *bolt.Tx) error { // fails only when closed: then 0, 0
		batches = tx.Bucket(bucketBatches).Stats().KeyN
		evidence = tx.Bucket(bucketEvidence).Stats().KeyN
		return nil
	})
	return batches, evidence
}

// nextEvidence is the oldest evidence item waiting, and the message cursor;
// with no item waiting it moves the cursor up to the safe position first.
func (q *queue) nextEvidence() (it evidenceItem, ok bool, cursor uint64, err error) {
	err = q.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		cursor = num(m.Get(keyMsgCursor))
		k, v := tx.Bucket(bucketEvidence).Cursor().First()
		if k == nil {
			if safe := num(m.Get(keySafePos)); safe > cursor {
				cursor = safe
				return m.Put(keyMsgCursor, key(safe))
			}
			return nil
		}
		ok = true
		return json.Unmarshal(v, &it)
	})
	return it, ok, cursor, err
}

func evidenceKey(e evidenceItem) []byte {
	if e.Register != nil {
		return append(key(e.EventID), "register"...)
	}
	if e.Status != nil {
		return append(key(e.EventID), "status"...)
	}
	return append(key(e.EventID), e.Kind...)
}

// nextRegistrations is the run of asset registrations at the head of the
// evidence queue, at most limit.
func (q *queue) nextRegistrations(limit int) (its []evidenceItem, err error) {
	err = q.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvidence).Cursor()
		for k, v := c.First(); k != nil && len(its) < limit; k, v = c.Next() {
			var it evidenceItem
			if err := json.Unmarshal(v, &it); err != nil {
				return err
			}
			if it.Register == nil {
				break
			}
			its = append(its, it)
		}
		return nil
	})
	return its, err
}

// evidenceDone removes items and moves the message cursor.
func (q *queue) evidenceDone(cursor uint64, its ...evidenceItem) error {
	return q.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keyMsgCursor, key(cursor)); err != nil {
			return err
		}
		b := tx.Bucket(bucketEvidence)
		for _, it := range its {
			if err := b.Delete(evidenceKey(it)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (q *queue) close() error { return q.db.Close() }

// Recorded reads the anchors the ledger accepted, as it answered them, from
// an anchor queue file without changing it (`twin-service verify` on a
// Fabric data directory, whose blocks are on the peers). It fails while the
// service holds the file.
func Recorded(path string) ([]core.Anchor, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2e9})
	if err != nil {
		return nil, fmt.Errorf("anchor queue: %w", err)
	}
	defer func() { _ = db.Close() }() // read-only
	var out []core.Anchor
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAnchored)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var a core.Anchor
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("anchor queue %s: %w", path, err)
	}
	return out, nil
}

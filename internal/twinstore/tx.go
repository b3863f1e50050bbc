package twinstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/fastjson"
	"twinchain/internal/twin"
)

// Tx is one write transaction: the ingest's group commit. A Tx is used by
// one goroutine and only inside the function given to Update.
type Tx struct {
	tx    *bolt.Tx
	pos   uint64 // newest message position, including this transaction's
	ev    uint64 // newest event id, including this transaction's
	arena *arena // backing for keys and values: bbolt keeps them until commit
	// counted is what the written twins count as in Summarize, applied
	// once the transaction has committed.
	counted map[string]summaryKey
	b       struct{ msgs, events, assetEvents, twins, seqs, gwState, cursors, meta *bolt.Bucket }
}

// Update runs fn in one write transaction and commits it (fsynced unless
// Options.NoSync). If fn or the commit fails nothing is stored and the
// positions handed out inside fn are void. Updates from several goroutines
// run one after the other.
func (s *Store) Update(fn func(*Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var pos, ev uint64
	var counted map[string]summaryKey
	err := s.db.Update(func(btx *bolt.Tx) error {
		t := &Tx{tx: btx, pos: s.lastPos.Load(), ev: s.lastEv.Load(), arena: &s.arena}
		t.b.msgs = btx.Bucket(bucketMessages)
		t.b.msgs.FillPercent = 1 // append-only: keys always grow
		t.b.events = btx.Bucket(bucketEvents)
		t.b.events.FillPercent = 1
		t.b.assetEvents = btx.Bucket(bucketAssetEvents)
		t.b.twins = btx.Bucket(bucketTwins)
		t.b.seqs = btx.Bucket(bucketSeqs)
		t.b.gwState = btx.Bucket(bucketGwState)
		t.b.cursors = btx.Bucket(bucketCursors)
		t.b.meta = btx.Bucket(bucketMeta)
		if err := fn(t); err != nil {
			return err
		}
		pos, ev, counted = t.pos, t.ev, t.counted
		return nil
	})
	s.arena.reset() // bbolt holds none of it after the commit or rollback
	if err != nil {
		return fmt.Errorf("store commit: %w", err)
	}
	s.lastPos.Store(pos)
	s.lastEv.Store(ev)
	s.summary.apply(counted)
	return nil
}

// alloc returns n bytes that stay valid until the transaction ends.
func (t *Tx) alloc(n int) []byte { return t.arena.alloc(n) }

// arena is the backing of transactions' keys and values, reused by the
// next transaction once one has ended. New each time, the copies of the
// stored messages were 18% of the bytes twin-service allocated at 100,000
// GPUs (heap profile, stop 33), so many more GC cycles. Used only under
// Store.wmu.
type arena struct {
	cur  []byte   // the chunk being filled
	used [][]byte // this transaction's full chunks
	free [][]byte // chunks for the next ones
	kept int      // bytes of the chunks in free
}

const (
	arenaChunk = 64 << 10
	// arenaKeep bounds the chunks kept between transactions: a full batch
	// (ingest's max_batch, 4,096) of 10-sample telemetry messages (~3.2 KB
	// each once compressed) fits.
	arenaKeep = 16 << 20
)

func (a *arena) alloc(n int) []byte {
	if cap(a.cur)-len(a.cur) < n {
		if a.cur != nil {
			a.used = append(a.used, a.cur)
		}
		a.cur = nil
		if k := len(a.free) - 1; k >= 0 && cap(a.free[k]) >= n {
			a.cur, a.free = a.free[k], a.free[:k]
			a.kept -= cap(a.cur)
		} else {
			a.cur = make([]byte, 0, max(n, arenaChunk))
		}
	}
	l := len(a.cur)
	a.cur = a.cur[:l+n]
	return a.cur[l : l+n : l+n]
}

// shrink gives back the last n bytes alloc returned (what compression
// saved).
func (a *arena) shrink(n int) { a.cur = a.cur[:len(a.cur)-n] }

// reset makes every chunk free for the next transaction, keeping at most
// arenaKeep bytes of them.
func (a *arena) reset() {
	if a.cur != nil {
		a.used = append(a.used, a.cur)
		a.cur = nil
	}
	for i, c := range a.used {
		if a.kept+cap(c) <= arenaKeep {
			a.free = append(a.free, c[:0])
			a.kept += cap(c)
		}
		a.used[i] = nil
	}
	a.used = a.used[:0]
}

func (t *Tx) copyBytes(b []byte) []byte {
	out := t.alloc(len(b))
	copy(out, b)
	return out
}

// AppendMessage stores m at the next position and sets m.Pos.
func (t *Tx) AppendMessage(m *Message) error {
	if len(m.Gateway) > 255 || len(m.Kind) >= compressedRaw {
		return fmt.Errorf("append message: gateway or kind too long")
	}
	t.pos++
	m.Pos = t.pos
	buf := t.alloc(messageRecordMax(m))
	rec := appendMessageRecord(buf[:0], m)
	t.arena.shrink(len(buf) - len(rec)) // give back what compression saved
	if err := t.b.msgs.Put(t.copyBytes(u64key(t.pos)), rec); err != nil {
		return fmt.Errorf("append message %d: %w", t.pos, err)
	}
	return nil
}

// AppendEvent stores e at the next event id and sets e.ID.
func (t *Tx) AppendEvent(e *twin.Event) error {
	t.ev++
	e.ID = t.ev
	data, err := fastjson.Marshal(e)
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	key := t.copyBytes(u64key(e.ID))
	if err := t.b.events.Put(key, data); err != nil {
		return fmt.Errorf("append event %d: %w", e.ID, err)
	}
	ak := t.alloc(len(e.Asset) + 9)
	copy(ak, e.Asset)
	ak[len(e.Asset)] = 0
	binary.BigEndian.PutUint64(ak[len(e.Asset)+1:], e.ID)
	if err := t.b.assetEvents.Put(ak, nil); err != nil {
		return fmt.Errorf("append event %d: %w", e.ID, err)
	}
	return nil
}

// LastPos is the newest message position, including this transaction's.
func (t *Tx) LastPos() uint64 { return t.pos }

// PutTwin stores the current state of an asset. observedPos is the message
// position through which its observations (last seen, latest sample, sample
// count, GPS fix) are included; its tracked fields are always current.
func (t *Tx) PutTwin(a *twin.Asset, observedPos uint64) error {
	data, err := fastjson.Marshal(a)
	if err != nil {
		return fmt.Errorf("put twin %s: %w", a.ID, err)
	}
	v := t.alloc(8 + len(data))
	binary.BigEndian.PutUint64(v, observedPos)
	copy(v[8:], data)
	if err := t.b.twins.Put(t.copyBytes([]byte(a.ID)), v); err != nil {
		return fmt.Errorf("put twin %s: %w", a.ID, err)
	}
	if t.counted == nil {
		t.counted = map[string]summaryKey{}
	}
	t.counted[a.ID] = summaryKey{string(a.Kind), a.Site, string(a.Custody.Status), string(a.Health.State)}
	return nil
}

// seqKey is a sequence-index key: gateway 0x00 epoch(8) seq(8). Each
// gateway's epoch (wire.KeyEpoch of its key) is a stream of its own.
func seqKey(dst []byte, gw string, epoch, seq uint64) []byte {
	dst = seqPrefix(dst, gw, epoch)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// seqPrefix is the key prefix of one gateway epoch's entries.
func seqPrefix(dst []byte, gw string, epoch uint64) []byte {
	dst = append(dst, gw...)
	dst = append(dst, 0)
	return binary.BigEndian.AppendUint64(dst, epoch)
}

// SeqEntry returns where gateway gw's message seq of epoch is stored and the
// SHA-256 of its raw bytes.
func (t *Tx) SeqEntry(gw string, epoch, seq uint64) (pos uint64, sum [32]byte, ok bool) {
	var kb [88]byte
	v := t.b.seqs.Get(seqKey(kb[:0], gw, epoch, seq))
	if len(v) != 40 {
		return 0, sum, false
	}
	copy(sum[:], v[8:])
	return binary.BigEndian.Uint64(v), sum, true
}

// PutSeq records that gateway gw's message seq of epoch is stored at pos.
func (t *Tx) PutSeq(gw string, epoch, seq, pos uint64, sum *[32]byte) error {
	var kb [88]byte
	k := t.copyBytes(seqKey(kb[:0], gw, epoch, seq))
	v := t.alloc(40)
	binary.BigEndian.PutUint64(v, pos)
	copy(v[8:], sum[:])
	if err := t.b.seqs.Put(k, v); err != nil {
		return fmt.Errorf("put seq %s/%x/%d: %w", gw, epoch, seq, err)
	}
	return nil
}

// HighestSeq is the highest sequence number in the index for gateway gw's
// epoch, 0 when it has none.
func (t *Tx) HighestSeq(gw string, epoch uint64) uint64 { return highestSeq(t.b.seqs, gw, epoch) }

// SeqsAbove calls fn with every sequence number in the index for gateway
// gw's epoch above min, in increasing order.
func (t *Tx) SeqsAbove(gw string, epoch, min uint64, fn func(seq uint64)) {
	seqsAbove(t.b.seqs, gw, epoch, min, fn)
}

func highestSeq(b *bolt.Bucket, gw string, epoch uint64) uint64 {
	prefix := seqPrefix(nil, gw, epoch)
	top := seqKey(nil, gw, epoch, math.MaxUint64)
	c := b.Cursor()
	k, _ := c.Seek(top)
	switch {
	case k == nil:
		k, _ = c.Last()
	case !bytes.Equal(k, top):
		k, _ = c.Prev()
	}
	if k == nil || len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(prefix):])
}

func seqsAbove(b *bolt.Bucket, gw string, epoch, min uint64, fn func(seq uint64)) {
	if min == math.MaxUint64 {
		return
	}
	prefix := seqPrefix(nil, gw, epoch)
	c := b.Cursor()
	for k, _ := c.Seek(seqKey(nil, gw, epoch, min+1)); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Next() {
		fn(binary.BigEndian.Uint64(k[len(prefix):]))
	}
}

// SetCheckpoint records that every twin's observations up to message
// position pos are stored: after a crash, the ingest replays the
// observations of the messages after it.
func (t *Tx) SetCheckpoint(pos uint64) error {
	if err := t.b.meta.Put(keyCheckpoint, t.copyBytes(u64key(pos))); err != nil {
		return fmt.Errorf("set checkpoint: %w", err)
	}
	return nil
}

// GatewayState is what the ingest keeps about one gateway's stream.
type GatewayState struct {
	Gateway    string    `json:"gateway"`
	Epoch      uint64    `json:"epoch,omitempty"` // the epoch (wire.KeyEpoch) of the current stream
	Highest    uint64    `json:"highest_seq"`     // highest sequence number stored in the epoch
	Accepted   uint64    `json:"accepted"`        // messages stored
	Gaps       uint64    `json:"gaps"`            // jumps of the highest sequence number by more than one
	Skipped    uint64    `json:"skipped"`         // sequence numbers jumped over (some may arrive later)
	State      string    `json:"state,omitempty"` // wire.StateOnline, wire.StateOffline or empty
	LastWill   time.Time `json:"last_will"`       // reading time of the newest stored last will
	StatusTime time.Time `json:"status_time"`     // reading time of the status that set State
	// The agent's figures from the newest numbered status (at StatusTime).
	AgentVersion string    `json:"agent_version,omitempty"`
	QueueDepth   int       `json:"queue_depth,omitempty"` // readings waiting in the agent's queue
	Dropped      uint64    `json:"dropped,omitempty"`     // readings the agent ever dropped from a full queue
	DroppedSeqs  [2]uint64 `json:"dropped_seqs,omitzero"` // [first, last] of the newest dropped range
	LastSeen     time.Time `json:"last_seen"`             // newest reading time
	Recorded     time.Time `json:"recorded,omitzero"`     // when the newest message was stored
	// Pos is the message position through which the state is current; the
	// ingest re-derives the rest from the messages after it (0: current,
	// written before states were deferred).
	Pos uint64 `json:"pos,omitempty"`
}

// PutGatewayState stores a gateway's stream state.
func (t *Tx) PutGatewayState(st *GatewayState) error {
	data, err := fastjson.Marshal(st)
	if err != nil {
		return fmt.Errorf("put gateway state %s: %w", st.Gateway, err)
	}
	if err := t.b.gwState.Put(t.copyBytes([]byte(st.Gateway)), data); err != nil {
		return fmt.Errorf("put gateway state %s: %w", st.Gateway, err)
	}
	return nil
}

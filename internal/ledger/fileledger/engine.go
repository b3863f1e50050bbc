// Package fileledger is the embedded ledger: an append-only, hash-chained
// block store on disk, each block signed by the service's Ed25519 key, with
// the world state in bbolt. Every transaction runs the chaincode core's rules
// (twinchain/chaincode/core), the same rules the Fabric chaincode runs.
//
// # Files
//
//	blocks.dat  one Block as JSON per line, block 1 first (see Block)
//	state.db    bbolt: the world state, the offset of every block, and the head
//
// blocks.dat is the record; state.db is derived from it. A transaction is
// durable when its block line is written and synced; the state is then
// updated in one bbolt transaction. On Open, blocks past the head that
// state.db knows are replayed and a torn last line is cut off.
//
// # Transactions
//
// A write runs one core function against the committed state (reads never
// see the transaction's own writes, as on Fabric). A refused call writes
// nothing and returns the core's error; a call that changes nothing (the
// same anchor submitted twice) makes no block. Every other call makes one
// block holding the transaction (function, input, caller, id, time, result)
// and its write set.
//
// # Tamper evidence
//
// Verify reads every block and checks its hash, signature, write-set hash,
// height and link to the previous block, then checks that state.db holds
// exactly the state the blocks write. The first problem is returned as a
// *TamperError naming the block height and byte offset.
package fileledger

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
)

// ErrTampered is wrapped by every error that reports stored data that does
// not match its hashes or signatures (it is ledger.ErrTampered).
var ErrTampered = ledger.ErrTampered

// TamperError says where the ledger's files stopped matching.
type TamperError struct {
	Height uint64 // block height, 0 if not about one block
	Offset int64  // byte offset of the block's line in blocks.dat, -1 if none
	What   string
}

func (e *TamperError) Error() string {
	if e.Height == 0 {
		return "ledger: " + e.What
	}
	return fmt.Sprintf("block %d (blocks.dat offset %d): %s", e.Height, e.Offset, e.What)
}

// Unwrap makes errors.Is(err, ErrTampered) true.
func (e *TamperError) Unwrap() error { return ErrTampered }

var (
	bucketState  = []byte("state")
	bucketBlocks = []byte("blocks") // height (8 bytes) -> offset (8) + length (8)
	bucketMeta   = []byte("meta")
	bucketTxs    = []byte("txs")     // tx id -> height
	bucketWrote  = []byte("written") // state key -> height of the block that last wrote it
	// bucketPrivate holds private data (core.PrivateState): collection NUL
	// key -> value. It is not in blocks.dat, whose blocks carry only the
	// hash the core records, so a block (or a record bundle) shows no
	// private value; a block replayed at Open has no private data to put.
	bucketPrivate = []byte("private")
	keyHeight     = []byte("height")
	keyHead       = []byte("head")
	keyEnd        = []byte("end") // offset just past the last applied block
)

// Options configures Open.
type Options struct {
	Dir string
	Key ed25519.PrivateKey // the service key: signs every block
	Org string             // MSP-like organisation recorded for callers without one; default "twinchain"
	Now func() time.Time
	Log *slog.Logger
}

// Engine is the block store and world state. It runs functions given to
// Submit; Ledger (ledger.go) binds it to the core's rules.
type Engine struct {
	opts Options
	pub  ed25519.PublicKey

	mu     sync.Mutex // serialises writers
	db     *bolt.DB
	blocks *os.File
	height uint64
	head   []byte
	end    int64
	// damage, once set, refuses every write: the ledger runs read-only.
	damage  error
	unclean bool     // a failed write is still on the end of blocks.dat
	notes   []string // what Verify found that is not damage
}

// openEngine opens or creates the ledger files in opts.Dir.
func openEngine(opts Options) (*Engine, error) {
	if len(opts.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("file ledger: a service key is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Org == "" {
		opts.Org = "twinchain"
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("file ledger: %w", err)
	}
	e := &Engine{opts: opts, pub: opts.Key.Public().(ed25519.PublicKey), head: make([]byte, sha256.Size)}
	var err error
	e.db, err = bolt.Open(filepath.Join(opts.Dir, "state.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("file ledger state: %w", err)
	}
	e.blocks, err = os.OpenFile(filepath.Join(opts.Dir, "blocks.dat"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		_ = e.db.Close() // the error being returned says more
		return nil, fmt.Errorf("file ledger: %w", err)
	}
	if err := e.load(); err != nil {
		_ = e.Close() // the error being returned says more
		return nil, fmt.Errorf("file ledger %s: %w", opts.Dir, err)
	}
	return e, nil
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func be(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// load reads the head from state.db, replays blocks written after it and
// cuts a torn last line.
func (e *Engine) load() error {
	err := e.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketBlocks, bucketMeta, bucketTxs, bucketWrote, bucketPrivate} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		e.height = u64(m.Get(keyHeight))
		e.end = int64(u64(m.Get(keyEnd)))
		if h := m.Get(keyHead); h != nil {
			e.head = bytes.Clone(h)
		}
		return nil
	})
	if err != nil {
		return err
	}
	st, err := e.blocks.Stat()
	if err != nil {
		return err
	}
	if st.Size() < e.end {
		return &TamperError{Offset: e.end, What: fmt.Sprintf("blocks.dat has %d bytes but block %d ends at %d", st.Size(), e.height, e.end)}
	}
	// Replay complete lines past the known end.
	r := bufio.NewReaderSize(io.NewSectionReader(e.blocks, e.end, st.Size()-e.end), 1<<16)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				e.opts.Log.Warn("cutting torn block line", "offset", e.end, "bytes", len(line))
			}
			break
		}
		if err != nil {
			return err
		}
		var b Block
		if err := json.Unmarshal(line, &b); err != nil {
			return &TamperError{Height: e.height + 1, Offset: e.end, What: "unreadable block line: " + err.Error()}
		}
		body, err := e.checkNext(&b, e.end)
		if err != nil {
			return err
		}
		if err := e.apply(&body, &b, int64(len(line)), nil); err != nil {
			return err
		}
		e.opts.Log.Info("replayed block", "height", body.Height)
	}
	return e.blocks.Truncate(e.end)
}

// checkNext checks that b is a valid block following the current head.
func (e *Engine) checkNext(b *Block, off int64) (BlockBody, error) {
	body, err := CheckBlock(b, e.pub)
	if err != nil {
		return body, &TamperError{Height: e.height + 1, Offset: off, What: err.Error()}
	}
	if body.Height != e.height+1 {
		return body, &TamperError{Height: e.height + 1, Offset: off, What: fmt.Sprintf("block says height %d", body.Height)}
	}
	if !bytes.Equal(body.Prev, e.head) {
		return body, &TamperError{Height: body.Height, Offset: off, What: fmt.Sprintf("previous hash %s is not block %d's hash %x", body.Prev, e.height, e.head)}
	}
	return body, nil
}

// apply writes a block's write set and the new head into state.db.
func (e *Engine) apply(body *BlockBody, b *Block, n int64, priv map[string][]byte) error {
	end := e.end + n
	err := e.db.Update(func(tx *bolt.Tx) error {
		s, wrote, txs := tx.Bucket(bucketState), tx.Bucket(bucketWrote), tx.Bucket(bucketTxs)
		for k, v := range priv {
			if err := tx.Bucket(bucketPrivate).Put([]byte(k), v); err != nil {
				return err
			}
		}
		h := be(body.Height)
		for _, w := range body.Writes {
			var err error
			if w.Delete {
				err = s.Delete([]byte(w.Key))
			} else {
				err = s.Put([]byte(w.Key), w.Value)
			}
			if err == nil {
				err = wrote.Put([]byte(w.Key), h)
			}
			if err != nil {
				return err
			}
		}
		for _, t := range body.Txs {
			if err := txs.Put([]byte(t.ID), h); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketBlocks).Put(be(body.Height), append(be(uint64(e.end)), be(uint64(n))...)); err != nil {
			return err
		}
		m := tx.Bucket(bucketMeta)
		for k, v := range map[string][]byte{string(keyHeight): be(body.Height), string(keyHead): b.Hash, string(keyEnd): be(uint64(end))} {
			if err := m.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply block %d: %w", body.Height, err)
	}
	e.height, e.head, e.end = body.Height, bytes.Clone(b.Hash), end
	return nil
}

// txState is the State one transaction sees: committed state for reads,
// a write buffer for writes.
type txState struct {
	b      *bolt.Bucket
	p      *bolt.Bucket // private data
	writes map[string]Write
	priv   map[string][]byte // private writes
}

func privateKey(collection, key string) string { return collection + "\x00" + key }

// GetPrivate reads committed private data (core.PrivateState).
func (s *txState) GetPrivate(collection, key string) ([]byte, error) {
	if s.p == nil {
		return nil, nil
	}
	return bytes.Clone(s.p.Get([]byte(privateKey(collection, key)))), nil
}

// PutPrivate buffers a private write; it is stored beside the block, not in it.
func (s *txState) PutPrivate(collection, key string, value []byte) error {
	if s.writes == nil {
		return errors.New("write in a read-only query")
	}
	s.priv[privateKey(collection, key)] = bytes.Clone(value)
	return nil
}

func (s *txState) Get(key string) ([]byte, error) {
	v := s.b.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	return bytes.Clone(v), nil
}

func (s *txState) Put(key string, value []byte) error {
	if s.writes == nil {
		return errors.New("write in a read-only query")
	}
	s.writes[key] = Write{Key: key, Value: bytes.Clone(value)}
	return nil
}

func (s *txState) Delete(key string) error {
	if s.writes == nil {
		return errors.New("delete in a read-only query")
	}
	s.writes[key] = Write{Key: key, Delete: true}
	return nil
}

func (s *txState) Range(start, end string, fn func(key string, value []byte) bool) error {
	c := s.b.Cursor()
	for k, v := c.Seek([]byte(start)); k != nil; k, v = c.Next() {
		if end != "" && string(k) >= end {
			break
		}
		if !fn(string(k), v) {
			break
		}
	}
	return nil
}

// Query runs fn against the committed state, read-only.
func (e *Engine) Query(fn func(st *txState) error) error {
	return e.db.View(func(tx *bolt.Tx) error {
		return fn(&txState{b: tx.Bucket(bucketState), p: tx.Bucket(bucketPrivate)})
	})
}

// Receipt says where a transaction landed.
type Receipt struct {
	TxID   string
	Height uint64 // 0 when the call wrote nothing
}

// Submit runs fn as transaction fnName with input args for caller, at the
// engine's current time. If fn succeeds and writes, the writes are sealed
// into a new block, made durable and applied. fn's error is returned as is.
func (e *Engine) Submit(caller Caller, fnName string, args any, fn func(st *txState, txID string, at time.Time) (any, error)) (Receipt, error) {
	argJSON, err := json.Marshal(args)
	if err != nil {
		return Receipt{}, fmt.Errorf("%s: encode input: %w", fnName, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.unclean {
		if err := e.blocks.Truncate(e.end); err != nil {
			return Receipt{}, fmt.Errorf("%s: blocks.dat still ends with a failed write: %w", fnName, err)
		}
		e.unclean = false
	}
	if e.damage == nil {
		e.damage = e.checkTail()
	}
	if e.damage != nil {
		return Receipt{}, fmt.Errorf("%s: the ledger is read-only: %w", fnName, e.damage)
	}
	at := e.opts.Now().UTC()
	txID := txID(e.head, e.height+1, fnName, argJSON, caller, at)
	st := &txState{writes: map[string]Write{}, priv: map[string][]byte{}}
	var result any
	err = e.db.View(func(tx *bolt.Tx) error {
		st.b, st.p = tx.Bucket(bucketState), tx.Bucket(bucketPrivate)
		var err error
		result, err = fn(st, txID, at)
		return err
	})
	if err != nil {
		return Receipt{TxID: txID}, err
	}
	if len(st.writes) == 0 {
		return Receipt{TxID: txID}, nil
	}
	resJSON, err := json.Marshal(result)
	if err != nil {
		return Receipt{}, fmt.Errorf("%s: encode result: %w", fnName, err)
	}
	body := BlockBody{Height: e.height + 1, Prev: e.head, Time: at,
		Txs: []Tx{{ID: txID, Func: fnName, Args: argJSON, Caller: caller, Time: at, Status: "ok", Result: resJSON}}}
	for _, w := range st.writes {
		body.Writes = append(body.Writes, w)
	}
	b, err := sealBlock(e.opts.Key, &body)
	if err != nil {
		return Receipt{}, err
	}
	line, err := json.Marshal(&b)
	if err != nil {
		return Receipt{}, err
	}
	line = append(line, '\n')
	if _, err := e.blocks.WriteAt(line, e.end); err != nil {
		return Receipt{}, e.cutTail(fmt.Errorf("write block %d: %w", body.Height, err))
	}
	if err := e.blocks.Sync(); err != nil {
		return Receipt{}, e.cutTail(fmt.Errorf("sync block %d: %w", body.Height, err))
	}
	if err := e.apply(&body, &b, int64(len(line)), st.priv); err != nil {
		return Receipt{}, e.cutTail(err)
	}
	return Receipt{TxID: txID, Height: body.Height}, nil
}

// cutTail takes a block that failed (a full disk: its line, its sync or
// its state update) off the end of blocks.dat, so the file ends with the
// head again: the caller was told it failed and tries again. When even
// that fails, the next Submit tries again first. Called with e.mu held.
func (e *Engine) cutTail(err error) error {
	if terr := e.blocks.Truncate(e.end); terr != nil {
		e.unclean = true
		return fmt.Errorf("%w (and cutting it off blocks.dat failed: %v)", err, terr)
	}
	_ = e.blocks.Sync() // best effort: Open cuts an unapplied tail it cannot check anyway
	return err
}

// checkTail checks, before a block is added, that blocks.dat still ends
// where the engine left it and that its last block is still the head: a
// cheap guard against a file changed under the running service (Verify
// checks all of it). Called with e.mu held.
func (e *Engine) checkTail() error {
	st, err := e.blocks.Stat()
	if err != nil {
		return fmt.Errorf("blocks.dat: %w", err)
	}
	if st.Size() != e.end {
		return &TamperError{Height: e.height, Offset: e.end, What: fmt.Sprintf("blocks.dat has %d bytes, the %d blocks end at %d: it was changed under the service", st.Size(), e.height, e.end)}
	}
	if e.height == 0 {
		return nil
	}
	var off, n uint64
	err = e.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlocks).Get(be(e.height))
		if len(v) != 16 {
			return &TamperError{Height: e.height, Offset: -1, What: "state.db lost the block's offset"}
		}
		off, n = u64(v[:8]), u64(v[8:])
		return nil
	})
	if err != nil {
		return err
	}
	line := make([]byte, n)
	if _, err := e.blocks.ReadAt(line, int64(off)); err != nil {
		return &TamperError{Height: e.height, Offset: int64(off), What: "read the last block: " + err.Error()}
	}
	var b Block
	if err := json.Unmarshal(line, &b); err != nil || !bytes.Equal(BlockHash(b.Body), e.head) {
		return &TamperError{Height: e.height, Offset: int64(off), What: "the last block is not the one the service wrote"}
	}
	return nil
}

// SetDamaged makes the ledger read-only: every later write fails with err
// (which should name the damage and wrap ErrTampered).
func (e *Engine) SetDamaged(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.damage == nil {
		e.damage = err
	}
}

// Damage is what made the ledger read-only, or nil.
func (e *Engine) Damage() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.damage
}

// txID is a deterministic id for a transaction: hex SHA-256 of the head it
// builds on, its height, function, input, caller and time, cut to 16 bytes.
func txID(head []byte, height uint64, fn string, args []byte, c Caller, at time.Time) string {
	h := sha256.New()
	h.Write(head)
	h.Write([]byte(strconv.FormatUint(height, 10) + "\x00" + fn + "\x00"))
	h.Write(args)
	h.Write([]byte("\x00" + c.ID + "\x00" + c.MSP + "\x00" + c.Role + "\x00" + strconv.FormatInt(at.UnixNano(), 10)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Height is the number of blocks.
func (e *Engine) Height() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.height
}

// PublicKey is the key that signs blocks.
func (e *Engine) PublicKey() ed25519.PublicKey { return e.pub }

// Block reads the block at height.
func (e *Engine) Block(height uint64) (Block, error) {
	var off, n uint64
	err := e.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlocks).Get(be(height))
		if len(v) != 16 {
			return fmt.Errorf("block %d: %w", height, errNoBlock)
		}
		off, n = u64(v[:8]), u64(v[8:])
		return nil
	})
	if err != nil {
		return Block{}, err
	}
	line := make([]byte, n)
	if _, err := e.blocks.ReadAt(line, int64(off)); err != nil {
		return Block{}, fmt.Errorf("read block %d: %w", height, err)
	}
	var b Block
	if err := json.Unmarshal(line, &b); err != nil {
		return Block{}, &TamperError{Height: height, Offset: int64(off), What: "unreadable block line: " + err.Error()}
	}
	return b, nil
}

var errNoBlock = fmt.Errorf("no such block: %w", ledger.ErrNotFound)

// BlockOfTx reads the block holding transaction id.
func (e *Engine) BlockOfTx(id string) (Block, error) {
	return e.blockBy(bucketTxs, id, "transaction")
}

// BlockWriting reads the block that last wrote a world-state key: the
// block whose write set holds the key's current value.
func (e *Engine) BlockWriting(key string) (Block, error) {
	return e.blockBy(bucketWrote, key, "state key")
}

func (e *Engine) blockBy(bucket []byte, key, what string) (Block, error) {
	var h uint64
	if err := e.db.View(func(tx *bolt.Tx) error {
		h = u64(tx.Bucket(bucket).Get([]byte(key)))
		return nil
	}); err != nil {
		return Block{}, fmt.Errorf("%s %q: %w", what, key, err)
	}
	if h == 0 {
		return Block{}, fmt.Errorf("%s %q: %w", what, key, errNoBlock)
	}
	return e.Block(h)
}

// Verify checks every byte of blocks.dat and the state the blocks make;
// see the package doc. Blocks past the height state.db records (written,
// not yet applied: a crash between the two) must be valid blocks too; an
// unfinished last line (a crash while it was written) is not damage. Both
// are Notes, not errors: Open replays the one and cuts the other.
func (e *Engine) Verify() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notes = nil
	st, err := e.blocks.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	state := map[string][]byte{}
	txs := map[string]uint64{}
	wrote := map[string]uint64{}
	type span struct{ off, n int64 }
	index := map[uint64]span{}
	head := make([]byte, sha256.Size)
	var height uint64
	var off int64
	checkState := func() error { // the state at state.db's height
		if height != e.height || !bytes.Equal(head, e.head) {
			return &TamperError{Height: height, Offset: off, What: fmt.Sprintf("state.db says height %d with head %x; the blocks give %x at that height", e.height, e.head, head)}
		}
		if off != e.end {
			return &TamperError{Height: height, Offset: off, What: fmt.Sprintf("state.db says block %d ends at offset %d; it ends at %d", e.height, e.end, off)}
		}
		return e.checkStateDB(state, txs, wrote, func(h uint64) (int64, int64, bool) { s, ok := index[h]; return s.off, s.n, ok })
	}
	stateChecked := false
	if e.height == 0 {
		if err := checkState(); err != nil {
			return err
		}
		stateChecked = true
	}
	r := bufio.NewReaderSize(io.NewSectionReader(e.blocks, 0, size), 1<<16)
	for off < size {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			e.notes = append(e.notes, fmt.Sprintf("blocks.dat ends with an unfinished line of %d bytes after block %d (offset %d): a crash while it was written; the service cuts it at its next start", len(line), height, off))
			break
		}
		if err != nil {
			return err
		}
		var b Block
		if err := json.Unmarshal(line, &b); err != nil {
			return &TamperError{Height: height + 1, Offset: off, What: "unreadable block line: " + err.Error()}
		}
		body, err := CheckBlock(&b, e.pub)
		if err != nil {
			return &TamperError{Height: height + 1, Offset: off, What: err.Error()}
		}
		if body.Height != height+1 || !bytes.Equal(body.Prev, head) {
			return &TamperError{Height: height + 1, Offset: off, What: fmt.Sprintf("block says height %d after %x, want height %d after %x", body.Height, []byte(body.Prev), height+1, head)}
		}
		for _, w := range body.Writes {
			if w.Delete {
				delete(state, w.Key)
			} else {
				state[w.Key] = w.Value
			}
			wrote[w.Key] = body.Height
		}
		for _, t := range body.Txs {
			txs[t.ID] = body.Height
		}
		index[body.Height] = span{off, int64(len(line))}
		height, head = body.Height, b.Hash
		off += int64(len(line))
		if height == e.height {
			if err := checkState(); err != nil {
				return err
			}
			stateChecked = true
		}
	}
	if !stateChecked {
		return &TamperError{Height: height, Offset: off, What: fmt.Sprintf("blocks.dat holds %d blocks, state.db says %d", height, e.height)}
	}
	if height > e.height {
		e.notes = append(e.notes, fmt.Sprintf("blocks %d-%d are written but not yet in state.db (a crash between the two): valid, and replayed at the service's next start", e.height+1, height))
	}
	return nil
}

// checkStateDB compares state.db with the state, transaction index, write
// index and block offsets the blocks make.
func (e *Engine) checkStateDB(state map[string][]byte, txs, wrote map[string]uint64, span func(uint64) (off, n int64, ok bool)) error {
	return e.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketState, bucketBlocks, bucketTxs, bucketWrote} {
			if tx.Bucket(name) == nil {
				return &TamperError{What: fmt.Sprintf("state.db has no %s bucket", name)}
			}
		}
		n := 0
		err := tx.Bucket(bucketState).ForEach(func(k, v []byte) error {
			n++
			want, ok := state[string(k)]
			if !ok {
				return &TamperError{What: fmt.Sprintf("state.db key %q is written by no block", k)}
			}
			if !bytes.Equal(v, want) {
				return &TamperError{What: fmt.Sprintf("state.db key %q differs from what the blocks wrote", k)}
			}
			return nil
		})
		if err == nil && n != len(state) {
			err = &TamperError{What: fmt.Sprintf("state.db holds %d keys, the blocks write %d", n, len(state))}
		}
		if err != nil {
			return err
		}
		for _, idx := range []struct {
			bucket []byte
			want   map[string]uint64
			what   string
		}{{bucketTxs, txs, "transaction"}, {bucketWrote, wrote, "state key's last writer"}} {
			n := 0
			err := tx.Bucket(idx.bucket).ForEach(func(k, v []byte) error {
				n++
				if h, ok := idx.want[string(k)]; !ok || u64(v) != h {
					return &TamperError{What: fmt.Sprintf("state.db says %s %q is in block %d; the blocks say %d", idx.what, k, u64(v), h)}
				}
				return nil
			})
			if err == nil && n != len(idx.want) {
				err = &TamperError{What: fmt.Sprintf("state.db indexes %d of %d %ss", n, len(idx.want), idx.what)}
			}
			if err != nil {
				return err
			}
		}
		n = 0
		err = tx.Bucket(bucketBlocks).ForEach(func(k, v []byte) error {
			n++
			h := u64(k)
			off, size, ok := span(h)
			if !ok || len(v) != 16 || int64(u64(v[:8])) != off || int64(u64(v[8:])) != size {
				return &TamperError{Height: h, Offset: off, What: "state.db's offset of the block is not where it lies in blocks.dat"}
			}
			return nil
		})
		if err == nil && uint64(n) != e.height {
			err = &TamperError{What: fmt.Sprintf("state.db indexes %d blocks, it says the height is %d", n, e.height)}
		}
		if err == nil {
			err = checkPrivate(tx.Bucket(bucketPrivate), state)
		}
		return err
	})
}

// checkPrivate checks that every private value hashes to the hash its
// record on the ledger carries: a dataset's private metadata, kept under
// the dataset's own key, to dataset.private.hash (core.PutDatasetPrivate).
func checkPrivate(b *bolt.Bucket, state map[string][]byte) error {
	if b == nil {
		return nil // a state.db from before private data, opened read-only
	}
	return b.ForEach(func(k, v []byte) error {
		coll, key, _ := strings.Cut(string(k), "\x00")
		var d core.Dataset
		if raw, ok := state[key]; !ok || json.Unmarshal(raw, &d) != nil || d.Private == nil || d.Private.Collection != coll {
			return &TamperError{What: fmt.Sprintf("private data %s in %s belongs to no record on the ledger", key, coll)}
		}
		if sum := sha256.Sum256(v); hex.EncodeToString(sum[:]) != d.Private.Hash {
			return &TamperError{What: fmt.Sprintf("private data %s in %s does not hash to %s, the hash its record on the ledger carries", key, coll, d.Private.Hash)}
		}
		return nil
	})
}

// Notes lists what the last Verify found that is not damage: blocks
// written but not yet applied, an unfinished last line.
func (e *Engine) Notes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.notes
}

// Close closes the files.
func (e *Engine) Close() error {
	return errors.Join(e.blocks.Close(), e.db.Close())
}

// OpenVerifier opens a ledger directory to Verify it against the service's
// public key, without the private key. It does not write. With a nil pub
// it takes the key that signed the first block (see PublicKey): Verify
// then says whether the ledger is consistent, not whether that key is the
// service's.
func OpenVerifier(dir string, pub ed25519.PublicKey) (*Engine, error) {
	if _, err := os.Stat(filepath.Join(dir, "blocks.dat")); err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("file ledger state: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, "blocks.dat"))
	if err != nil {
		_ = db.Close() // the error being returned says more
		return nil, err
	}
	if pub == nil {
		line, err := bufio.NewReader(f).ReadBytes('\n')
		var b Block
		if err == nil {
			err = json.Unmarshal(line, &b)
		}
		if err == nil && len(b.Key) != ed25519.PublicKeySize {
			err = fmt.Errorf("key of %d bytes", len(b.Key))
		}
		switch {
		case len(line) == 0:
			pub = make(ed25519.PublicKey, ed25519.PublicKeySize) // no blocks: nothing is signed
		case err != nil:
			_ = db.Close() // the error being returned says more
			_ = f.Close()  // the error being returned says more
			return nil, &TamperError{Height: 1, Offset: 0, What: "block 1 names no key: " + err.Error()}
		default:
			pub = ed25519.PublicKey(b.Key)
		}
	}
	e := &Engine{opts: Options{Dir: dir, Now: time.Now, Log: slog.New(slog.DiscardHandler)}, pub: pub, db: db, blocks: f, head: make([]byte, sha256.Size)}
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return errors.New("state.db has no meta bucket")
		}
		e.height, e.end = u64(m.Get(keyHeight)), int64(u64(m.Get(keyEnd)))
		if h := m.Get(keyHead); h != nil {
			e.head = bytes.Clone(h)
		}
		return nil
	})
	if err != nil {
		_ = e.Close() // the error being returned says more
		return nil, err
	}
	return e, nil
}

// CheckAnchors checks every anchor of the default chain in the world state
// against the event tree: the anchor's tree root must be the tree's root at
// the anchor's tree size (rootAt), and its hash its own fields'. Anchors of
// named chains (other nodes' event trees, core.AnchorKey) are checked
// against their hashes only. It returns how many anchors it checked. A tree
// that lost committed events, or was rewritten, fails here even when it is
// consistent in itself.
func (e *Engine) CheckAnchors(rootAt func(size uint64) ([]byte, error)) (int, error) {
	n := 0
	err := e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketState).Cursor()
		named := []byte("anchorc/")
		for k, v := c.Seek(named); k != nil && bytes.HasPrefix(k, named); k, v = c.Next() {
			var a core.Anchor
			if err := json.Unmarshal(v, &a); err != nil {
				return &TamperError{What: fmt.Sprintf("state key %s: %v", k, err)}
			}
			if core.AnchorHash(&a) != a.Hash || string(k) != core.AnchorKey(a.Chain, a.Seq) {
				return &TamperError{What: fmt.Sprintf("anchor %d of chain %s: its hash or key does not match its fields", a.Seq, a.Chain)}
			}
			n++
		}
		prefix := []byte("anchor/")
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var a core.Anchor
			if err := json.Unmarshal(v, &a); err != nil {
				return &TamperError{What: fmt.Sprintf("state key %s: %v", k, err)}
			}
			if core.AnchorHash(&a) != a.Hash {
				return &TamperError{What: fmt.Sprintf("anchor %d: its hash does not match its fields", a.Seq)}
			}
			n++
			if a.TreeSize == 0 {
				continue
			}
			root, err := rootAt(a.TreeSize)
			if err != nil {
				return fmt.Errorf("anchor %d covers a tree of %d events: %w: %w", a.Seq, a.TreeSize, err, ErrTampered)
			}
			if hex.EncodeToString(root) != a.TreeRoot {
				return fmt.Errorf("anchor %d: the event tree's root at size %d is %x, the anchor says %s: %w", a.Seq, a.TreeSize, root, a.TreeRoot, ErrTampered)
			}
		}
		return nil
	})
	return n, err
}

// Package twinstore keeps twin-service's durable state in one bbolt file:
// the message log (raw envelopes by dense position), the event log (twin
// events by dense id), the current twins, each gateway's sequence state and
// sequence index, the gateway registry and the consumers' cursors.
//
// The ingest writes a whole group commit with Update, in one transaction;
// readers (the API, consumers of the logs) use the query methods, which run
// in read-only transactions and never wait for the writer. Every method is
// safe for concurrent use.
package twinstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound is returned when an asset, gateway or cursor does not exist.
var ErrNotFound = errors.New("not found")

var (
	bucketMessages    = []byte("messages")     // pos -> message record
	bucketEvents      = []byte("events")       // id -> twin.Event JSON
	bucketAssetEvents = []byte("asset_events") // asset 0x00 id -> nothing
	bucketTwins       = []byte("twins")        // asset id -> twin.Asset JSON
	bucketSeqs        = []byte("seqs")         // gateway 0x00 epoch(8) seq(8) -> pos, sha256
	bucketGwState     = []byte("gateway_state")
	bucketGateways    = []byte("gateways") // gateway id -> registry.Gateway JSON
	bucketCursors     = []byte("cursors")  // name -> position
	bucketMeta        = []byte("meta")     // checkpoint -> position; format -> storeFormat
)

var (
	keyCheckpoint = []byte("checkpoint")
	keyFormat     = []byte("format")
)

// storeFormat is the layout this code writes: 2 holds messages in the
// twinchain-envelope-v2 format (signed ts text, key epochs) and a sequence
// index keyed by gateway and epoch; 3 adds message records whose envelope
// is compressed (compressedRaw). A store of format 2 is read as it is and
// marked 3 when opened to write (a twinchain that reads only 2 then refuses
// it instead of misreading its records). A store with messages and no
// format is from before and is refused (ErrOldFormat): its messages would
// read as damaged and its sequence index as empty.
const (
	storeFormat     = "3"
	storeFormatPrev = "2"
)

// ErrOldFormat is returned by Open for a store written by an older
// twinchain.
var ErrOldFormat = errors.New("store written by an older twinchain (envelope v1, no sequence epochs); move the data directory away to start a new one")

var allBuckets = [][]byte{bucketMessages, bucketEvents, bucketAssetEvents, bucketTwins, bucketSeqs, bucketGwState, bucketGateways, bucketCursors, bucketMeta}

// Options tune the store. The zero value is safe: every commit is fsynced.
type Options struct {
	// NoSync skips fsync on commit. Only for tests and benchmarks that do not
	// test durability.
	NoSync bool
	// Timeout is how long Open waits for another process's file lock.
	Timeout time.Duration
	// ReadOnly opens an existing store to read (verify, scrub) beside
	// nothing that writes it.
	ReadOnly bool
}

// Store is the open bbolt file.
type Store struct {
	db *bolt.DB
	// wmu orders Updates: each one reads the newest position and event id
	// when it begins and publishes its own after its commit, so the next
	// one may begin only then (bbolt's own writer lock ends at the commit,
	// before the new positions are published).
	wmu     sync.Mutex
	lastPos atomic.Uint64 // newest message position
	lastEv  atomic.Uint64 // newest event id
	summary summary       // fleet counts, kept as twins are written (Summarize)
	obs     observations  // the twins' newest observations (Observe)
	arena   arena         // backing of the transactions' keys and values
}

// Open opens or creates the store at path (its directory is created).
func Open(path string, opts Options) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := CheckFile(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        timeout,
		NoSync:         opts.NoSync,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		ReadOnly:       opts.ReadOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db}
	update := db.Update
	if opts.ReadOnly {
		update = db.View
	}
	err = update(func(tx *bolt.Tx) error {
		if opts.ReadOnly {
			for _, b := range allBuckets {
				if tx.Bucket(b) == nil {
					return fmt.Errorf("no %s bucket: not a twinchain store", b)
				}
			}
		}
		for _, b := range allBuckets {
			if opts.ReadOnly {
				break
			}
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		s.lastPos.Store(lastKey(tx.Bucket(bucketMessages)))
		s.lastEv.Store(lastKey(tx.Bucket(bucketEvents)))
		switch f := tx.Bucket(bucketMeta).Get(keyFormat); {
		case string(f) == storeFormat:
		case string(f) == storeFormatPrev && !opts.ReadOnly:
			return tx.Bucket(bucketMeta).Put(keyFormat, []byte(storeFormat))
		case string(f) == storeFormatPrev:
		case f != nil:
			return fmt.Errorf("store format %q, this twinchain reads %q", f, storeFormat)
		case s.lastPos.Load() > 0:
			return ErrOldFormat
		case !opts.ReadOnly:
			return tx.Bucket(bucketMeta).Put(keyFormat, []byte(storeFormat))
		}
		return nil
	})
	if err != nil {
		_ = db.Close() // the error being returned says more
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// Checkpoint is the message position through which every twin's
// observations are stored (see Tx.SetCheckpoint).
func (s *Store) Checkpoint() (uint64, error) {
	var pos uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyCheckpoint); len(v) == 8 {
			pos = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	return pos, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// LastPos is the position of the newest stored message (0 when none).
func (s *Store) LastPos() uint64 { return s.lastPos.Load() }

// PageBytes is the bytes of pages the store's commits have written since
// it was opened: bbolt writes every page a commit changed to a new place,
// and its meta page (one page per commit, not counted here). A commit's
// fixed share, the pages from each changed bucket up to the root, is most
// of it when commits hold few messages (ingest.Config.CommitInterval).
func (s *Store) PageBytes() uint64 {
	st := s.db.Stats()
	return uint64(st.TxStats.GetPageAlloc())
}

// LastEventID is the id of the newest stored event (0 when none).
func (s *Store) LastEventID() uint64 { return s.lastEv.Load() }

func lastKey(b *bolt.Bucket) uint64 {
	k, _ := b.Cursor().Last()
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

func u64key(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// Cursor returns a consumer's persisted position (0 when it has none).
func (s *Store) Cursor(name string) (uint64, error) {
	var pos uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketCursors).Get([]byte(name)); len(v) == 8 {
			pos = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cursor %s: %w", name, err)
	}
	return pos, nil
}

// SetCursor persists a consumer's position.
func (s *Store) SetCursor(name string, pos uint64) error {
	if name == "" {
		return fmt.Errorf("set cursor: empty name")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCursors).Put([]byte(name), u64key(pos))
	})
	if err != nil {
		return fmt.Errorf("set cursor %s: %w", name, err)
	}
	return nil
}

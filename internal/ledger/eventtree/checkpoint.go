package eventtree

import (
	"bufio"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Hash is a hash that reads and writes as lowercase hex in JSON.
type Hash []byte

// MarshalJSON writes h as a hex string.
func (h Hash) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// UnmarshalJSON reads a hex string.
func (h *Hash) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("hash %q: %w", s, err)
	}
	*h = v
	return nil
}

// String is the hex form.
func (h Hash) String() string { return hex.EncodeToString(h) }

// CheckpointDomain opens the signed text of every checkpoint.
const CheckpointDomain = "twinchain-checkpoint-v1"

// Checkpoint is a signed statement of the tree's size and root at a time:
//
//	{"origin":"twinchain/events","size":1000,"root":"<hex>","time":"2026-11-25T16:00:00Z",
//	 "key":"<hex Ed25519 public key>","sig":"<hex Ed25519 signature>"}
//
// The signature is Ed25519 by the service key over the UTF-8 text
//
//	twinchain-checkpoint-v1\n<origin>\n<size in decimal>\n<root hex>\n<time as Unix nanoseconds in decimal>\n
//
// which a browser can rebuild and check with WebCrypto.
type Checkpoint struct {
	Origin string    `json:"origin"`
	Size   uint64    `json:"size"`
	Root   Hash      `json:"root"`
	Time   time.Time `json:"time"`
	Key    Hash      `json:"key"`
	Sig    Hash      `json:"sig"`
}

// SignedText is the text the signature covers.
func (c *Checkpoint) SignedText() []byte {
	b := []byte(CheckpointDomain + "\n" + c.Origin + "\n")
	b = strconv.AppendUint(b, c.Size, 10)
	b = append(b, '\n')
	b = append(b, hex.EncodeToString(c.Root)...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, c.Time.UnixNano(), 10)
	return append(b, '\n')
}

// SignCheckpoint makes a checkpoint for size and root, signed by key.
func SignCheckpoint(key ed25519.PrivateKey, origin string, size uint64, root []byte, at time.Time) Checkpoint {
	c := Checkpoint{Origin: origin, Size: size, Root: root, Time: at.UTC().Round(0)}
	c.Key = Hash(key.Public().(ed25519.PublicKey))
	c.Sig = ed25519.Sign(key, c.SignedText())
	return c
}

// ErrBadCheckpoint is returned for a checkpoint whose signature does not hold.
var ErrBadCheckpoint = errors.New("bad checkpoint signature")

// VerifyCheckpoint checks c's signature against pub (and that c names pub).
func VerifyCheckpoint(c *Checkpoint, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize || string(c.Key) != string(pub) {
		return fmt.Errorf("checkpoint of size %d is signed by key %s, not %x: %w", c.Size, c.Key, []byte(pub), ErrBadCheckpoint)
	}
	if len(c.Root) != HashSize {
		return fmt.Errorf("checkpoint of size %d: root has %d bytes: %w", c.Size, len(c.Root), ErrBadCheckpoint)
	}
	if len(c.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, c.SignedText(), c.Sig) {
		return fmt.Errorf("checkpoint of size %d: %w", c.Size, ErrBadCheckpoint)
	}
	return nil
}

// AddCheckpoint stores a signed checkpoint of this tree after checking that
// its root is the tree's root at its size. It syncs the tree first, so a
// stored checkpoint never covers leaves that could be lost.
func (t *Tree) AddCheckpoint(c Checkpoint) error {
	if t.ro {
		return errReadOnly
	}
	root, err := t.RootAt(c.Size)
	if err != nil {
		return err
	}
	if string(root) != string(c.Root) {
		if now, size, err := t.Root(); err == nil && size == c.Size && string(now) == string(c.Root) {
			// The tree as appended gives the checkpoint's root but the
			// stored nodes do not: they were changed on disk.
			return fmt.Errorf("stored nodes give root %x at size %d, the leaves appended give %s: %w", root, c.Size, c.Root, ErrTampered)
		}
		return fmt.Errorf("checkpoint root %s is not the tree's root %x at size %d", c.Root, root, c.Size)
	}
	if err := t.Sync(); err != nil {
		return err
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	t.cpMu.Lock()
	defer t.cpMu.Unlock()
	st, err := t.cps.Stat()
	if err != nil {
		return fmt.Errorf("store checkpoint: %w", err)
	}
	_, err = t.cps.Write(append(b, '\n'))
	if err == nil {
		err = t.cps.Sync()
	}
	if err != nil {
		// A full disk: take the line (or its part) off again, so the
		// next checkpoint does not follow half a line.
		_ = t.cps.Truncate(st.Size()) // best effort: Open cuts an unfinished last line too
		return fmt.Errorf("store checkpoint: %w", err)
	}
	return nil
}

// Checkpoints returns every stored checkpoint, oldest first. A last line
// cut short by a crash (no newline) is not a checkpoint: Open removes it.
func (t *Tree) Checkpoints() ([]Checkpoint, error) {
	t.cpMu.Lock()
	defer t.cpMu.Unlock()
	cps, _, err := t.readCheckpoints()
	return cps, err
}

// readCheckpoints parses checkpoints.jsonl; torn is the length of an
// unfinished last line. Called with t.cpMu held.
func (t *Tree) readCheckpoints() (cps []Checkpoint, torn int, err error) {
	if _, err := t.cps.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	r := bufio.NewReaderSize(t.cps, 64<<10)
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if err == io.EOF {
			return cps, len(b), nil
		}
		if err != nil {
			return cps, 0, err
		}
		var c Checkpoint
		if err := json.Unmarshal(b, &c); err != nil {
			return cps, 0, &TamperError{Leaf: 0, Offset: -1, File: "checkpoints.jsonl", What: fmt.Sprintf("checkpoints.jsonl line %d: %v", line, err)}
		}
		cps = append(cps, c)
	}
}

// loadCheckpoints reads the checkpoints at Open and cuts an unfinished
// last line (a crash while one was written; the tree it names was synced
// before, so nothing else is lost).
func (t *Tree) loadCheckpoints() ([]Checkpoint, error) {
	t.cpMu.Lock()
	defer t.cpMu.Unlock()
	cps, torn, err := t.readCheckpoints()
	if err != nil || torn == 0 {
		return cps, err
	}
	t.note("cut an unfinished last line of checkpoints.jsonl (%d bytes): a crash while it was written", torn)
	if t.ro {
		return cps, nil
	}
	st, err := t.cps.Stat()
	if err != nil {
		return cps, err
	}
	return cps, t.cps.Truncate(st.Size() - int64(torn))
}

// LatestCheckpoint is the newest stored checkpoint; ok is false when there is none.
func (t *Tree) LatestCheckpoint() (c Checkpoint, ok bool, err error) {
	cps, err := t.Checkpoints()
	if err != nil || len(cps) == 0 {
		return c, false, err
	}
	return cps[len(cps)-1], true, nil
}

// VerifyAll runs Verify and then checks every stored checkpoint: its
// signature against pub and its root against the recomputed tree.
func (t *Tree) VerifyAll(pub ed25519.PublicKey) error {
	if err := t.Verify(); err != nil {
		return err
	}
	cps, err := t.Checkpoints()
	if err != nil {
		return err
	}
	for i := range cps {
		c := &cps[i]
		if err := VerifyCheckpoint(c, pub); err != nil {
			return fmt.Errorf("checkpoints.jsonl line %d: %w: %w", i+1, err, ErrTampered)
		}
		root, err := t.RootAt(c.Size)
		if err != nil {
			return fmt.Errorf("checkpoints.jsonl line %d: %w: %w", i+1, err, ErrTampered)
		}
		if string(root) != string(c.Root) {
			return fmt.Errorf("checkpoints.jsonl line %d: root at size %d is %x, checkpoint says %s: %w", i+1, c.Size, root, c.Root, ErrTampered)
		}
	}
	return nil
}

// ParseHex reads a hex hash.
func ParseHex(s string) (Hash, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("hash %q: %w", s, err)
	}
	return b, nil
}

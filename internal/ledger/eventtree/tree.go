// Package eventtree is an append-only RFC 6962 Merkle tree on disk over every
// twin event, with inclusion and consistency proofs and signed checkpoints.
//
// # Leaves
//
// Leaf i (0-based) is the canonical JSON of the twin event with id i+1: the
// bytes encoding/json writes for a twin.Event (fields in struct order, times
// in RFC 3339 with nanoseconds). The tree keeps those exact bytes, so a proof
// never depends on re-encoding an event. Hashes are RFC 6962 with SHA-256:
//
//	leaf hash = SHA-256(0x00 || leaf bytes)
//	node hash = SHA-256(0x01 || left || right)
//
// and the root of an empty tree is SHA-256 of nothing.
//
// # Proofs
//
// Inclusion and consistency proofs are the RFC 6962 / RFC 9162 audit paths
// (lists of 32-byte hashes, leaf side first) that
// github.com/transparency-dev/merkle/proof.VerifyInclusion and
// VerifyConsistency check. Proofs are built from stored nodes only: every
// complete (perfect) subtree root is written once, when it is completed.
//
// # Files
//
// A tree lives in one directory:
//
//	leaves.dat    the leaf bytes, back to back
//	leaves.idx    8 bytes big-endian per leaf: the end offset of the leaf in leaves.dat
//	level-NN.dat  32 bytes per completed node of level NN (00 = leaf hashes)
//	checkpoints.jsonl  every signed checkpoint, one JSON object a line (see Checkpoint)
//
// leaves.idx is written last, so it is the commit point: on Open, anything
// past the last complete index entry is cut off, and missing node files are
// rebuilt from the leaves. Verify recomputes every hash from the leaf bytes
// and reports the first leaf or node that differs, with its position.
//
// A Tree is safe for concurrent use: one writer, many readers.
package eventtree

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// HashSize is the size of every hash in the tree.
const HashSize = sha256.Size

const maxLevels = 64

// ErrTampered is wrapped by every error that reports stored data that does
// not match its hashes or signatures.
var ErrTampered = errors.New("tampered")

// TamperError says where stored data stopped matching.
type TamperError struct {
	Leaf   uint64 // first leaf index covered by the bad data
	Level  uint   // 0 for a leaf, higher for an inner node
	Offset int64  // byte offset of the leaf in leaves.dat, or of the node in its level file; -1 if none
	What   string
}

func (e *TamperError) Error() string {
	if e.Level == 0 {
		return fmt.Sprintf("leaf %d (event %d, leaves.dat offset %d): %s", e.Leaf, e.Leaf+1, e.Offset, e.What)
	}
	return fmt.Sprintf("node level %d covering leaf %d (offset %d): %s", e.Level, e.Leaf, e.Offset, e.What)
}

// Unwrap makes errors.Is(err, ErrTampered) true.
func (e *TamperError) Unwrap() error { return ErrTampered }

// Tree is an append-only Merkle tree stored in a directory.
type Tree struct {
	dir string

	mu      sync.RWMutex
	size    uint64
	dataLen int64 // bytes of leaves.dat in use
	data    *os.File
	idx     *os.File
	levels  []*os.File // levels[l] holds completed nodes of level l
	rng     *compact.Range
	fact    *compact.RangeFactory

	cpMu sync.Mutex
	cps  *os.File
}

var hasher = rfc6962.DefaultHasher

// LeafHash is the RFC 6962 hash of a leaf's bytes.
func LeafHash(leaf []byte) []byte { return hasher.HashLeaf(leaf) }

// HashChildren is the RFC 6962 hash of an inner node.
func HashChildren(l, r []byte) []byte { return hasher.HashChildren(l, r) }

// EmptyRoot is the root of a tree with no leaves.
func EmptyRoot() []byte { return hasher.EmptyRoot() }

// Open opens or creates the tree in dir.
func Open(dir string) (*Tree, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("event tree: %w", err)
	}
	t := &Tree{dir: dir, fact: &compact.RangeFactory{Hash: hasher.HashChildren}}
	var err error
	if t.data, err = openFile(filepath.Join(dir, "leaves.dat")); err != nil {
		return nil, err
	}
	if t.idx, err = openFile(filepath.Join(dir, "leaves.idx")); err != nil {
		_ = t.Close() // the error being returned says more
		return nil, err
	}
	if t.cps, err = os.OpenFile(filepath.Join(dir, "checkpoints.jsonl"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		_ = t.Close() // the error being returned says more
		return nil, fmt.Errorf("event tree: %w", err)
	}
	if err := t.load(); err != nil {
		_ = t.Close() // the error being returned says more
		return nil, fmt.Errorf("event tree %s: %w", dir, err)
	}
	return t, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("event tree: %w", err)
	}
	return f, nil
}

func (t *Tree) level(l uint) (*os.File, error) {
	for uint(len(t.levels)) <= l {
		f, err := openFile(filepath.Join(t.dir, fmt.Sprintf("level-%02d.dat", len(t.levels))))
		if err != nil {
			return nil, err
		}
		t.levels = append(t.levels, f)
	}
	return t.levels[l], nil
}

// load finds the committed size, cuts torn writes off and rebuilds node
// files that fall short.
func (t *Tree) load() error {
	st, err := t.idx.Stat()
	if err != nil {
		return err
	}
	t.size = uint64(st.Size() / 8)
	if err := t.idx.Truncate(int64(t.size) * 8); err != nil {
		return err
	}
	if t.size > 0 {
		if t.dataLen, err = t.leafEnd(t.size - 1); err != nil {
			return err
		}
	}
	dst, err := t.data.Stat()
	if err != nil {
		return err
	}
	if dst.Size() < t.dataLen {
		return fmt.Errorf("leaves.dat has %d bytes, index says %d: %w", dst.Size(), t.dataLen, ErrTampered)
	}
	if err := t.data.Truncate(t.dataLen); err != nil {
		return err
	}
	short := false
	for l := uint(0); l < maxLevels; l++ {
		want := int64(t.size>>l) * HashSize
		path := filepath.Join(t.dir, fmt.Sprintf("level-%02d.dat", l))
		st, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) && want == 0 {
			break
		}
		f, err := t.level(l)
		if err != nil {
			return err
		}
		if st == nil || st.Size() < want {
			short = true
		} else if err := f.Truncate(want); err != nil {
			return err
		}
	}
	if short {
		return t.rebuild()
	}
	return t.loadRange()
}

func (t *Tree) loadRange() error {
	ids := compact.RangeNodes(0, t.size, nil)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := t.node(id)
		if err != nil {
			return err
		}
		hashes[i] = h
	}
	r, err := t.fact.NewRange(0, t.size, hashes)
	if err != nil {
		return err
	}
	t.rng = r
	return nil
}

// rebuild recomputes every node file from the leaves.
func (t *Tree) rebuild() error {
	for _, f := range t.levels {
		if err := f.Truncate(0); err != nil {
			return err
		}
	}
	size := t.size
	t.size, t.rng = 0, t.fact.NewEmptyRange(0)
	w := t.newNodeWriter()
	var start int64
	for i := uint64(0); i < size; i++ {
		end, err := t.leafEnd(i)
		if err != nil {
			return err
		}
		leaf := make([]byte, end-start)
		if _, err := t.data.ReadAt(leaf, start); err != nil {
			return err
		}
		if err := t.rng.Append(LeafHash(leaf), w.visit); err != nil {
			return err
		}
		start = end
	}
	t.size = size
	return w.flush(t)
}

func (t *Tree) leafEnd(i uint64) (int64, error) {
	var b [8]byte
	if _, err := t.idx.ReadAt(b[:], int64(i)*8); err != nil {
		return 0, fmt.Errorf("read index of leaf %d: %w", i, err)
	}
	return int64(binary.BigEndian.Uint64(b[:])), nil
}

func (t *Tree) leafSpan(i uint64) (start, end int64, err error) {
	if end, err = t.leafEnd(i); err != nil {
		return 0, 0, err
	}
	if i > 0 {
		if start, err = t.leafEnd(i - 1); err != nil {
			return 0, 0, err
		}
	}
	if start > end || end > t.dataLen {
		return 0, 0, &TamperError{Leaf: i, Offset: int64(i) * 8, What: fmt.Sprintf("leaves.idx entry [%d,%d) is out of order or past the data", start, end)}
	}
	return start, end, nil
}

func (t *Tree) node(id compact.NodeID) ([]byte, error) {
	if id.Level >= uint(len(t.levels)) {
		return nil, fmt.Errorf("node %d/%d not stored", id.Level, id.Index)
	}
	h := make([]byte, HashSize)
	if _, err := t.levels[id.Level].ReadAt(h, int64(id.Index)*HashSize); err != nil {
		return nil, fmt.Errorf("read node %d/%d: %w", id.Level, id.Index, err)
	}
	return h, nil
}

// nodeWriter collects the nodes one Append completes, one buffer per level.
type nodeWriter struct {
	bufs  [maxLevels][]byte
	first [maxLevels]uint64
}

func (t *Tree) newNodeWriter() *nodeWriter { return &nodeWriter{} }

func (w *nodeWriter) visit(id compact.NodeID, hash []byte) {
	if len(w.bufs[id.Level]) == 0 {
		w.first[id.Level] = id.Index
	}
	w.bufs[id.Level] = append(w.bufs[id.Level], hash...)
}

func (w *nodeWriter) flush(t *Tree) error {
	for l := range w.bufs {
		if len(w.bufs[l]) == 0 {
			continue
		}
		f, err := t.level(uint(l))
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(w.bufs[l], int64(w.first[l])*HashSize); err != nil {
			return fmt.Errorf("write level %d: %w", l, err)
		}
		w.bufs[l] = w.bufs[l][:0]
	}
	return nil
}

// Append adds leaves at the end of the tree and returns the new size. The
// leaves are durable after Sync.
func (t *Tree) Append(leaves ...[]byte) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(leaves) == 0 {
		return t.size, nil
	}
	var data []byte
	idx := make([]byte, 0, 8*len(leaves))
	w := t.newNodeWriter()
	// Work on a copy of the range so a failed write leaves t unchanged.
	rng, err := t.fact.NewRange(0, t.size, append([][]byte(nil), t.rng.Hashes()...))
	if err != nil {
		return t.size, err
	}
	end := t.dataLen
	for _, l := range leaves {
		data = append(data, l...)
		end += int64(len(l))
		idx = binary.BigEndian.AppendUint64(idx, uint64(end))
		if err := rng.Append(LeafHash(l), w.visit); err != nil {
			return t.size, err
		}
	}
	if _, err := t.data.WriteAt(data, t.dataLen); err != nil {
		return t.size, fmt.Errorf("write leaves: %w", err)
	}
	if err := w.flush(t); err != nil {
		return t.size, err
	}
	if _, err := t.idx.WriteAt(idx, int64(t.size)*8); err != nil {
		return t.size, fmt.Errorf("write leaf index: %w", err)
	}
	t.size += uint64(len(leaves))
	t.dataLen = end
	t.rng = rng
	return t.size, nil
}

// Sync makes everything appended so far durable.
func (t *Tree) Sync() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, f := range append([]*os.File{t.data}, t.levels...) {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return t.idx.Sync()
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.size
}

// Root is the root hash of the tree as it is now, and its size.
func (t *Tree) Root() ([]byte, uint64, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.size == 0 {
		return EmptyRoot(), 0, nil
	}
	r, err := t.rng.GetRootHash(nil)
	return r, t.size, err
}

// RootAt is the root hash the tree had when it held size leaves.
func (t *Tree) RootAt(size uint64) ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.rootAt(size)
}

func (t *Tree) rootAt(size uint64) ([]byte, error) {
	if size > t.size {
		return nil, fmt.Errorf("size %d is past the tree's %d leaves", size, t.size)
	}
	if size == 0 {
		return EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes, err := t.nodes(ids)
	if err != nil {
		return nil, err
	}
	r, err := t.fact.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

func (t *Tree) nodes(ids []compact.NodeID) ([][]byte, error) {
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := t.node(id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return hashes, nil
}

// RootOfRange is the RFC 6962 root of the leaves [begin, end): the Merkle
// root of one anchored batch. It is the root of a tree holding only those
// leaves, computed from the stored leaf hashes.
func (t *Tree) RootOfRange(begin, end uint64) ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if begin >= end || end > t.size {
		return nil, fmt.Errorf("range [%d,%d) is empty or past the tree's %d leaves", begin, end, t.size)
	}
	r := t.fact.NewEmptyRange(0)
	for i := begin; i < end; i++ {
		h, err := t.node(compact.NewNodeID(0, i))
		if err != nil {
			return nil, err
		}
		if err := r.Append(h, nil); err != nil {
			return nil, err
		}
	}
	return r.GetRootHash(nil)
}

// Leaf returns the bytes of leaf i.
func (t *Tree) Leaf(i uint64) ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if i >= t.size {
		return nil, fmt.Errorf("leaf %d is past the tree's %d leaves", i, t.size)
	}
	start, end, err := t.leafSpan(i)
	if err != nil {
		return nil, err
	}
	b := make([]byte, end-start)
	if _, err := t.data.ReadAt(b, start); err != nil {
		return nil, fmt.Errorf("read leaf %d: %w", i, err)
	}
	return b, nil
}

// InclusionProof proves leaf index is in the tree of the given size.
func (t *Tree) InclusionProof(index, size uint64) ([][]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if size > t.size {
		return nil, fmt.Errorf("size %d is past the tree's %d leaves", size, t.size)
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return t.rehash(n)
}

// ConsistencyProof proves the tree of size1 is a prefix of the tree of size2.
func (t *Tree) ConsistencyProof(size1, size2 uint64) ([][]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if size2 > t.size {
		return nil, fmt.Errorf("size %d is past the tree's %d leaves", size2, t.size)
	}
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return t.rehash(n)
}

func (t *Tree) rehash(n proof.Nodes) ([][]byte, error) {
	hashes, err := t.nodes(n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hashes, hasher.HashChildren)
}

// Verify recomputes every hash from the leaf bytes and compares it with the
// stored nodes. The first mismatch is returned as a *TamperError.
func (t *Tree) Verify() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	rng := t.fact.NewEmptyRange(0)
	var bad *TamperError
	var readErr error
	check := func(id compact.NodeID, h []byte) {
		if bad != nil || readErr != nil {
			return
		}
		stored, err := t.node(id)
		if err != nil {
			readErr = err
			return
		}
		if !bytes.Equal(stored, h) {
			first, _ := id.Coverage()
			off := int64(id.Index) * HashSize
			what := fmt.Sprintf("stored hash in level-%02d.dat differs from the hash of the data below it", id.Level)
			if id.Level == 0 {
				off, _, _ = t.leafSpan(id.Index)
				what = "leaf bytes do not match the stored leaf hash"
			}
			bad = &TamperError{Leaf: first, Level: id.Level, Offset: off, What: what}
		}
	}
	r := io.NewSectionReader(t.data, 0, t.dataLen)
	var pos int64
	for i := uint64(0); i < t.size; i++ {
		start, end, err := t.leafSpan(i)
		if err != nil {
			return err
		}
		if start != pos {
			return &TamperError{Leaf: i, Offset: int64(i) * 8, What: "leaves.idx entries do not join up"}
		}
		leaf := make([]byte, end-start)
		if _, err := io.ReadFull(r, leaf); err != nil {
			return fmt.Errorf("read leaf %d: %w", i, err)
		}
		pos = end
		if err := rng.Append(LeafHash(leaf), check); err != nil {
			return err
		}
		if bad != nil {
			return bad
		}
		if readErr != nil {
			return readErr
		}
	}
	return nil
}

// Close closes the tree's files.
func (t *Tree) Close() error {
	var errs []error
	for _, f := range append([]*os.File{t.data, t.idx, t.cps}, t.levels...) {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

package twinstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// ErrDamaged is wrapped by the errors that report a store file bbolt
// cannot safely open: cut short, or with no valid header.
var ErrDamaged = errors.New("store file damaged")

// bbolt's on-disk header (its meta page): a 16-byte page header, then
// magic, version, page size, flags (4 bytes each), the root bucket (8+8),
// the freelist page, the high-water page id, the transaction id and an
// FNV-64a checksum of everything from the magic up to it (8 each).
const (
	boltMagic    = 0xED0CDAED
	boltVersion  = 2
	metaOff      = 16
	metaSumLen   = 56 // bytes the checksum covers
	metaLen      = metaSumLen + 8
	minPageSize  = 512
	maxPageSize  = 1 << 20
	pageSizeOff  = metaOff + 8
	highWaterOff = metaOff + 40
	txidOff      = metaOff + 48
)

type boltMeta struct {
	pageSize  int64
	root      uint64 // the root bucket's page
	highWater uint64 // pages in use: the file must hold at least this many
	txid      uint64
}

func readMeta(f *os.File, off int64) (boltMeta, bool) {
	var b [metaOff + metaLen]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	le := binary.NativeEndian // bbolt writes its header in the machine's byte order
	if le.Uint32(b[metaOff:]) != boltMagic || le.Uint32(b[metaOff+4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(b[metaOff : metaOff+metaSumLen])
	if h.Sum64() != le.Uint64(b[metaOff+metaSumLen:]) {
		return boltMeta{}, false
	}
	m := boltMeta{pageSize: int64(le.Uint32(b[pageSizeOff:])), root: le.Uint64(b[rootOff:]), highWater: le.Uint64(b[highWaterOff:]), txid: le.Uint64(b[txidOff:])}
	return m, m.pageSize >= minPageSize && m.pageSize <= maxPageSize
}

// CheckFile looks at a bbolt file before bbolt maps it into memory: a file
// cut short (a copy that stopped, a full disk during a restore) makes
// bbolt read past its end and the process die of SIGBUS or a panic, a
// file with no valid header is not a store at all, and a damaged page in
// the middle makes bbolt panic while it walks the pages at open. CheckFile
// walks them first (every page is read once). It returns nil for a
// missing or empty file (bbolt makes a new one) and otherwise an error
// naming the file, what is wrong and what to do.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	var best boltMeta
	found := false
	consider := func(m boltMeta, ok bool) {
		if ok && (!found || m.txid > best.txid) {
			best, found = m, true
		}
	}
	m0, ok0 := readMeta(f, 0)
	consider(m0, ok0)
	seen := map[int64]bool{}
	for _, ps := range []int64{m0.pageSize, int64(os.Getpagesize()), 4096, 16384, 65536} {
		if ps >= minPageSize && !seen[ps] {
			seen[ps] = true
			consider(readMeta(f, ps))
		}
	}
	const todo = "restore it from a backup, or move it aside to start with an empty one"
	if !found {
		var head [4]byte
		_, err := f.ReadAt(head[:], metaOff)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return fmt.Errorf("%s (%d bytes) has no valid bbolt header: it is damaged or not a twinchain store; %s: %w", path, size, todo, ErrDamaged)
	}
	if need := int64(best.highWater) * best.pageSize; size < need {
		return fmt.Errorf("%s is cut short: it has %d bytes, its header says %d are in use (%d pages of %d); %s: %w", path, size, need, best.highWater, best.pageSize, todo, ErrDamaged)
	}
	if err := walk(f, best, best.root); err != nil {
		return fmt.Errorf("%s is damaged: %v; %s: %w", path, err, todo, ErrDamaged)
	}
	return nil
}

// bbolt page layout: id (8), flags (2), count (2), overflow (4), then
// count elements of 16 bytes; an element's key lies pos bytes past the
// element itself.
const (
	pageHeader   = 16
	elemSize     = 16
	branchFlag   = 0x01
	leafFlag     = 0x02
	bucketFlag   = 0x01 // a leaf element that is a bucket: value = root page (8), sequence (8)[, inline page]
	rootOff      = metaOff + 16
	maxWalkDepth = 64
)

// walk checks the tree of pages under the header's root bucket the way
// bbolt walks it when it opens the file, but returning an error where
// bbolt's page checks panic: every page id below the high-water mark,
// pages naming their own id, one parent each, elements inside their page.
func walk(f io.ReaderAt, m boltMeta, root uint64) error {
	seen := map[uint64]bool{}
	var visit func(id uint64, depth int, where string) error
	page := func(id uint64) ([]byte, error) {
		if id < 2 || id >= m.highWater {
			return nil, fmt.Errorf("page %d is outside the file's %d pages", id, m.highWater)
		}
		b := make([]byte, m.pageSize)
		if _, err := f.ReadAt(b, int64(id)*m.pageSize); err != nil {
			return nil, fmt.Errorf("read page %d: %w", id, err)
		}
		if got := binary.NativeEndian.Uint64(b); got != id {
			return nil, fmt.Errorf("page %d names itself %d", id, got)
		}
		if over := uint64(binary.NativeEndian.Uint32(b[12:])); over > 0 {
			if id+over >= m.highWater {
				return nil, fmt.Errorf("page %d runs %d pages past the file's %d", id, over, m.highWater)
			}
			b = make([]byte, int64(over+1)*m.pageSize)
			if _, err := f.ReadAt(b, int64(id)*m.pageSize); err != nil {
				return nil, fmt.Errorf("read page %d: %w", id, err)
			}
		}
		return b, nil
	}
	var elems func(b []byte, id uint64, depth int, where string) error
	elems = func(b []byte, id uint64, depth int, where string) error {
		flags, count := binary.NativeEndian.Uint16(b[8:]), int(binary.NativeEndian.Uint16(b[10:]))
		if pageHeader+count*elemSize > len(b) {
			return fmt.Errorf("page %d (%s) lists %d elements, more than it holds", id, where, count)
		}
		for i := range count {
			e := b[pageHeader+i*elemSize:]
			at := pageHeader + i*elemSize
			switch {
			case flags&branchFlag != 0:
				pos, ksize := int(binary.NativeEndian.Uint32(e)), int(binary.NativeEndian.Uint32(e[4:]))
				if at+pos+ksize > len(b) {
					return fmt.Errorf("page %d (%s) element %d lies past the page", id, where, i)
				}
				if err := visit(binary.NativeEndian.Uint64(e[8:]), depth+1, where); err != nil {
					return err
				}
			case flags&leafFlag != 0:
				fl, pos := binary.NativeEndian.Uint32(e), int(binary.NativeEndian.Uint32(e[4:]))
				ksize, vsize := int(binary.NativeEndian.Uint32(e[8:])), int(binary.NativeEndian.Uint32(e[12:]))
				if at+pos+ksize+vsize > len(b) || pos < 0 {
					return fmt.Errorf("page %d (%s) element %d lies past the page", id, where, i)
				}
				if fl&bucketFlag == 0 {
					continue
				}
				name := string(b[at+pos : at+pos+ksize])
				v := b[at+pos+ksize : at+pos+ksize+vsize]
				if len(v) < 16 {
					return fmt.Errorf("page %d: bucket %q has a short header", id, name)
				}
				if r := binary.NativeEndian.Uint64(v); r != 0 {
					if err := visit(r, depth+1, "bucket "+name); err != nil {
						return err
					}
				} else if len(v) > 16 {
					if len(v) < 16+pageHeader {
						return fmt.Errorf("page %d: inline bucket %q is cut short", id, name)
					}
					if err := elems(v[16:], id, depth+1, "bucket "+name); err != nil {
						return err
					}
				}
			default:
				return fmt.Errorf("page %d (%s) is neither a branch nor a leaf (flags %#x)", id, where, flags)
			}
		}
		return nil
	}
	visit = func(id uint64, depth int, where string) error {
		if depth > maxWalkDepth {
			return fmt.Errorf("page %d (%s): the tree is deeper than %d pages", id, where, maxWalkDepth)
		}
		if seen[id] {
			return fmt.Errorf("page %d (%s) has two parents", id, where)
		}
		seen[id] = true
		b, err := page(id)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return elems(b, id, depth, where)
	}
	return visit(root, 0, "root")
}

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
	m := boltMeta{pageSize: int64(le.Uint32(b[pageSizeOff:])), highWater: le.Uint64(b[highWaterOff:]), txid: le.Uint64(b[txidOff:])}
	return m, m.pageSize >= minPageSize && m.pageSize <= maxPageSize
}

// CheckFile looks at a bbolt file before bbolt maps it into memory: a file
// cut short (a copy that stopped, a full disk during a restore) makes
// bbolt read past its end and the process die of SIGBUS or a panic, and a
// file with no valid header is not a store at all. It returns nil for a
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
	return nil
}

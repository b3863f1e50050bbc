// Package diskqueue is the edge agent's store-and-forward queue: a bounded
// on-disk log of sealed messages. A message is appended before it is
// published and removed only when the broker has acknowledged it; after an
// outage the backlog is read back in order. When the queue is full the oldest
// messages are dropped and counted.
//
// Layout: segment files (NNNNNNNNNNNNNNNNNNNN.seg, named by their first
// sequence number) of records [len u32][crc32c u32][seq u64][data], and
// acks.log, the 8-byte sequence numbers removed (acknowledged or dropped)
// from the segments that still exist. A segment is deleted when none of its
// records is pending. A torn record at the end of the newest segment (a crash
// mid-write) is cut off on Open.
package diskqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Options bound the queue.
type Options struct {
	MaxBytes     int64 `yaml:"max_bytes"`     // payload bytes pending at most (default 64 MiB)
	MaxEntries   int   `yaml:"max_entries"`   // messages pending at most (default 200000)
	SegmentBytes int64 `yaml:"segment_bytes"` // a new segment starts past this size (default 4 MiB)
	Sync         bool  `yaml:"sync"`          // fsync every append (survives power loss, not only a crash)
}

// SetDefaults fills zero fields.
func (o *Options) SetDefaults() {
	if o.MaxBytes == 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = 200000
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 4 << 20
	}
}

// Validate reports the first problem with the options.
func (o *Options) Validate() error {
	if o.MaxBytes < 64<<10 {
		return fmt.Errorf("queue.max_bytes %d: want at least 65536", o.MaxBytes)
	}
	if o.MaxEntries < 1 {
		return fmt.Errorf("queue.max_entries %d: want at least 1", o.MaxEntries)
	}
	if o.SegmentBytes < 4<<10 {
		return fmt.Errorf("queue.segment_bytes %d: want at least 4096", o.SegmentBytes)
	}
	return nil
}

// ErrOrder is returned by Append for a sequence number not above the last one.
var ErrOrder = errors.New("sequence number not increasing")

const headerSize = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Entry is one queued message.
type Entry struct {
	Seq  uint64
	Data []byte
}

type segment struct {
	first uint64
	f     *os.File
	size  int64
	live  int // pending records in it
}

type rec struct {
	seq  uint64
	seg  *segment
	off  int64 // offset of the data
	n    int32
	gone bool
}

// Queue is safe for concurrent use.
type Queue struct {
	dir  string
	opts Options

	mu      sync.Mutex
	segs    []*segment // oldest first; the last one is written
	index   []rec      // by sequence number; gone records before head are trimmed lazily
	head    int
	pending int
	bytes   int64
	last    uint64
	acks    *os.File
	ackN    int64 // records in acks.log
	buf     []byte

	dropped      uint64
	droppedRange [2]uint64
	dropRun      bool // the newest drop was the last removal of the oldest message
}

// Open opens or creates the queue in dir.
func Open(dir string, opts Options) (*Queue, error) {
	opts.SetDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue folder: %w", err)
	}
	q := &Queue{dir: dir, opts: opts}
	if err := q.readMeta(); err != nil {
		return nil, err
	}
	gone, err := q.readAcks()
	if err != nil {
		return nil, err
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for i, name := range names {
		if err := q.loadSegment(name, gone, i == len(names)-1); err != nil {
			_ = q.Close() // the error being returned says more
			return nil, err
		}
	}
	// Rewrite acks.log with only the removals that still matter.
	if err := q.rewriteAcks(); err != nil {
		_ = q.Close() // the error being returned says more
		return nil, err
	}
	return q, nil
}

func (q *Queue) readAcks() (map[uint64]bool, error) {
	data, err := os.ReadFile(filepath.Join(q.dir, "acks.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read acks: %w", err)
	}
	gone := make(map[uint64]bool, len(data)/8)
	for i := 0; i+8 <= len(data); i += 8 {
		gone[binary.LittleEndian.Uint64(data[i:])] = true
	}
	return gone, nil
}

func (q *Queue) loadSegment(name string, gone map[uint64]bool, newest bool) error {
	first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), ".seg"), 10, 64)
	if err != nil {
		return fmt.Errorf("segment name %s: %w", name, err)
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open segment: %w", err)
	}
	seg := &segment{first: first, f: f}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("read segment %s: %w", name, err)
	}
	var off int64
	for off+headerSize <= int64(len(data)) {
		n := int64(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if off+headerSize+n > int64(len(data)) || crc32.Checksum(data[off+8:off+headerSize+n], castagnoli) != sum {
			break
		}
		seq := binary.LittleEndian.Uint64(data[off+8:])
		if seq > q.last {
			q.last = seq
		}
		if !gone[seq] {
			q.index = append(q.index, rec{seq: seq, seg: seg, off: off + headerSize, n: int32(n)})
			q.pending++
			q.bytes += n
			seg.live++
		}
		off += headerSize + n
	}
	if off < int64(len(data)) && newest {
		// A torn record from a crash mid-append: cut it off.
		if err := f.Truncate(off); err != nil {
			f.Close()
			return fmt.Errorf("truncate torn record in %s: %w", name, err)
		}
	}
	seg.size = off
	if seg.live == 0 && !newest {
		f.Close()
		os.Remove(name)
		return nil
	}
	q.segs = append(q.segs, seg)
	return nil
}

func (q *Queue) rewriteAcks() error {
	var buf []byte
	// Removed records still inside a live segment: every sequence number in a
	// segment's range that is not pending. The segments hold records in
	// order, so walk each one's file again for the exact set.
	pend := make(map[uint64]bool, q.pending)
	for _, r := range q.index {
		pend[r.seq] = true
	}
	for _, seg := range q.segs {
		if _, err := seg.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		data, err := io.ReadAll(io.LimitReader(seg.f, seg.size))
		if err != nil {
			return fmt.Errorf("reread segment: %w", err)
		}
		for off := int64(0); off+headerSize <= int64(len(data)); {
			n := int64(binary.LittleEndian.Uint32(data[off:]))
			seq := binary.LittleEndian.Uint64(data[off+8:])
			if !pend[seq] {
				buf = binary.LittleEndian.AppendUint64(buf, seq)
			}
			off += headerSize + n
		}
		if _, err := seg.f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
	}
	path := filepath.Join(q.dir, "acks.log")
	if err := os.WriteFile(path+".tmp", buf, 0o600); err != nil {
		return fmt.Errorf("write acks: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write acks: %w", err)
	}
	if q.acks != nil {
		q.acks.Close()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open acks: %w", err)
	}
	q.acks, q.ackN = f, int64(len(buf)/8)
	return nil
}

// Append adds a message; seq must be above every sequence number appended
// before. When the queue is full the oldest pending messages are dropped.
func (q *Queue) Append(seq uint64, data []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if seq <= q.last {
		return fmt.Errorf("append %d after %d: %w", seq, q.last, ErrOrder)
	}
	if int64(len(data)) > q.opts.MaxBytes {
		return fmt.Errorf("append %d: %d bytes exceed the queue's %d", seq, len(data), q.opts.MaxBytes)
	}
	for q.pending > 0 && (q.pending+1 > q.opts.MaxEntries || q.bytes+int64(len(data)) > q.opts.MaxBytes) {
		if err := q.dropOldest(); err != nil {
			return err
		}
	}
	seg := q.current()
	if seg == nil || seg.size >= q.opts.SegmentBytes {
		var err error
		if seg, err = q.newSegment(seq); err != nil {
			return err
		}
	}
	b := q.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = append(b, data...)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	q.buf = b
	if _, err := seg.f.WriteAt(b, seg.size); err != nil {
		return fmt.Errorf("append %d: %w", seq, err)
	}
	if q.opts.Sync {
		if err := seg.f.Sync(); err != nil {
			return fmt.Errorf("append %d: sync: %w", seq, err)
		}
	}
	q.index = append(q.index, rec{seq: seq, seg: seg, off: seg.size + headerSize, n: int32(len(data))})
	seg.size += int64(len(b))
	seg.live++
	q.pending++
	q.bytes += int64(len(data))
	q.last = seq
	return nil
}

func (q *Queue) current() *segment {
	if len(q.segs) == 0 {
		return nil
	}
	return q.segs[len(q.segs)-1]
}

func (q *Queue) newSegment(first uint64) (*segment, error) {
	name := filepath.Join(q.dir, fmt.Sprintf("%020d.seg", first))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("new segment: %w", err)
	}
	seg := &segment{first: first, f: f}
	q.segs = append(q.segs, seg)
	return seg, nil
}

func (q *Queue) dropOldest() error {
	for q.head < len(q.index) && q.index[q.head].gone {
		q.head++
	}
	if q.head == len(q.index) {
		return nil
	}
	seq := q.index[q.head].seq
	if q.dropRun {
		q.droppedRange[1] = seq
	} else {
		q.droppedRange = [2]uint64{seq, seq}
	}
	q.dropped++
	q.dropRun = true
	if err := q.remove(q.head); err != nil {
		return err
	}
	if q.dropped%256 == 1 {
		if err := q.writeMeta(); err != nil {
			return err
		}
	}
	return nil
}

// remove marks index[i] removed and records it on disk.
func (q *Queue) remove(i int) error {
	r := &q.index[i]
	r.gone = true
	q.pending--
	q.bytes -= int64(r.n)
	r.seg.live--
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], r.seq)
	if _, err := q.acks.Write(b[:]); err != nil {
		return fmt.Errorf("record removal of %d: %w", r.seq, err)
	}
	q.ackN++
	if r.seg.live == 0 && r.seg != q.current() {
		q.deleteSegment(r.seg)
	}
	for q.head < len(q.index) && q.index[q.head].gone {
		q.head++
	}
	if q.head > 1024 && q.head > len(q.index)/2 {
		q.index = append(q.index[:0], q.index[q.head:]...)
		q.head = 0
	}
	if q.pending == 0 && (q.ackN > 1<<16 || q.current() != nil && q.current().size > q.opts.SegmentBytes/2) {
		// Empty: start afresh so acks.log does not grow without bound.
		for len(q.segs) > 0 {
			q.deleteSegment(q.segs[0])
		}
		q.index, q.head = q.index[:0], 0
		if err := q.acks.Truncate(0); err != nil {
			return fmt.Errorf("truncate acks: %w", err)
		}
		q.ackN = 0
	}
	return nil
}

func (q *Queue) deleteSegment(seg *segment) {
	for i, s := range q.segs {
		if s == seg {
			q.segs = append(q.segs[:i], q.segs[i+1:]...)
			break
		}
	}
	seg.f.Close()
	os.Remove(seg.f.Name())
}

func (q *Queue) find(seq uint64) int {
	i := q.head + sort.Search(len(q.index)-q.head, func(j int) bool { return q.index[q.head+j].seq >= seq })
	if i < len(q.index) && q.index[i].seq == seq && !q.index[i].gone {
		return i
	}
	return -1
}

// Ack removes a message the broker has acknowledged. Acking a message that
// is not pending (already acked, or dropped) does nothing.
func (q *Queue) Ack(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := q.find(seq)
	if i < 0 {
		return nil
	}
	if i == q.head {
		q.dropRun = false // the oldest was delivered: a later drop starts a new run
	}
	return q.remove(i)
}

// Contains reports whether seq is pending.
func (q *Queue) Contains(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.find(seq) >= 0
}

// After returns up to max pending messages with sequence numbers above seq,
// in order, appended to dst.
func (q *Queue) After(seq uint64, max int, dst []Entry) ([]Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := q.head + sort.Search(len(q.index)-q.head, func(j int) bool { return q.index[q.head+j].seq > seq })
	for ; i < len(q.index) && max > 0; i++ {
		r := q.index[i]
		if r.gone {
			continue
		}
		data := make([]byte, r.n)
		if _, err := r.seg.f.ReadAt(data, r.off); err != nil {
			return dst, fmt.Errorf("read %d: %w", r.seq, err)
		}
		dst = append(dst, Entry{Seq: r.seq, Data: data})
		max--
	}
	return dst, nil
}

// Len is the number of pending messages and Bytes their payload size.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// Bytes is the payload size of the pending messages.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// Dropped returns how many messages were ever dropped from a full queue and
// the [first, last] sequence numbers of the newest dropped run.
func (q *Queue) Dropped() (uint64, [2]uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped, q.droppedRange
}

func (q *Queue) metaPath() string { return filepath.Join(q.dir, "dropped") }

// writeMeta replaces the drop counters' file. It is written every 256th
// drop and on Close, so between those it may lag behind.
func (q *Queue) writeMeta() error {
	s := fmt.Sprintf("%d %d %d\n", q.dropped, q.droppedRange[0], q.droppedRange[1])
	if err := os.WriteFile(q.metaPath()+".tmp", []byte(s), 0o600); err != nil {
		return fmt.Errorf("write drop counters: %w", err)
	}
	if err := os.Rename(q.metaPath()+".tmp", q.metaPath()); err != nil {
		return fmt.Errorf("write drop counters: %w", err)
	}
	return nil
}

// readMeta reads the drop counters. A file that does not parse (the rename
// in writeMeta is not fsynced, so a power loss can leave it empty) counts
// from zero again rather than keeping the queue from opening.
func (q *Queue) readMeta() error {
	data, err := os.ReadFile(q.metaPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read drop counters: %w", err)
	}
	var n uint64
	var r [2]uint64
	if _, err := fmt.Sscan(string(data), &n, &r[0], &r[1]); err != nil || n > 0 && r[0] > r[1] {
		return nil
	}
	q.dropped, q.droppedRange = n, r
	return nil
}

// Close writes the drop counters and closes the files.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var first error
	if q.dropped > 0 {
		first = q.writeMeta()
	}
	for _, s := range q.segs {
		if err := s.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	q.segs = nil
	if q.acks != nil {
		if err := q.acks.Close(); err != nil && first == nil {
			first = err
		}
		q.acks = nil
	}
	return first
}

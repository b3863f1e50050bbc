package influxstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// spool is the durable replay log: line-protocol lines not yet written to
// InfluxDB, in append-only segment files, and the position up to which they
// were written (the ack), persisted in its own small file.
//
// Writers append to the newest segment (the head) and fsync before
// returning. The sender reads from the ack position, writes to InfluxDB, and
// acks; a segment whose every line is acked is deleted. When the unacked
// bytes pass the budget, whole segments are dropped, never the one the
// sender reads from nor the head: their lines are counted as dropped.
type spool struct {
	dir      string
	budget   int64
	segBytes int64

	mu      sync.Mutex
	segs    []*segment // oldest first; segs[0] holds the ack, the last is the head
	head    *os.File
	ackOff  int64 // byte offset of the ack within segs[0]
	ackLine int64 // lines of segs[0] before ackOff
	dropped int64 // lines dropped for the budget, ever
	acked   chan struct{}
	reader  *os.File // open on segs[0] for the sender
	readID  uint64
	broken  error // set when a failed append could not be cut off: every later append fails
}

type segment struct {
	id    uint64
	size  int64 // bytes committed (fsynced)
	lines int64
}

// position is a point in the spool: a segment and a byte offset in it.
type position struct {
	seg uint64
	off int64
}

func (p position) before(q position) bool {
	return p.seg < q.seg || p.seg == q.seg && p.off < q.off
}

const segSuffix = ".lp"

func segName(id uint64) string { return fmt.Sprintf("%016x%s", id, segSuffix) }

// openSpool opens the spool in dir, creating it when missing.
func openSpool(dir string, budget, segBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("replay log: %w", err)
	}
	s := &spool{dir: dir, budget: budget, segBytes: segBytes, acked: make(chan struct{})}
	ack, err := s.readAck()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("replay log: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 64)
		if err != nil {
			continue
		}
		if id < ack.seg {
			os.Remove(filepath.Join(dir, name)) // fully written before the last stop
			continue
		}
		seg, err := s.scan(id)
		if err != nil {
			return nil, err
		}
		s.segs = append(s.segs, seg)
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmpUint(a.id, b.id) })
	if len(s.segs) > 0 && s.segs[0].id == ack.seg {
		s.ackOff = min(ack.off, s.segs[0].size)
		s.ackLine, err = s.countLines(s.segs[0].id, s.ackOff)
		if err != nil {
			return nil, err
		}
	}
	// Always start a fresh head: an old file is never appended to again.
	next := ack.seg + 1
	if n := len(s.segs); n > 0 {
		next = max(next, s.segs[n-1].id+1)
	}
	if err := s.newHead(next); err != nil {
		return nil, err
	}
	return s, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scan counts a segment's lines and cuts a torn last line left by a crash.
func (s *spool) scan(id uint64) (*segment, error) {
	path := filepath.Join(s.dir, segName(id))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("replay log: %w", err)
	}
	keep := bytes.LastIndexByte(data, '\n') + 1
	if keep < len(data) {
		if err := os.Truncate(path, int64(keep)); err != nil {
			return nil, fmt.Errorf("replay log: cut torn line: %w", err)
		}
	}
	return &segment{id: id, size: int64(keep), lines: int64(bytes.Count(data[:keep], []byte{'\n'}))}, nil
}

func (s *spool) countLines(id uint64, upTo int64) (int64, error) {
	f, err := os.Open(filepath.Join(s.dir, segName(id)))
	if err != nil {
		return 0, fmt.Errorf("replay log: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, upTo))
	if err != nil {
		return 0, fmt.Errorf("replay log: %w", err)
	}
	return int64(bytes.Count(data, []byte{'\n'})), nil
}

func (s *spool) newHead(id uint64) error {
	f, err := os.OpenFile(filepath.Join(s.dir, segName(id)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("replay log: new segment: %w", err)
	}
	if s.head != nil {
		s.head.Close()
	}
	s.head = f
	s.segs = append(s.segs, &segment{id: id})
	return nil
}

// append writes lines (each ending in '\n', n of them) durably. It returns
// how many lines were dropped to keep the spool within its budget.
func (s *spool) append(lines []byte, n int64) (dropped int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head == nil {
		return 0, errSpoolClosed
	}
	if s.broken != nil {
		return 0, s.broken
	}
	h := s.segs[len(s.segs)-1]
	if h.size > 0 && h.size+int64(len(lines)) > s.segBytes {
		if err := s.newHead(h.id + 1); err != nil {
			return 0, err
		}
		h = s.segs[len(s.segs)-1]
	}
	if _, err := s.head.WriteAt(lines, h.size); err != nil {
		return 0, s.cut(h, fmt.Errorf("replay log write: %w", err))
	}
	if err := s.head.Sync(); err != nil {
		return 0, s.cut(h, fmt.Errorf("replay log sync: %w", err))
	}
	h.size += int64(len(lines))
	h.lines += n
	return s.enforceBudget(), nil
}

var errSpoolClosed = errors.New("replay log closed")

// cut removes from the head what a failed append left past its committed
// size (a torn line, or lines not known to be on disk), so that neither
// the sender nor a restart takes lines the append reported as not written.
// When it cannot, the head no longer ends where the spool says: the spool
// takes no more lines until it is opened again. Called with s.mu held.
func (s *spool) cut(h *segment, err error) error {
	if terr := s.head.Truncate(h.size); terr != nil {
		s.broken = fmt.Errorf("%w; cutting it off failed too, no more lines until restart: %w", err, terr)
		return s.broken
	}
	return err
}

// enforceBudget drops whole segments, oldest first, skipping the one being
// read and the head, until the unacked bytes fit the budget. Called with
// s.mu held.
func (s *spool) enforceBudget() int64 {
	var dropped int64
	for len(s.segs) > 2 && s.pendingBytesLocked() > s.budget {
		seg := s.segs[1]
		s.segs = slices.Delete(s.segs, 1, 2)
		os.Remove(filepath.Join(s.dir, segName(seg.id)))
		dropped += seg.lines
	}
	s.dropped += dropped
	return dropped
}

func (s *spool) pendingBytesLocked() int64 {
	var n int64
	for _, seg := range s.segs {
		n += seg.size
	}
	return n - s.ackOff
}

// pending is the unacked lines and bytes.
func (s *spool) pending() (lines, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.segs {
		lines += seg.lines
	}
	return lines - s.ackLine, s.pendingBytesLocked()
}

// end is the position after the last committed line.
func (s *spool) end() position {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.segs[len(s.segs)-1]
	return position{h.id, h.size}
}

// ackPos is the position up to which lines are written.
func (s *spool) ackPos() (position, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) > 1 && s.ackOff == s.segs[0].size {
		// Everything in the first segment is written; the next begins.
		return position{s.segs[1].id, 0}, s.acked
	}
	return position{s.segs[0].id, s.ackOff}, s.acked
}

// peek reads the next batch after the ack: at most maxLines lines and
// maxBytes bytes (but at least one line), into buf. It returns the batch,
// its line count and the position after it. A batch never spans segments.
func (s *spool) peek(buf []byte, maxLines int, maxBytes int) ([]byte, int, position, error) {
	s.mu.Lock()
	// Step past a fully acked segment that is not the head.
	for len(s.segs) > 1 && s.ackOff == s.segs[0].size {
		old := s.segs[0]
		s.segs = s.segs[1:]
		s.ackOff, s.ackLine = 0, 0
		if s.reader != nil && s.readID == old.id {
			s.reader.Close()
			s.reader = nil
		}
		os.Remove(filepath.Join(s.dir, segName(old.id)))
	}
	seg := *s.segs[0]
	off := s.ackOff
	s.mu.Unlock()
	avail := seg.size - off
	if avail <= 0 {
		return buf[:0], 0, position{seg.id, off}, nil
	}
	if s.reader == nil || s.readID != seg.id {
		if s.reader != nil {
			s.reader.Close()
		}
		f, err := os.Open(filepath.Join(s.dir, segName(seg.id)))
		if err != nil {
			return buf[:0], 0, position{}, fmt.Errorf("replay log read: %w", err)
		}
		s.reader, s.readID = f, seg.id
	}
	n := min(avail, int64(maxBytes))
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := s.reader.ReadAt(buf, off); err != nil {
		return buf[:0], 0, position{}, fmt.Errorf("replay log read: %w", err)
	}
	// Cut at maxLines lines, or at the last whole line.
	lines, cut := 0, 0
	for cut < len(buf) && lines < maxLines {
		i := bytes.IndexByte(buf[cut:], '\n')
		if i < 0 {
			break
		}
		cut += i + 1
		lines++
	}
	if lines == 0 {
		// One line longer than maxBytes: read it whole.
		return s.peek(make([]byte, 0, 2*maxBytes), maxLines, 2*maxBytes)
	}
	return buf[:cut], lines, position{seg.id, off + int64(cut)}, nil
}

// ack records that the lines before p (n of them since the last ack) are
// written, and persists it. An ack into a segment dropped meanwhile is
// ignored.
func (s *spool) ack(p position, n int) error {
	s.mu.Lock()
	if len(s.segs) == 0 || s.segs[0].id != p.seg || p.off < s.ackOff {
		s.mu.Unlock()
		return nil
	}
	s.ackOff = p.off
	s.ackLine += int64(n)
	close(s.acked)
	s.acked = make(chan struct{})
	s.mu.Unlock()
	return s.writeAck(p)
}

func (s *spool) ackPath() string { return filepath.Join(s.dir, "ack") }

// writeAck persists p: segment, offset and a CRC, written to a temp file
// and renamed over the old one.
func (s *spool) writeAck(p position) error {
	var b [20]byte
	binary.BigEndian.PutUint64(b[0:], p.seg)
	binary.BigEndian.PutUint64(b[8:], uint64(p.off))
	binary.BigEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:16]))
	tmp := s.ackPath() + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("replay log ack: %w", err)
	}
	_, err = f.Write(b[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.ackPath())
	}
	if err != nil {
		return fmt.Errorf("replay log ack: %w", err)
	}
	return nil
}

func (s *spool) readAck() (position, error) {
	b, err := os.ReadFile(s.ackPath())
	if errors.Is(err, os.ErrNotExist) {
		return position{}, nil
	}
	if err != nil {
		return position{}, fmt.Errorf("replay log ack: %w", err)
	}
	if len(b) != 20 || crc32.ChecksumIEEE(b[:16]) != binary.BigEndian.Uint32(b[16:]) {
		// A torn ack only means replaying lines InfluxDB may already
		// hold; it overwrites them with the same values.
		return position{}, nil
	}
	return position{binary.BigEndian.Uint64(b[0:]), int64(binary.BigEndian.Uint64(b[8:]))}, nil
}

// droppedTotal is the lines dropped for the budget since the spool opened.
func (s *spool) droppedTotal() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reader != nil {
		s.reader.Close()
		s.reader = nil
	}
	if s.head == nil {
		return nil
	}
	err := s.head.Close()
	s.head = nil
	return err
}

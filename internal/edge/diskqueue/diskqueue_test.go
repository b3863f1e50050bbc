package diskqueue

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func msg(seq uint64) []byte {
	return []byte(fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, seq, bytes.Repeat([]byte("x"), int(seq%7))))
}

func seqs(t *testing.T, q *Queue) []uint64 {
	t.Helper()
	es, err := q.After(0, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range es {
		if !bytes.Equal(e.Data, msg(e.Seq)) {
			t.Fatalf("entry %d data = %q, want %q", e.Seq, e.Data, msg(e.Seq))
		}
		out = append(out, e.Seq)
	}
	return out
}

func eq(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestAppendAckReopen(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for s := uint64(1); s <= 300; s++ {
		if err := q.Append(s, msg(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Append(300, msg(300)); !errors.Is(err, ErrOrder) {
		t.Errorf("Append(300 again) = %v, want ErrOrder", err)
	}
	// Ack out of order: the live tail and some of the head.
	for s := uint64(1); s <= 100; s++ {
		q.Ack(s)
	}
	for s := uint64(250); s <= 300; s++ {
		q.Ack(s)
	}
	q.Ack(150)
	q.Ack(150) // twice is harmless
	var want []uint64
	for s := uint64(101); s < 250; s++ {
		if s != 150 {
			want = append(want, s)
		}
	}
	if got := seqs(t, q); !eq(got, want) {
		t.Fatalf("pending = %v, want %v", got, want)
	}
	segsBefore, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	q.Close()

	q, err = Open(dir, Options{SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if got := seqs(t, q); !eq(got, want) {
		t.Errorf("pending after reopen = %v, want %v", got, want)
	}
	if q.Len() != len(want) {
		t.Errorf("Len() = %d, want %d", q.Len(), len(want))
	}
	if err := q.Append(250, msg(250)); !errors.Is(err, ErrOrder) {
		t.Errorf("Append(250) after reopen = %v, want ErrOrder (300 was appended before)", err)
	}
	// Segments holding only acked records are gone.
	for s := uint64(101); s < 250; s++ {
		q.Ack(s)
	}
	if q.Len() != 0 || q.Bytes() != 0 {
		t.Errorf("after acking all: Len %d Bytes %d, want 0 0", q.Len(), q.Bytes())
	}
	segsAfter, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segsAfter) > 1 || len(segsBefore) < 3 {
		t.Errorf("segments: %d before, %d after acking all; want several, then at most 1", len(segsBefore), len(segsAfter))
	}
	// After(seq) starts past seq.
	q.Append(400, msg(400))
	q.Append(401, msg(401))
	if es, _ := q.After(400, 10, nil); len(es) != 1 || es[0].Seq != 401 {
		t.Errorf("After(400) = %v, want [401]", es)
	}
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for s := uint64(1); s <= 5; s++ {
		q.Append(s, msg(s))
	}
	q.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, _ := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3}) // half a header: a crash mid-append
	f.Close()
	a, _ := os.OpenFile(filepath.Join(dir, "acks.log"), os.O_WRONLY|os.O_APPEND, 0)
	a.Write([]byte{2, 0, 0, 0, 0, 0, 0, 0, 9, 9}) // ack of 2, then a torn ack
	a.Close()
	q, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after a torn write = %v", err)
	}
	defer q.Close()
	if got := seqs(t, q); !eq(got, []uint64{1, 3, 4, 5}) {
		t.Errorf("pending = %v, want [1 3 4 5]", got)
	}
	if err := q.Append(6, msg(6)); err != nil {
		t.Fatal(err)
	}
	if got := seqs(t, q); !eq(got, []uint64{1, 3, 4, 5, 6}) {
		t.Errorf("pending after append = %v, want [1 3 4 5 6]", got)
	}
}

func TestDropOldestWhenFull(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{MaxEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	for s := uint64(1); s <= 15; s++ {
		q.Append(s, msg(s))
	}
	n, r := q.Dropped()
	if n != 5 || r != [2]uint64{1, 5} {
		t.Errorf("Dropped() = %d %v, want 5 [1 5]", n, r)
	}
	if got := seqs(t, q); !eq(got, []uint64{6, 7, 8, 9, 10, 11, 12, 13, 14, 15}) {
		t.Errorf("pending = %v, want 6..15", got)
	}
	// The oldest is delivered; the next drop starts a new run.
	q.Ack(6)
	q.Append(16, msg(16))
	q.Append(17, msg(17))
	n, r = q.Dropped()
	if n != 6 || r != [2]uint64{7, 7} {
		t.Errorf("Dropped() = %d %v, want 6 [7 7]", n, r)
	}
	q.Close()
	q, err = Open(dir, Options{MaxEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if n2, r2 := q.Dropped(); n2 != n || r2 != r {
		t.Errorf("Dropped() after reopen = %d %v, want %d %v", n2, r2, n, r)
	}
	// A byte bound too.
	qb, _ := Open(t.TempDir(), Options{MaxBytes: 64 << 10})
	defer qb.Close()
	big := bytes.Repeat([]byte("y"), 20<<10)
	for s := uint64(1); s <= 5; s++ {
		qb.Append(s, big)
	}
	if qb.Bytes() > 64<<10 || qb.Len() != 3 {
		t.Errorf("byte-bounded queue: Len %d Bytes %d, want 3 entries within 64 KiB", qb.Len(), qb.Bytes())
	}
}

func BenchmarkAppendAck(b *testing.B) {
	q, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	data := bytes.Repeat([]byte("z"), 600)
	b.SetBytes(int64(len(data)))
	var s uint64
	for b.Loop() {
		s++
		if err := q.Append(s, data); err != nil {
			b.Fatal(err)
		}
		if err := q.Ack(s); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzOpen opens a queue whose newest segment and ack log hold arbitrary
// bytes (a torn or corrupted disk): Open must not fail or panic, and the
// queue must work afterwards.
func FuzzOpen(f *testing.F) {
	seed := func(n int) []byte {
		dir := f.TempDir()
		q, _ := Open(dir, Options{})
		for s := uint64(1); s <= uint64(n); s++ {
			q.Append(s, msg(s))
		}
		q.Close()
		segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
		data, _ := os.ReadFile(segs[0])
		return data
	}
	f.Add(seed(3), []byte{2, 0, 0, 0, 0, 0, 0, 0})
	f.Add(seed(5)[:40], []byte{1, 2, 3})
	f.Add([]byte{255, 255, 255, 255, 0, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, seg, acks []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "00000000000000000001.seg"), seg, 0o600)
		os.WriteFile(filepath.Join(dir, "acks.log"), acks, 0o600)
		q, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("Open(corrupt) = %v", err)
		}
		defer q.Close()
		es, err := q.After(0, 1<<20, nil)
		if err != nil {
			t.Fatalf("After = %v", err)
		}
		if len(es) != q.Len() {
			t.Fatalf("After returned %d entries, Len() = %d", len(es), q.Len())
		}
		next := uint64(1 << 40)
		if err := q.Append(next, []byte("x")); err != nil {
			t.Fatalf("Append after a corrupt open = %v", err)
		}
		if err := q.Ack(next); err != nil || q.Contains(next) {
			t.Fatalf("Ack after a corrupt open = %v", err)
		}
	})
}

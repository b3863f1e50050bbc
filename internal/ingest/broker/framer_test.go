package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
)

// chunkReader returns its stream in the chunks given (each Read at most
// the rest of one chunk) and counts what it gave.
type chunkReader struct {
	chunks [][]byte
	read   int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	r.read += n
	return n, nil
}

// admission is one admit call: the packet's type and (capped) length, and
// how many bytes had passed and been read from the connection then.
type admission struct {
	typ          byte
	n            int
	passed, read int
	ended        int // bytes passed when done was told the packet had all passed; -1: not told
}

// runFramer reads src through a framer (chunks from the connection, reads
// of readSize) and returns what passed and the admissions. At each
// admission it checks that the connection was not read beyond the
// packet's fixed header.
func runFramer(t testing.TB, chunks [][]byte, readSize, max int) (out []byte, got []admission) {
	r := &chunkReader{chunks: chunks}
	f := &framer{r: r, max: max}
	f.admit = func(typ byte, n int) error {
		got = append(got, admission{typ: typ, n: n, passed: len(out), read: r.read, ended: -1})
		return nil
	}
	done := 0
	f.done = func() { done++ }
	p := make([]byte, readSize)
	for range 1 << 20 {
		n, err := f.Read(p)
		out = append(out, p[:n]...)
		switch {
		case done > 1 || done == 1 && (len(got) == 0 || got[len(got)-1].ended >= 0):
			t.Fatalf("done told %d times in one read, after admissions %v", done, got)
		case done == 1:
			got[len(got)-1].ended = len(out)
		}
		done = 0
		if r.read-len(out) > len(f.buf) {
			t.Fatalf("%d bytes read from the connection, %d passed: more than a fixed header ahead", r.read, len(out))
		}
		if errors.Is(err, io.EOF) {
			return out, got
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	t.Fatal("no EOF after 1M reads")
	return nil, nil
}

// packet is the fixed header of an MQTT packet of type typ (flags 0:
// the framer does not look at them) with a remaining length of n.
func packet(typ byte, n int) []byte {
	b := []byte{typ << 4}
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return b
}

func withBody(h []byte, n int) []byte {
	return append(h, bytes.Repeat([]byte{byte(n)}, n)...)
}

// TestFramerSplits: a stream of a CONNECT, PUBLISHes with 1- and 2-byte
// lengths, a PINGREQ, a PUBACK and a SUBSCRIBE passes through unchanged
// for every split of it into two chunks and for reads of 1 to 2,048 bytes;
// each packet is admitted once, in order, when everything before it has
// passed and before any of its bytes, and done is told when its last byte
// has passed.
func TestFramerSplits(t *testing.T) {
	sizes := []struct {
		typ byte
		n   int
	}{{1, 20}, {3, 100}, {3, 300}, {12, 0}, {4, 2}, {3, 0}, {8, 9}, {3, 127}, {3, 128}}
	var stream []byte
	var want []admission
	for _, s := range sizes {
		p := withBody(packet(s.typ, s.n), s.n)
		want = append(want, admission{typ: s.typ, n: s.n, passed: len(stream), ended: len(stream) + len(p)})
		stream = append(stream, p...)
	}
	for split := 0; split <= len(stream); split++ {
		for _, readSize := range []int{1, 2, 3, 5, 7, 64, 2048} {
			chunks := [][]byte{bytes.Clone(stream[:split]), bytes.Clone(stream[split:])}
			out, got := runFramer(t, chunks, readSize, 1<<20)
			if !bytes.Equal(out, stream) {
				t.Fatalf("split %d, reads of %d: passed %d bytes %x, want %x", split, readSize, len(out), out, stream)
			}
			if !slices.EqualFunc(got, want, func(a, b admission) bool {
				return a.typ == b.typ && a.n == b.n && a.passed == b.passed && a.ended == b.ended
			}) {
				t.Fatalf("split %d, reads of %d: admissions %v, want %v", split, readSize, got, want)
			}
		}
	}
	out, got := runFramer(t, [][]byte{bytes.Clone(stream)}, 4096, 64) // coalesced, the lengths capped
	if !bytes.Equal(out, stream) || len(got) != len(want) {
		t.Fatalf("coalesced: passed %x with %d admissions, want %x with %d", out, len(got), stream, len(want))
	}
	for i, a := range got {
		if a.n != min(want[i].n, 64) {
			t.Errorf("admission %d with max 64 = %d bytes, want %d", i, a.n, min(want[i].n, 64))
		}
	}
}

// TestFramerMalformed: a fifth length byte ends the framing; the bytes
// still pass, and nothing is admitted for them.
func TestFramerMalformed(t *testing.T) {
	stream := append(withBody(packet(3, 10), 10), 0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 2, 3)
	out, got := runFramer(t, [][]byte{bytes.Clone(stream)}, 3, 1<<20)
	if !bytes.Equal(out, stream) || len(got) != 1 {
		t.Errorf("passed %x with admissions %v, want %x with one", out, got, stream)
	}
}

// TestFramerAdmitError: an admission refused ends the stream with its
// error, before any byte of the packet passes.
func TestFramerAdmitError(t *testing.T) {
	stream := append(withBody(packet(4, 2), 2), withBody(packet(3, 10), 10)...)
	refused := errors.New("refused")
	f := &framer{r: bytes.NewReader(stream), max: 100, admit: func(typ byte, n int) error {
		if typ == 3 {
			return refused
		}
		return nil
	}}
	out, err := io.ReadAll(f)
	if !errors.Is(err, refused) || !bytes.Equal(out, stream[:4]) {
		t.Errorf("ReadAll = %x, %v; want %x, %v", out, err, stream[:4], refused)
	}
}

// FuzzFramer: any byte stream, in any chunks and read sizes, passes
// through unchanged; nothing is admitted above max; each admission comes
// when all bytes before the packet have passed and none of it.
func FuzzFramer(f *testing.F) {
	var seed []byte
	for _, s := range [][2]int{{1, 20}, {3, 300}, {12, 0}, {3, 130}, {4, 2}} {
		seed = append(seed, withBody(packet(byte(s[0]), s[1]), s[1])...)
	}
	f.Add(seed, uint16(1), uint16(7))
	f.Add(seed, uint16(3), uint16(4096))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f}, uint16(2), uint16(1))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f, 0}, uint16(5), uint16(3))
	f.Add([]byte{0x30}, uint16(1), uint16(1))
	f.Fuzz(func(t *testing.T, stream []byte, chunk, readSize uint16) {
		const max = 1000
		var chunks [][]byte
		step := int(chunk%64) + 1
		for i := 0; i < len(stream); i += step {
			chunks = append(chunks, bytes.Clone(stream[i:min(i+step, len(stream))]))
		}
		out, got := runFramer(t, chunks, int(readSize%4096)+1, max)
		if !bytes.Equal(out, stream) {
			t.Fatalf("passed %x, want %x", out, stream)
		}
		// The packets the stream starts with, by the MQTT spec: each one's
		// admission, at its offset.
		at := 0
		for i, a := range got {
			typ, remaining, size, ok := referenceHeader(stream[at:])
			if !ok {
				t.Fatalf("admission %d (%+v) at offset %d, where the stream has no whole fixed header", i, a, at)
			}
			if a.typ != typ || a.n != min(remaining, max) || a.passed != at {
				t.Fatalf("admission %d = %+v, want type %d, %d bytes, at %d", i, a, typ, min(remaining, max), at)
			}
			if a.n > max {
				t.Fatalf("admission of %d bytes, above max %d", a.n, max)
			}
			if end := at + size + remaining; (end <= len(stream)) != (a.ended >= 0) || a.ended >= 0 && a.ended != end {
				t.Fatalf("admission %d (%+v): done told at %d; want at its end, %d, if the stream (%d bytes) holds it whole", i, a, a.ended, end, len(stream))
			}
			at += size + remaining
		}
		if _, _, _, ok := referenceHeader(stream[min(at, len(stream)):]); ok && at < len(stream) {
			t.Fatalf("the packet at %d was not admitted (admissions %v)", at, got)
		}
	})
}

// referenceHeader decodes an MQTT fixed header (MQTT 3.1.1 section 2.2.3)
// at the start of b; ok false if b holds none whole or a malformed one.
func referenceHeader(b []byte) (typ byte, remaining, size int, ok bool) {
	mult := 1
	for i := 1; i <= 4 && i < len(b); i++ {
		remaining += int(b[i]&127) * mult
		mult *= 128
		if b[i]&128 == 0 {
			return b[0] >> 4, remaining, i + 1, true
		}
	}
	return 0, 0, 0, false
}

func (a admission) String() string {
	return fmt.Sprintf("{type %d, %d bytes, at %d, ended %d}", a.typ, a.n, a.passed, a.ended)
}

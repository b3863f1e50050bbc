package broker

import "io"

// framer passes a client's MQTT byte stream to mochi packet by packet: it
// reads each packet's fixed header (the type byte and a remaining length
// of 1-4 bytes), asks admit for room for the packet before any of its
// bytes pass, then passes exactly its remaining length. A Read never
// returns bytes past the end of the packet admitted last, so the next
// packet's header is read only when mochi asks for it, after it has
// handled the one before; while admit waits, nothing more is read from the
// connection (its TCP window fills and the client waits).
//
// A malformed length (a fifth length byte) ends the framing: the rest
// passes as it comes, unadmitted (mochi closes such a connection).
type framer struct {
	r io.Reader
	// admit is asked for room for a packet of type typ (the fixed header's
	// high 4 bits) whose remaining length is n, capped at max; an error
	// ends the stream.
	admit func(typ byte, n int) error
	// done, when set, is told each time the last byte of an admitted
	// packet has passed.
	done func()
	max  int

	buf        [5]byte // a fixed header's bytes, and what a read brought after it
	head, tail int     // buf[head:tail] is read and not passed yet
	header     int     // bytes of the admitted packet's fixed header not passed yet (in buf)
	left       int     // bytes of the admitted packet's rest not passed yet
	broken     bool    // malformed length: no more framing
	open       bool    // a packet is admitted and not all passed
	err        error   // the reader's error, returned once what came before it has passed
}

func (f *framer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := f.frame(); err != nil {
		return 0, err
	}
	if f.head < f.tail { // buffered: a header, its packet's first bytes, or bytes before an error
		k := min(f.tail-f.head, len(p))
		current := f.header + f.left
		switch {
		case current > 0 && !f.broken:
			k = min(k, current)
		case !f.broken && f.err == nil:
			return 0, nil // part of a header: frame read nothing more
		}
		copy(p, f.buf[f.head:f.head+k])
		f.head += k
		f.passed(k)
		f.ended()
		return k, nil
	}
	switch {
	case f.err != nil:
		return 0, f.err
	case f.broken:
		return f.r.Read(p)
	case f.left == 0:
		return 0, nil // frame read nothing (a reader's 0, nil)
	}
	n, err := f.r.Read(p[:min(len(p), f.left)])
	f.left -= n
	f.ended()
	return n, err
}

// ended tells done once the admitted packet has all passed.
func (f *framer) ended() {
	if f.open && f.header == 0 && f.left == 0 {
		f.open = false
		if f.done != nil {
			f.done()
		}
	}
}

// passed counts k bytes of the current packet passed, header first.
func (f *framer) passed(k int) {
	h := min(k, f.header)
	f.header -= h
	f.left -= min(k-h, f.left)
}

// frame makes sure there is a packet to pass bytes of: at a packet
// boundary it reads the next fixed header and admits the packet. It
// returns nil with nothing admitted when the reader failed (what was
// read before passes, then the error), brought nothing, or the framing
// broke.
func (f *framer) frame() error {
	for !f.broken && f.header == 0 && f.left == 0 {
		typ, remaining, size := parseFixedHeader(f.buf[f.head:f.tail])
		switch {
		case size < 0:
			f.broken = true
		case size > 0:
			if err := f.admit(typ, min(remaining, f.max)); err != nil {
				f.err = err
				f.head, f.tail = 0, 0
				return err
			}
			f.header, f.left, f.open = size, remaining, true
		case f.err != nil:
			return nil
		default:
			if f.head > 0 {
				f.tail = copy(f.buf[:], f.buf[f.head:f.tail])
				f.head = 0
			}
			n, err := f.r.Read(f.buf[f.tail:])
			f.tail += n
			f.err = err
			if n == 0 && err == nil {
				return nil
			}
		}
	}
	return nil
}

// parseFixedHeader reads an MQTT fixed header at the start of b: the
// packet type, its remaining length and the header's size; size 0 when b
// holds only part of one, -1 when the length is malformed (more than 4
// bytes).
func parseFixedHeader(b []byte) (typ byte, remaining, size int) {
	for i := 1; i < len(b); i++ {
		remaining |= int(b[i]&0x7f) << (7 * (i - 1))
		switch {
		case b[i]&0x80 == 0:
			return b[0] >> 4, remaining, i + 1
		case i == 4:
			return 0, 0, -1
		}
	}
	return 0, 0, 0
}

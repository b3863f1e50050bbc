// Package rfid reads RFID readers on serial ports: EM4100/EM4102 125 kHz
// modules such as the RDM6300, and UHF EPC Gen2 readers that print one read
// per text line. Repeated reads of a tag at one read point are merged over a
// window before they are reported.
package rfid

import (
	"errors"
	"fmt"
)

// RDM6300 frame bytes: STX, 10 ASCII-hex data characters (a version byte and
// a 4-byte tag id), 2 ASCII-hex checksum characters (XOR of the 5 data
// bytes), ETX.
const (
	stx         = 0x02
	etx         = 0x03
	frameBody   = 12 // hex characters between STX and ETX
	em4100Bytes = 5
)

// Errors a frame is rejected with.
var (
	ErrChecksum = errors.New("checksum mismatch")
	ErrFrame    = errors.New("malformed frame")
)

// DecodeRDM6300 decodes the 12 characters between STX and ETX into the tag id,
// 10 upper-case hex characters.
func DecodeRDM6300(body []byte) (string, error) {
	if len(body) != frameBody {
		return "", fmt.Errorf("rdm6300 frame of %d characters, want %d: %w", len(body), frameBody, ErrFrame)
	}
	var b [em4100Bytes + 1]byte
	for i := range b {
		hi, ok1 := unhex(body[2*i])
		lo, ok2 := unhex(body[2*i+1])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("rdm6300 frame: non-hex character: %w", ErrFrame)
		}
		b[i] = hi<<4 | lo
	}
	var x byte
	for _, c := range b[:em4100Bytes] {
		x ^= c
	}
	if x != b[em4100Bytes] {
		return "", fmt.Errorf("rdm6300 frame: xor %02X, frame says %02X: %w", x, b[em4100Bytes], ErrChecksum)
	}
	const digits = "0123456789ABCDEF"
	var id [2 * em4100Bytes]byte
	for i, c := range b[:em4100Bytes] {
		id[2*i], id[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(id[:]), nil
}

// EncodeRDM6300 builds the 14-byte frame an RDM6300 sends for a tag id of 10
// hex characters. firmware-sim uses it to play a reader.
func EncodeRDM6300(id string) ([]byte, error) {
	if len(id) != 2*em4100Bytes {
		return nil, fmt.Errorf("em4100 id %q: want 10 hex characters: %w", id, ErrFrame)
	}
	var x byte
	for i := 0; i < em4100Bytes; i++ {
		hi, ok1 := unhex(id[2*i])
		lo, ok2 := unhex(id[2*i+1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("em4100 id %q: non-hex character: %w", id, ErrFrame)
		}
		x ^= hi<<4 | lo
	}
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, frameBody+2)
	out = append(out, stx)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'f' {
			c -= 'a' - 'A'
		}
		out = append(out, c)
	}
	return append(out, digits[x>>4], digits[x&15], etx), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// FrameStats counts what an RDM6300 framer saw. Torn frames are those cut
// short by a new STX, a stray byte or an early ETX.
type FrameStats struct {
	Frames      uint64 // good frames
	BadChecksum uint64
	Torn        uint64
	NoiseBytes  uint64 // bytes outside any frame
}

// RDM6300Framer finds frames in a byte stream, however the reads split it.
// It is not safe for concurrent use.
type RDM6300Framer struct {
	Stats FrameStats
	buf   [frameBody]byte
	n     int
	in    bool
}

// Feed consumes p and calls emit with each good tag id. It never fails: bad
// frames and noise are counted in Stats and skipped.
func (f *RDM6300Framer) Feed(p []byte, emit func(id string)) {
	for _, c := range p {
		switch {
		case c == stx:
			if f.in {
				f.Stats.Torn++
			}
			f.in, f.n = true, 0
		case !f.in:
			f.Stats.NoiseBytes++
		case c == etx:
			f.in = false
			if f.n != frameBody {
				f.Stats.Torn++
				continue
			}
			id, err := DecodeRDM6300(f.buf[:])
			if err != nil {
				f.Stats.BadChecksum++
				continue
			}
			f.Stats.Frames++
			emit(id)
		default:
			if _, ok := unhex(c); !ok || f.n == frameBody {
				f.Stats.Torn++
				f.in = false
				continue
			}
			f.buf[f.n] = c
			f.n++
		}
	}
}

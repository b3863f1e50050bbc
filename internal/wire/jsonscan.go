package wire

import "strconv"

// scanner reads JSON for the hand-written decoders of bodies of a known
// shape (scanTelemetry): it takes the plain forms that agents write and
// declines, with ok false, whatever it does not handle exactly, so that its
// caller can take encoding/json's rules instead.
type scanner struct {
	b []byte
	i int
}

// maxSkipDepth bounds the nesting of an unknown member's value that the scanner skips.
const maxSkipDepth = 32

// object consumes an object. For each member it consumes the name and the
// ':', and member consumes the value and returns the name's bit in seen
// (-1 for an unknown name). It declines an object that has a known name
// twice.
func (s *scanner) object(member func(name []byte) (bit int, ok bool)) (seen uint32, ok bool) {
	if !s.open('{') {
		return 0, false
	}
	more, ok := s.first('}')
	for ; more; more, ok = s.next('}') {
		name, ok := s.name()
		if !ok {
			return 0, false
		}
		bit, ok := member(name)
		if !ok {
			return 0, false
		}
		if bit >= 0 {
			if seen&(1<<bit) != 0 {
				return 0, false
			}
			seen |= 1 << bit
		}
	}
	return seen, ok
}

// list consumes an array, gathering its elements in scratch (elem decodes
// the i-th), and returns them in a slice of their own of their exact length.
// (elem returns an element rather than decoding into scratch, which would
// move the scanner and its scratch to the heap.)
func list[T any](s *scanner, scratch []T, elem func(i int) (T, bool)) ([]T, bool) {
	if !s.open('[') {
		return nil, false
	}
	buf := scratch[:0]
	more, ok := s.first(']')
	for ; more; more, ok = s.next(']') {
		v, ok := elem(len(buf))
		if !ok {
			return nil, false
		}
		buf = append(buf, v)
	}
	if !ok {
		return nil, false
	}
	out := make([]T, len(buf))
	copy(out, buf)
	return out, true
}

// space skips JSON whitespace.
func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// open consumes c ('{' or '[') and the whitespace after it.
func (s *scanner) open(c byte) bool {
	if s.i >= len(s.b) || s.b[s.i] != c {
		return false
	}
	s.i++
	s.space()
	return true
}

// first reports whether an object or array just opened has a first member,
// consuming its end if not.
func (s *scanner) first(end byte) (more, ok bool) {
	if s.i < len(s.b) && s.b[s.i] == end {
		s.i++
		return false, true
	}
	return true, true
}

// next consumes the ',' before another member, or the end.
func (s *scanner) next(end byte) (more, ok bool) {
	s.space()
	if s.i >= len(s.b) {
		return false, false
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		s.space()
		return true, true
	case end:
		s.i++
		return false, true
	}
	return false, false
}

// name consumes a member's name and the ':' after it, with the whitespace
// around it.
func (s *scanner) name() ([]byte, bool) {
	name, ok := s.quoted()
	if !ok {
		return nil, false
	}
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		return nil, false
	}
	s.i++
	s.space()
	return name, true
}

// quoted consumes a string of printable ASCII without escapes and returns
// its bytes between the quotes.
func (s *scanner) quoted() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	j := s.i + 1
	for j < len(s.b) && plain[s.b[j]] {
		j++
	}
	if j == len(s.b) || s.b[j] != '"' {
		return nil, false
	}
	raw := s.b[s.i+1 : j]
	s.i = j + 1
	return raw, true
}

// plain says which bytes quoted takes inside a string: printable ASCII but
// '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *scanner) str() (string, bool) {
	raw, ok := s.quoted()
	return string(raw), ok
}

// strLike is str, or like without an allocation if the string is equal.
func (s *scanner) strLike(like string) (string, bool) {
	raw, ok := s.quoted()
	if ok && string(raw) == like {
		return like, true
	}
	return string(raw), ok
}

func (s *scanner) bool() (bool, bool) {
	switch {
	case s.literal("true"):
		return true, true
	case s.literal("false"):
		return false, true
	}
	return false, false
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// number consumes a JSON number and returns its text, and whether it is an
// integer (no fraction, no exponent).
func (s *scanner) number() (lit []byte, integer, ok bool) {
	b, j := s.b, s.i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		for j++; j < len(b) && isDigit(b[j]); j++ {
		}
	default:
		return nil, false, false
	}
	integer = true
	if j < len(b) && b[j] == '.' {
		integer = false
		j++
		if j >= len(b) || !isDigit(b[j]) {
			return nil, false, false
		}
		for j++; j < len(b) && isDigit(b[j]); j++ {
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		integer = false
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j >= len(b) || !isDigit(b[j]) {
			return nil, false, false
		}
		for j++; j < len(b) && isDigit(b[j]); j++ {
		}
	}
	lit, s.i = b[s.i:j], j
	return lit, integer, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits is the value of the decimal digits of a JSON number (no leading
// zero), or false if it does not fit a uint64.
func digits(d []byte) (uint64, bool) {
	const max = "18446744073709551615" // 1<<64 - 1
	if len(d) > len(max) || len(d) == len(max) && string(d) > max {
		return 0, false
	}
	var n uint64
	for _, c := range d {
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func (s *scanner) uint() (uint64, bool) {
	lit, integer, ok := s.number()
	if !ok || !integer || lit[0] == '-' {
		return 0, false
	}
	return digits(lit)
}

func (s *scanner) int() (int, bool) {
	lit, integer, ok := s.number()
	if !ok || !integer {
		return 0, false
	}
	if lit[0] != '-' {
		n, ok := digits(lit)
		if !ok || n > 1<<63-1 {
			return 0, false
		}
		return int(n), true
	}
	n, ok := digits(lit[1:])
	if !ok || n == 0 || n > 1<<63 {
		return 0, false
	}
	return int(-int64(n)), true
}

func (s *scanner) float() (float64, bool) {
	lit, integer, ok := s.number()
	if !ok {
		return 0, false
	}
	if integer && lit[0] != '-' && len(lit) <= 15 {
		n, _ := digits(lit)
		return float64(n), true // exact: below 2^53
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	return f, err == nil
}

// skip consumes a well-formed JSON value of an unknown member, declining
// what quoted declines and nesting deeper than maxSkipDepth.
func (s *scanner) skip(depth int) bool {
	if s.i >= len(s.b) || depth > maxSkipDepth {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.quoted()
		return ok
	case '{':
		s.i++
		s.space()
		more, ok := s.first('}')
		for ; more; more, ok = s.next('}') {
			if _, ok := s.name(); !ok || !s.skip(depth+1) {
				return false
			}
		}
		return ok
	case '[':
		s.i++
		s.space()
		more, ok := s.first(']')
		for ; more; more, ok = s.next(']') {
			if !s.skip(depth + 1) {
				return false
			}
		}
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	_, _, ok := s.number()
	return ok
}

// foldsToAny reports whether name might name one of the known members under
// encoding/json's matching: equal to one, ignoring ASCII case, '_' and '-'
// (the scanner has already declined names with other bytes than ASCII).
func foldsToAny(name []byte, known ...string) bool {
	for _, k := range known {
		if foldsTo(name, k) {
			return true
		}
	}
	return false
}

func foldsTo(name []byte, known string) bool {
	i, j := 0, 0
	for {
		for i < len(name) && (name[i] == '_' || name[i] == '-') {
			i++
		}
		for j < len(known) && (known[j] == '_' || known[j] == '-') {
			j++
		}
		if i == len(name) || j == len(known) {
			return i == len(name) && j == len(known)
		}
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != known[j] {
			return false
		}
		i++
		j++
	}
}

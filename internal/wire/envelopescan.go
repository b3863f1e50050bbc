package wire

import "encoding/base64"

// envelopeNames are Envelope's JSON names.
var envelopeNames = [...]string{"v", "gw", "epoch", "seq", "ts", "kind", "body", "sig"}

// scanEnvelope is Decode's fast path, as scanTelemetry is DecodeTelemetry's:
// one pass over an envelope with no reflection, giving what fastjson gives
// or ok false, and then Decode takes fastjson's path. Besides what the
// scanner declines everywhere, it declines a body that is not an object and
// a sig that is empty or not padded standard base64. The body is checked to
// be well-formed JSON (skipped as an unknown member is); it is a slice of data.
func scanEnvelope(data []byte) (e Envelope, ok bool) {
	s := scanner{b: data}
	s.space()
	_, ok = s.object(func(name []byte) (bit int, ok bool) {
		switch string(name) {
		case "v":
			e.V, ok = s.int()
			return 0, ok
		case "gw":
			e.Gateway, ok = s.str()
			return 1, ok
		case "epoch":
			e.Epoch, ok = s.uint()
			return 2, ok
		case "seq":
			e.Seq, ok = s.uint()
			return 3, ok
		case "ts":
			e.TS, ok = s.str()
			return 4, ok
		case "kind":
			e.Kind, ok = s.kind()
			return 5, ok
		case "body":
			e.Body, ok = s.objectRaw()
			return 6, ok
		case "sig":
			e.Sig, ok = s.base64()
			return 7, ok
		}
		return -1, !foldsToAny(name, envelopeNames[:]...) && s.skip(0)
	})
	s.space()
	if !ok || s.i != len(s.b) {
		return Envelope{}, false
	}
	return e, true
}

// kind is str, without an allocation for a known kind.
func (s *scanner) kind() (Kind, bool) {
	raw, ok := s.quoted()
	for _, k := range Kinds {
		if string(raw) == string(k) {
			return k, ok
		}
	}
	return Kind(raw), ok
}

// objectRaw consumes an object and returns its bytes, a slice of the
// input: not a copy (up to 64 KB a message), as Decode documents.
func (s *scanner) objectRaw() ([]byte, bool) {
	start := s.i
	if s.i >= len(s.b) || s.b[s.i] != '{' || !s.skip(0) {
		return nil, false
	}
	return s.b[start:s.i:s.i], true
}

// base64 consumes a string of standard, padded base64 and returns its bytes.
func (s *scanner) base64() ([]byte, bool) {
	raw, ok := s.quoted()
	if !ok || len(raw) == 0 {
		return nil, false
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
	n, err := base64.StdEncoding.Decode(out, raw)
	return out[:n], err == nil
}

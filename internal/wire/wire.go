// Package wire is the contract between edge agents and twin-service: the
// MQTT topics, the signed envelope and the bodies it carries. Topic strings
// and payload shapes exist here and nowhere else.
//
// An envelope is JSON:
//
//	{"v":1,"gw":"gw-s1-01","epoch":1234,"seq":42,"ts":"2026-11-25T15:00:00Z","kind":"telemetry","body":{...},"sig":"base64"}
//
// The signature is Ed25519 by the gateway's key over the signing bytes: the
// domain string "twinchain-envelope-v2" and the version, gateway, epoch,
// sequence, the exact text of ts, the kind and the body's exact bytes, joined
// by NUL bytes. The body and ts are signed as transmitted, so a receiver
// never re-encodes JSON or a time to check a signature, and unknown body
// fields survive untouched.
//
// The epoch is KeyEpoch of the gateway's public key: a re-keyed or
// reinstalled agent starts a new sequence stream at 1, and twin-service keeps
// one sequence window per gateway and epoch.
package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"twinchain/internal/fastjson"
)

// Version is the protocol version carried in every envelope and topic.
const Version = 1

// MaxEnvelopeSize is the largest envelope twin-service accepts, in bytes.
const MaxEnvelopeSize = 256 << 10

// Kind says what an envelope's body is.
type Kind string

// The kinds of message a gateway sends.
const (
	KindTelemetry Kind = "telemetry" // Telemetry: one or more sampling instants of a host's GPUs
	KindFirmware  Kind = "firmware"  // Inventory: host and GPU identity and firmware
	KindRFID      Kind = "rfid"      // RFID: merged tag reads
	KindGPS       Kind = "gps"       // GPSFix: one position report
	KindStatus    Kind = "status"    // Status: gateway online/offline, queue, drops
	KindWorkloads Kind = "workloads" // Workloads: the processes on a host's GPUs and the artifacts they run
)

// Kinds lists every kind, in a fixed order.
var Kinds = []Kind{KindTelemetry, KindFirmware, KindRFID, KindGPS, KindStatus, KindWorkloads}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	switch k {
	case KindTelemetry, KindFirmware, KindRFID, KindGPS, KindStatus, KindWorkloads:
		return true
	}
	return false
}

// Errors returned by Decode and Verify. Callers count rejections by these.
var (
	ErrOversize     = errors.New("envelope too large")
	ErrMalformed    = errors.New("malformed envelope")
	ErrVersion      = errors.New("unsupported protocol version")
	ErrBadSignature = errors.New("bad signature")
	ErrBadGatewayID = errors.New("invalid gateway id")
	ErrEpoch        = errors.New("epoch is not the key's")
)

// Envelope is one signed, sequenced message from a gateway.
type Envelope struct {
	V       int    `json:"v"`
	Gateway string `json:"gw"`
	Epoch   uint64 `json:"epoch"` // KeyEpoch of the signing key
	Seq     uint64 `json:"seq"`
	// TS is the reading time as sent (RFC 3339); the signature covers this
	// exact text. Decode parses it into Time.
	TS   string          `json:"ts"`
	Time time.Time       `json:"-"`
	Kind Kind            `json:"kind"`
	Body json.RawMessage `json:"body"`
	Sig  []byte          `json:"sig"`
}

// KeyEpoch is the epoch of envelopes signed by pub: the first 8 bytes
// (big-endian) of SHA-256("twinchain-epoch" || pub). A new key is a new
// epoch, so a re-keyed agent's sequence numbers start a new stream.
func KeyEpoch(pub ed25519.PublicKey) uint64 {
	var buf [len(epochDomain) + ed25519.PublicKeySize]byte // no heap allocation per message
	n := copy(buf[:], epochDomain)
	n += copy(buf[n:], pub)
	sum := sha256.Sum256(buf[:n])
	return binary.BigEndian.Uint64(sum[:8])
}

const epochDomain = "twinchain-epoch"

// ValidGatewayID reports whether id may name a gateway: 1 to 64 characters
// from [A-Za-z0-9._-], starting with a letter or digit. Such an id is safe in
// a topic level, a URL path segment and a file name.
func ValidGatewayID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

const signingDomain = "twinchain-envelope-v2"

// AppendSigningBytes appends the bytes the signature covers to dst.
func (e *Envelope) AppendSigningBytes(dst []byte) []byte {
	return append(e.appendSigningHeader(dst), e.Body...)
}

// appendSigningHeader appends the signed bytes before the body.
func (e *Envelope) appendSigningHeader(dst []byte) []byte {
	dst = append(dst, signingDomain...)
	dst = append(dst, 0)
	dst = strconv.AppendInt(dst, int64(e.V), 10)
	dst = append(dst, 0)
	dst = append(dst, e.Gateway...)
	dst = append(dst, 0)
	dst = strconv.AppendUint(dst, e.Epoch, 10)
	dst = append(dst, 0)
	dst = strconv.AppendUint(dst, e.Seq, 10)
	dst = append(dst, 0)
	dst = append(dst, e.TS...)
	dst = append(dst, 0)
	dst = append(dst, e.Kind...)
	return append(dst, 0)
}

// Verify checks the envelope's signature against the gateway's public key,
// and that its epoch is the key's (ErrBadSignature and ErrEpoch).
func (e *Envelope) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize || len(e.Sig) != ed25519.SignatureSize {
		return ErrBadSignature
	}
	if want := KeyEpoch(pub); e.Epoch != want {
		return fmt.Errorf("%w: %w: epoch %d, the key's is %d", ErrBadSignature, ErrEpoch, e.Epoch, want)
	}
	if !verifyEd25519(pub, e, e.Sig) {
		return ErrBadSignature
	}
	return nil
}

// Seal builds and signs an envelope around body and returns its wire bytes.
// body is marshalled with encoding/json; ts is written to the nanosecond in
// UTC (RFC 3339) and the epoch is the key's.
func Seal(key ed25519.PrivateKey, gateway string, seq uint64, ts time.Time, kind Kind, body any) ([]byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("marshal %s body: %w", kind, err)
	}
	return SealRaw(key, gateway, seq, ts, kind, raw)
}

// SealRaw is Seal for a body that is already JSON. The body is compacted
// first, so the bytes signed are the bytes sent.
func SealRaw(key ed25519.PrivateKey, gateway string, seq uint64, ts time.Time, kind Kind, body []byte) ([]byte, error) {
	if !ValidGatewayID(gateway) {
		return nil, fmt.Errorf("seal %q: %w", gateway, ErrBadGatewayID)
	}
	if !kind.Valid() {
		return nil, fmt.Errorf("seal kind %q: %w", kind, ErrMalformed)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, fmt.Errorf("seal body: %w", err)
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	e := Envelope{V: Version, Gateway: gateway, Epoch: KeyEpoch(pub), Seq: seq, TS: ts.UTC().Format(time.RFC3339Nano), Kind: kind, Body: compact.Bytes()}
	e.Sig = ed25519.Sign(key, e.AppendSigningBytes(nil))
	out, err := json.Marshal(&e)
	if err != nil {
		return nil, fmt.Errorf("marshal envelope: %w", err)
	}
	return out, nil
}

// Decode parses an envelope and checks its shape, not its signature. Unknown
// envelope fields are ignored. Envelopes of the plain form agents send take
// a hand-written scanner (scanEnvelope); any other takes encoding/json's
// rules, with the same values and errors either way. The envelope's Body
// may be a slice of data: data must not change while the envelope is used
// (every caller decodes bytes it keeps as they are: a received payload, a
// stored message).
func Decode(data []byte) (Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return Envelope{}, fmt.Errorf("%d bytes: %w", len(data), ErrOversize)
	}
	e, ok := scanEnvelope(data)
	if !ok {
		if err := fastjson.Unmarshal(data, &e); err != nil {
			return e, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if e.V != Version {
		return e, fmt.Errorf("version %d: %w", e.V, ErrVersion)
	}
	if !ValidGatewayID(e.Gateway) {
		return e, fmt.Errorf("gateway %q: %w", e.Gateway, ErrBadGatewayID)
	}
	if !e.Kind.Valid() {
		return e, fmt.Errorf("%w: unknown kind %q", ErrMalformed, e.Kind)
	}
	if e.Seq == 0 && !(e.Kind == KindStatus) {
		return e, fmt.Errorf("%w: sequence 0 is only for a last-will status", ErrMalformed)
	}
	if len(e.Body) == 0 || e.Body[0] != '{' {
		return e, fmt.Errorf("%w: body must be a JSON object", ErrMalformed)
	}
	if e.TS == "" {
		return e, fmt.Errorf("%w: missing ts", ErrMalformed)
	}
	t, err := time.Parse(time.RFC3339Nano, e.TS)
	if err != nil || t.IsZero() {
		return e, fmt.Errorf("%w: ts %q is not an RFC 3339 time", ErrMalformed, e.TS)
	}
	e.Time = t
	if e.Epoch == 0 {
		return e, fmt.Errorf("%w: missing epoch", ErrMalformed)
	}
	if len(e.Sig) == 0 {
		return e, fmt.Errorf("%w: missing sig", ErrMalformed)
	}
	return e, nil
}

// DecodeBody unmarshals an envelope's body into T, ignoring unknown fields.
func DecodeBody[T any](e *Envelope) (T, error) {
	var v T
	if err := fastjson.Unmarshal(e.Body, &v); err != nil {
		return v, fmt.Errorf("%w: %s body: %v", ErrMalformed, e.Kind, err)
	}
	return v, nil
}

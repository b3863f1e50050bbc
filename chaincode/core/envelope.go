package core

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The core checks gateway envelopes itself. It cannot import twin-service's
// wire package (this is a separate module), so this file restates the wire
// contract's envelope and signing bytes exactly; the golden vectors of
// internal/wire/testdata are checked here by a test, so the two cannot drift.

const (
	envelopeVersion    = 1
	maxEnvelopeSize    = 256 << 10
	envelopeSigDomain  = "twinchain-envelope-v2"
	envelopeStatusKind = "status"
)

// Envelope is a gateway's signed message as the wire contract defines it.
type Envelope struct {
	V       int             `json:"v"`
	Gateway string          `json:"gw"`
	Epoch   uint64          `json:"epoch"`
	Seq     uint64          `json:"seq"`
	TS      string          `json:"ts"` // signed as this exact text
	Time    time.Time       `json:"-"`  // TS parsed by ParseEnvelope
	Kind    string          `json:"kind"`
	Body    json.RawMessage `json:"body"`
	Sig     []byte          `json:"sig"`
}

// keyEpoch is the epoch of envelopes signed by pub: the first 8 bytes
// (big-endian) of SHA-256("twinchain-epoch" || pub).
func keyEpoch(pub ed25519.PublicKey) uint64 {
	sum := sha256.Sum256(append([]byte("twinchain-epoch"), pub...))
	return binary.BigEndian.Uint64(sum[:8])
}

// SigningBytes returns the bytes an envelope's signature covers: the domain
// string and the version, gateway, epoch, sequence, the exact text of ts,
// kind and the body's exact bytes, joined by NUL bytes.
func (e *Envelope) SigningBytes() []byte {
	b := make([]byte, 0, len(envelopeSigDomain)+len(e.Gateway)+len(e.TS)+len(e.Kind)+len(e.Body)+64)
	b = append(b, envelopeSigDomain...)
	b = strconv.AppendInt(append(b, 0), int64(e.V), 10)
	b = append(append(b, 0), e.Gateway...)
	b = strconv.AppendUint(append(b, 0), e.Epoch, 10)
	b = strconv.AppendUint(append(b, 0), e.Seq, 10)
	b = append(append(b, 0), e.TS...)
	b = append(append(b, 0), e.Kind...)
	return append(append(b, 0), e.Body...)
}

func validEnvelopeKind(k string) bool {
	switch k {
	case "telemetry", "firmware", "rfid", "gps", envelopeStatusKind, "workloads":
		return true
	}
	return false
}

// ParseEnvelope decodes an envelope and checks its shape as the wire
// contract does, not its signature.
func ParseEnvelope(data []byte) (Envelope, error) {
	var e Envelope
	if len(data) > maxEnvelopeSize {
		return e, fmt.Errorf("envelope of %d bytes: %w", len(data), ErrInvalid)
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("envelope: %v: %w", err, ErrInvalid)
	}
	switch {
	case e.V != envelopeVersion:
		return e, fmt.Errorf("envelope version %d: %w", e.V, ErrInvalid)
	case !ValidID(e.Gateway) || len(e.Gateway) > 64 || strings.Contains(e.Gateway, ":"):
		return e, fmt.Errorf("envelope gateway %q: %w", e.Gateway, ErrInvalid)
	case !validEnvelopeKind(e.Kind):
		return e, fmt.Errorf("envelope kind %q: %w", e.Kind, ErrInvalid)
	case e.Seq == 0 && e.Kind != envelopeStatusKind:
		return e, fmt.Errorf("envelope sequence 0 is only for a last-will status: %w", ErrInvalid)
	case len(e.Body) == 0 || e.Body[0] != '{':
		return e, fmt.Errorf("envelope body must be a JSON object: %w", ErrInvalid)
	case e.TS == "":
		return e, fmt.Errorf("envelope without ts: %w", ErrInvalid)
	case e.Epoch == 0:
		return e, fmt.Errorf("envelope without epoch: %w", ErrInvalid)
	case len(e.Sig) != ed25519.SignatureSize:
		return e, fmt.Errorf("envelope signature of %d bytes: %w", len(e.Sig), ErrInvalid)
	}
	t, err := time.Parse(time.RFC3339Nano, e.TS)
	if err != nil || t.IsZero() {
		return e, fmt.Errorf("envelope ts %q is not an RFC 3339 time: %w", e.TS, ErrInvalid)
	}
	e.Time = t
	return e, nil
}

// Verify checks the envelope's signature against an Ed25519 public key, and
// that its epoch is the key's.
func (e *Envelope) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, e.SigningBytes(), e.Sig) {
		return fmt.Errorf("envelope %s/%d: bad signature: %w", e.Gateway, e.Seq, ErrInvalid)
	}
	if e.Epoch != keyEpoch(pub) {
		return fmt.Errorf("envelope %s/%d: epoch %d is not the key's: %w", e.Gateway, e.Seq, e.Epoch, ErrInvalid)
	}
	return nil
}

// envelopeBody holds the parts of the wire bodies the core looks at: which
// assets a body names and the health counters of telemetry samples.
// Telemetry of several sampling instants carries its GPUs in samples[].gpus
// (twinchain's wire.Telemetry); decodeEnvelopeBody gathers them into GPUs,
// so a body names or shows what any of its samples names or shows.
type envelopeBody struct {
	Host    json.RawMessage `json:"host"` // telemetry: a string; firmware: an object
	GPUs    []bodyGPU       `json:"gpus"`
	Samples []struct {
		GPUs []bodyGPU `json:"gpus"`
	} `json:"samples"`
	Asset string `json:"asset"` // gps
}

type bodyGPU struct {
	Asset           string `json:"asset"`
	ECCDoubleBit    uint64 `json:"ecc_dbe"`
	LastXID         int    `json:"last_xid"`
	XIDCount        uint64 `json:"xid_count"`
	RowRemapFailure bool   `json:"row_remap_failure"`
}

// decodeEnvelopeBody decodes an envelope's body, its samples' GPUs
// gathered into GPUs.
func decodeEnvelopeBody(data []byte) (envelopeBody, error) {
	var b envelopeBody
	if err := json.Unmarshal(data, &b); err != nil {
		return b, err
	}
	for _, s := range b.Samples {
		b.GPUs = append(b.GPUs, s.GPUs...)
	}
	b.Samples = nil
	return b, nil
}

// names reports whether the body names asset (as the host, a GPU or the gps
// receiver's asset).
func (b *envelopeBody) names(asset string) bool {
	if b.Asset == asset {
		return true
	}
	var host string
	if json.Unmarshal(b.Host, &host) == nil && host == asset {
		return true
	}
	var hostObj struct {
		Asset string `json:"asset"`
	}
	if json.Unmarshal(b.Host, &hostObj) == nil && hostObj.Asset == asset {
		return true
	}
	for _, g := range b.GPUs {
		if g.Asset == asset {
			return true
		}
	}
	return false
}

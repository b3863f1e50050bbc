package core

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wireTestdata is internal/wire's golden vectors, signed by the root
// module's wire package. Checking them here pins this module's copy of the
// envelope format and signing bytes to the real one.
const wireTestdata = "../../internal/wire/testdata"

func goldenKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(wireTestdata, "key.pub.hex"))
	if err != nil {
		t.Fatalf("read golden key: %v", err)
	}
	pub, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("golden key %q: %v", b, err)
	}
	return pub
}

func goldenEnvelopes(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(wireTestdata, "*.golden.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden vectors in %s: %v", wireTestdata, err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".golden.json")] = bytes.TrimSpace(b)
	}
	return out
}

func TestWireGoldenVectors(t *testing.T) {
	pub := goldenKey(t)
	for name, raw := range goldenEnvelopes(t) {
		t.Run(name, func(t *testing.T) {
			e, err := ParseEnvelope(raw)
			if err != nil {
				t.Fatalf("ParseEnvelope(%s) = %v, want nil", name, err)
			}
			if kind, _, _ := strings.Cut(name, "_"); e.Kind != kind { // telemetry_samples: a telemetry envelope
				t.Errorf("ParseEnvelope(%s).Kind = %q, want %q", name, e.Kind, kind)
			}
			if err := e.Verify(pub); err != nil {
				t.Errorf("Verify(%s) = %v, want nil", name, err)
			}
			// The signature covers the text of ts: the same instant
			// written otherwise does not verify.
			e2 := e
			e2.TS = e.Time.Format("2006-01-02T15:04:05.999999999-07:00")
			if err := e2.Verify(pub); !errors.Is(err, ErrInvalid) || e2.TS == e.TS {
				t.Errorf("Verify(%s with ts %q) = %v, want ErrInvalid", name, e2.TS, err)
			}
			// One flipped body byte must break the signature.
			e.Body = bytes.Replace(e.Body, []byte(`"`), []byte(`'`), 1)
			if err := e.Verify(pub); !errors.Is(err, ErrInvalid) {
				t.Errorf("Verify(%s with a changed body) = %v, want ErrInvalid", name, err)
			}
		})
	}
}

func TestParseEnvelopeRefusals(t *testing.T) {
	raw := goldenEnvelopes(t)["firmware"]
	tests := []struct {
		name string
		from string
		to   string
	}{
		{"version", `"v":1`, `"v":2`},
		{"gateway", `"gw":"gw-s1-01"`, `"gw":"-bad"`},
		{"gateway with colon", `"gw":"gw-s1-01"`, `"gw":"gw:1"`},
		{"kind", `"kind":"firmware"`, `"kind":"video"`},
		{"seq zero", `"seq":42`, `"seq":0`},
		{"body not object", `"body":{`, `"body":[{`},
		{"no time", `"ts":"2026-11-25T12:00:00.123456789Z",`, ``},
		{"time not a time", `"ts":"2026-11-25T12:00:00.123456789Z"`, `"ts":"yesterday"`},
		{"no epoch", `"epoch":`, `"xepoch":`},
		{"short sig", `"sig":"`, `"sig":"AAAA`},
		{"not json", `{"v"`, `["v"`},
	}
	for _, tt := range tests {
		in := bytes.Replace(raw, []byte(tt.from), []byte(tt.to), 1)
		if bytes.Equal(in, raw) {
			t.Fatalf("%s: replacement %q not found", tt.name, tt.from)
		}
		if _, err := ParseEnvelope(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseEnvelope(%s) = %v, want ErrInvalid", tt.name, err)
		}
	}
	big := append(bytes.Repeat([]byte(" "), maxEnvelopeSize), raw...)
	if _, err := ParseEnvelope(big); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseEnvelope(oversize) = %v, want ErrInvalid", err)
	}
}

func FuzzParseEnvelope(f *testing.F) {
	for _, name := range []string{"telemetry", "firmware", "rfid", "gps", "status"} {
		b, err := os.ReadFile(filepath.Join(wireTestdata, name+".golden.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnvelope(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseEnvelope error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !ValidID(e.Gateway) || len(e.Sig) != ed25519.SignatureSize {
			t.Fatalf("ParseEnvelope accepted %q", data)
		}
		var body envelopeBody
		_ = checkEvidenceBody(EvidenceQuarantine, e.Gateway, &e)
		_ = body.names(e.Gateway)
	})
}

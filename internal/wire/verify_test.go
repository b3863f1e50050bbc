package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
)

// ed25519Order is the order L of the Ed25519 base point, little-endian:
// S + L is the non-canonical twin of a signature's S, which both
// verifications must refuse.
var ed25519Order = [32]byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 31: 0x10}

// addOrder returns s + L (little-endian, 256 bits, carry dropped).
func addOrder(s []byte) []byte {
	out := make([]byte, 32)
	carry := 0
	for i := range out {
		v := int(s[i]) + int(ed25519Order[i]) + carry
		out[i], carry = byte(v), v>>8
	}
	return out
}

// FuzzVerifyEd25519 checks verifyEd25519 against crypto/ed25519.Verify on the
// same envelope: signed by a key from the seed, then with the signature,
// the key or the body changed as the fuzzer likes. The two must agree on
// every input, valid or not.
func FuzzVerifyEd25519(f *testing.F) {
	f.Add([]byte("seed"), "gw-a", uint64(7), []byte(`{"host":"h"}`), uint8(0), uint8(0), uint8(0), []byte(nil))
	f.Add([]byte("seed"), "gw-a", uint64(7), []byte(`{"host":"h"}`), uint8(1), uint8(3), uint8(0x80), []byte(nil))
	f.Add([]byte("other"), "gw-b", uint64(1), []byte(`{}`), uint8(2), uint8(40), uint8(1), []byte(nil))
	f.Add([]byte("other"), "gw-b", uint64(1), []byte(`{}`), uint8(3), uint8(0), uint8(0), []byte(nil)) // S + L
	f.Add([]byte("k"), "gw-c", uint64(2), []byte(`{"a":1}`), uint8(4), uint8(0), uint8(0), make([]byte, 32))
	f.Add([]byte("k"), "gw-c", uint64(2), []byte(`{"a":1}`), uint8(4), uint8(0), uint8(0), []byte{1: 0, 31: 0x80}) // a key off the curve
	f.Add([]byte("k"), "gw-c", uint64(2), []byte(`{"a":1}`), uint8(5), uint8(9), uint8(4), []byte(nil))
	f.Fuzz(func(t *testing.T, seed []byte, gw string, seq uint64, body []byte, how, at, x uint8, other []byte) {
		s := sha256.Sum256(seed)
		key := ed25519.NewKeyFromSeed(s[:])
		pub := key.Public().(ed25519.PublicKey)
		e := Envelope{V: Version, Gateway: gw, Epoch: KeyEpoch(pub), Seq: seq, TS: "2026-12-06T23:00:00Z", Kind: KindTelemetry, Body: body}
		sig := ed25519.Sign(key, e.AppendSigningBytes(nil))
		switch how % 6 {
		case 1: // a bit of the signature
			sig[int(at)%len(sig)] ^= x | 1
		case 2: // the body, after signing
			if len(e.Body) > 0 {
				e.Body = append([]byte(nil), e.Body...)
				e.Body[int(at)%len(e.Body)] ^= x | 1
			}
		case 3: // the same S, not reduced
			sig = append(sig[:32:32], addOrder(sig[32:])...)
		case 4: // another 32-byte key, maybe not a point at all
			if len(other) == ed25519.PublicKeySize {
				pub = other
			}
		case 5: // the header: the sequence number
			e.Seq += uint64(x) + 1
			if binary.BigEndian.Uint64(s[:8])%2 == 0 {
				e.Kind = KindGPS
			}
		}
		want := ed25519.Verify(pub, e.AppendSigningBytes(nil), sig)
		if got := verifyEd25519(pub, &e, sig); got != want {
			t.Fatalf("verifyEd25519 = %v, ed25519.Verify = %v (case %d)", got, want, how%6)
		}
	})
}

// TestVerifyNoCopy checks that verifying a several-sample telemetry
// envelope allocates next to nothing: the signed bytes are hashed where
// they lie, not copied.
func TestVerifyNoCopy(t *testing.T) {
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	body := make([]byte, 0, 30000)
	body = append(body, `{"host":"h","pad":"`...)
	for len(body) < 28000 {
		body = append(body, 'x')
	}
	body = append(body, `"}`...)
	e := Envelope{V: Version, Gateway: "gw-a", Epoch: KeyEpoch(pub), Seq: 1, TS: "2026-12-06T23:00:00Z", Kind: KindTelemetry, Body: body}
	e.Sig = ed25519.Sign(key, e.AppendSigningBytes(nil))
	verify := func() {
		if err := e.Verify(pub); err != nil {
			t.Fatal(err)
		}
	}
	verify() // first-use allocations (the hash's tables) are not the body
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 20
	for range runs {
		verify()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 2048 {
		t.Errorf("Verify of a %d-byte body allocates %d bytes, want under 2 KB: the signed bytes are copied", len(body), per)
	}
}

// BenchmarkVerify compares crypto/ed25519.Verify over the signed bytes
// built into one buffer of the right size (what Verify did) with
// verifyEd25519, on envelopes of 10 samples and of one sample of 8 GPUs.
func BenchmarkVerify(b *testing.B) {
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	for _, n := range []int{10, 1} {
		e, err := Decode(benchTelemetry(b, n))
		if err != nil {
			b.Fatal(err)
		}
		benchDecode(b, fmt.Sprintf("%dx8/copy", n), len(e.Body), func() error {
			msg := e.AppendSigningBytes(make([]byte, 0, len(e.Body)+256))
			if !ed25519.Verify(pub, msg, e.Sig) {
				return ErrBadSignature
			}
			return nil
		})
		benchDecode(b, fmt.Sprintf("%dx8/stream", n), len(e.Body), func() error {
			if !verifyEd25519(pub, &e, e.Sig) {
				return ErrBadSignature
			}
			return nil
		})
	}
}

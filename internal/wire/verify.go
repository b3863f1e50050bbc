package wire

import (
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"

	"filippo.io/edwards25519"
)

// verifyEd25519 is ed25519.Verify(pub, e.AppendSigningBytes(nil), sig)
// without building the signed message: the signing header and the body are
// hashed where they lie, so a 26 KB body is not copied once more per
// message. It is crypto/ed25519's verification step for step (RFC 8032
// 5.1.7, cofactorless, S canonical, the public key on the curve), on
// filippo.io/edwards25519, the standard library's own point arithmetic;
// FuzzVerifyEd25519 checks that the two agree.
func verifyEd25519(pub ed25519.PublicKey, e *Envelope, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return false
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	var head [256]byte // the header of any envelope Decode accepts fits: no allocation for it
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(pub)
	h.Write(e.appendSigningHeader(head[:0]))
	h.Write(e.Body)
	var digest [sha512.Size]byte
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		panic("wire: a 64-byte digest is not a uniform scalar: " + err.Error())
	}
	// [S]B = R + [k]A, so R = [k](-A) + [S]B.
	r := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, a.Negate(a), s)
	return subtle.ConstantTimeCompare(sig[:32], r.Bytes()) == 1
}

package wire

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A gateway proves who it is to an MQTT broker in one of two ways:
//
//   - a TLS client certificate issued at enrollment on its Ed25519 key, whose
//     URI SAN is GatewayURI(id) (and whose common name is the id);
//   - a connect password signed by its Ed25519 key: username = gateway id,
//     client id = gateway id, password = ConnectPassword(key, id, now):
//
//	tc1:{unix nanoseconds}:{base64url (no padding) of the Ed25519 signature}
//
// signed over ConnectSigningBytes(id, ns). twin-service's broker accepts a
// password whose time is within ConnectWindow of its clock, once.

// ConnectWindow is how far a connect password's time may be from the
// broker's clock, either way.
const ConnectWindow = 5 * time.Minute

// connectPrefix starts every connect password.
const connectPrefix = "tc1:"

// MaxConnectPassword is the longest well-formed connect password.
const MaxConnectPassword = len(connectPrefix) + 20 + 1 + 86

// Errors of VerifyConnectPassword.
var (
	ErrConnectMalformed = errors.New("malformed connect password")
	ErrConnectExpired   = errors.New("connect password outside its time window")
	ErrConnectSignature = errors.New("connect password signature does not match the gateway key")
)

// gatewayURIPrefix starts the URI SAN of a gateway's client certificate.
const gatewayURIPrefix = "urn:twinchain:gateway:"

// GatewayURI is the URI SAN of gateway id's client certificate.
func GatewayURI(id string) string { return gatewayURIPrefix + id }

// GatewayFromURI returns the gateway id a certificate URI SAN names.
func GatewayFromURI(uri string) (string, bool) {
	id, ok := strings.CutPrefix(uri, gatewayURIPrefix)
	if !ok || !ValidGatewayID(id) {
		return "", false
	}
	return id, true
}

// ConnectSigningBytes is what a gateway signs to connect at ns (Unix
// nanoseconds).
func ConnectSigningBytes(gateway string, ns int64) []byte {
	b := make([]byte, 0, 32+len(gateway)+20)
	b = append(b, "twinchain-mqtt-connect-v1\x00"...)
	b = append(append(b, gateway...), 0)
	return strconv.AppendInt(b, ns, 10)
}

// ConnectPassword is gateway's MQTT password at now.
func ConnectPassword(key ed25519.PrivateKey, gateway string, now time.Time) string {
	ns := now.UnixNano()
	sig := ed25519.Sign(key, ConnectSigningBytes(gateway, ns))
	return connectPrefix + strconv.FormatInt(ns, 10) + ":" + base64.RawURLEncoding.EncodeToString(sig)
}

// IsConnectPassword reports whether password has the form of a connect
// password (not whether it verifies).
func IsConnectPassword(password []byte) bool {
	return strings.HasPrefix(string(password), connectPrefix)
}

// ParseConnectPassword splits a connect password into its time (Unix
// nanoseconds) and signature.
func ParseConnectPassword(password []byte) (ns int64, sig []byte, err error) {
	if len(password) > MaxConnectPassword {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrConnectMalformed, len(password))
	}
	rest, ok := strings.CutPrefix(string(password), connectPrefix)
	if !ok {
		return 0, nil, fmt.Errorf("%w: no %q prefix", ErrConnectMalformed, connectPrefix)
	}
	t, s, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, nil, fmt.Errorf("%w: want tc1:{ns}:{sig}", ErrConnectMalformed)
	}
	ns, err = strconv.ParseInt(t, 10, 64)
	if err != nil || ns <= 0 || strconv.FormatInt(ns, 10) != t {
		return 0, nil, fmt.Errorf("%w: time %q", ErrConnectMalformed, t)
	}
	sig, err = base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return 0, nil, fmt.Errorf("%w: signature", ErrConnectMalformed)
	}
	return ns, sig, nil
}

// VerifyConnectPassword checks that password is gateway's, signed by pub,
// with a time within ConnectWindow of now. It returns the password's time,
// which a broker remembers to accept each password once.
func VerifyConnectPassword(pub ed25519.PublicKey, gateway string, password []byte, now time.Time) (int64, error) {
	ns, sig, err := ParseConnectPassword(password)
	if err != nil {
		return 0, err
	}
	if d := now.Sub(time.Unix(0, ns)); d > ConnectWindow || d < -ConnectWindow {
		return 0, fmt.Errorf("%w: %s from the broker's clock", ErrConnectExpired, d.Round(time.Second))
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, ConnectSigningBytes(gateway, ns), sig) {
		return 0, ErrConnectSignature
	}
	return ns, nil
}

// Package enroll is the gateway's half of enrollment: the messages and the
// client. The service's half is internal/registry/enrollment.
//
// Enrollment is how a gateway gets its key accepted by twin-service. An
// administrator asks for a one-time token (bound to a site, and optionally to
// one gateway id); `edge-agent enroll` sends the token, the gateway id and
// the gateway's Ed25519 public key, signed with that key to prove it holds
// it; twin-service registers (gateway id, public key, site), answers with an
// MQTT client certificate on that key, and accepts the gateway's
// connections and messages from then on.
//
// HTTP (twin-service, under /api/v1):
//
//	POST /enroll/tokens  {"site":"s1","gateway_id":"gw-s1-dock","ttl_seconds":3600}  (admin) -> Token
//	POST /enroll         Request -> Response
package enroll

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"twinchain/internal/wire"
)

// Paths of the enrollment routes, under /api/v1.
const (
	PathEnroll = "/enroll"
	PathTokens = "/enroll/tokens"
)

// Errors Redeem and Issue return; the API maps them to HTTP statuses.
var (
	ErrInvalid  = errors.New("invalid enrollment request")                // 400
	ErrToken    = errors.New("unknown, used or expired token")            // 401
	ErrConflict = errors.New("gateway already enrolled with another key") // 409
)

// TokenRequest is an administrator's request for a token.
type TokenRequest struct {
	Site       string `json:"site"`
	GatewayID  string `json:"gateway_id,omitempty"` // binds the token to one gateway (and allows re-keying it)
	TTLSeconds int    `json:"ttl_seconds,omitempty"`
	// Assets binds these assets to the gateway that redeems the token (a
	// host agent: its server and GPUs). Without them an enrolled gateway
	// reports only itself and assets no other gateway holds
	// (docs/design.md, binding); a re-enrolled gateway keeps its list.
	Assets []string `json:"assets,omitempty"`
}

// Token is a one-time enrollment token.
type Token struct {
	Token     string    `json:"token"`
	Site      string    `json:"site"`
	GatewayID string    `json:"gateway_id,omitempty"`
	Expires   time.Time `json:"expires"`
}

// Request is a gateway's enrollment request.
type Request struct {
	Token     string            `json:"token"`
	GatewayID string            `json:"gateway_id"`
	PublicKey ed25519.PublicKey `json:"public_key"` // base64 (std)
	Hostname  string            `json:"hostname,omitempty"`
	Sig       []byte            `json:"sig"` // Ed25519 by PublicKey over SigningBytes
}

// SigningBytes is what the gateway signs.
func (r *Request) SigningBytes() []byte {
	b := []byte("twinchain-enroll-v1\x00")
	b = append(append(b, r.Token...), 0)
	b = append(append(b, r.GatewayID...), 0)
	return append(b, r.PublicKey...)
}

// NewRequest builds and signs a request with the gateway's key.
func NewRequest(key ed25519.PrivateKey, token, gatewayID, hostname string) Request {
	r := Request{Token: token, GatewayID: gatewayID, PublicKey: key.Public().(ed25519.PublicKey), Hostname: hostname}
	r.Sig = ed25519.Sign(key, r.SigningBytes())
	return r
}

// Check validates the request's fields and its signature.
func (r *Request) Check() error {
	switch {
	case r.Token == "":
		return fmt.Errorf("%w: token missing", ErrInvalid)
	case !wire.ValidGatewayID(r.GatewayID):
		return fmt.Errorf("%w: gateway id %q", ErrInvalid, r.GatewayID)
	case len(r.PublicKey) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: public key of %d bytes, want %d", ErrInvalid, len(r.PublicKey), ed25519.PublicKeySize)
	case !ed25519.Verify(r.PublicKey, r.SigningBytes(), r.Sig):
		return fmt.Errorf("%w: signature does not match the public key", ErrInvalid)
	}
	return nil
}

// Response tells the gateway it is enrolled.
type Response struct {
	GatewayID string `json:"gateway_id"`
	Site      string `json:"site"`
	Topic     string `json:"topic"` // where it publishes, e.g. twinchain/v1/gw/{id}/#
	// Certificate is the gateway's MQTT client certificate (PEM) on its own
	// key, issued by twin-service's gateway CA: CN and URI SAN
	// urn:twinchain:gateway:{id}. CACertificate is that CA (PEM): the
	// gateway trusts it for the broker's TLS certificate.
	Certificate   string `json:"certificate,omitempty"`
	CACertificate string `json:"ca_certificate,omitempty"`
}

// Package enroll is how a gateway gets its key accepted by twin-service. An
// administrator asks for a one-time token (bound to a site, and optionally to
// one gateway id); `edge-agent enroll` sends the token, the gateway id and
// the gateway's Ed25519 public key, signed with that key to prove it holds
// it; twin-service registers (gateway id, public key, site) and accepts the
// gateway's messages from then on.
//
// HTTP (twin-service, under /api/v1):
//
//	POST /enroll/tokens  {"site":"s1","gateway_id":"gw-s1-dock","ttl_seconds":3600}  (admin) -> Token
//	POST /enroll         Request -> Response
package enroll

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"twinchain/internal/registry"
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
}

// Gateways is the registry the service writes to; *registry.Registry is one.
type Gateways interface {
	Get(id string) (registry.Gateway, bool)
	Put(g registry.Gateway) error
}

type pendingToken struct {
	site, gateway string
	expires       time.Time
}

// Service issues and redeems tokens. Tokens live in memory, stored as
// SHA-256 hashes: a twin-service restart voids unredeemed tokens. Safe for
// concurrent use.
type Service struct {
	reg    Gateways
	now    func() time.Time
	mu     sync.Mutex
	tokens map[[32]byte]pendingToken
}

// NewService returns a Service that registers gateways in reg.
func NewService(reg Gateways, now func() time.Time) *Service {
	return &Service{reg: reg, now: now, tokens: map[[32]byte]pendingToken{}}
}

// DefaultTTL is a token's lifetime when the request names none.
const DefaultTTL = time.Hour

// Issue creates a one-time token.
func (s *Service) Issue(req TokenRequest) (Token, error) {
	if req.Site == "" {
		return Token{}, fmt.Errorf("%w: site missing", ErrInvalid)
	}
	if req.GatewayID != "" && !wire.ValidGatewayID(req.GatewayID) {
		return Token{}, fmt.Errorf("%w: gateway id %q", ErrInvalid, req.GatewayID)
	}
	ttl := DefaultTTL
	if req.TTLSeconds < 0 || req.TTLSeconds > 30*24*3600 {
		return Token{}, fmt.Errorf("%w: ttl_seconds %d: want 1 to 2592000", ErrInvalid, req.TTLSeconds)
	}
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Token{}, err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, t := range s.tokens { // forget expired tokens
		if now.After(t.expires) {
			delete(s.tokens, h)
		}
	}
	s.tokens[sha256.Sum256([]byte(tok))] = pendingToken{site: req.Site, gateway: req.GatewayID, expires: now.Add(ttl)}
	return Token{Token: tok, Site: req.Site, GatewayID: req.GatewayID, Expires: now.Add(ttl)}, nil
}

// Redeem checks the request, spends its token and registers the gateway.
// Enrolling again with the same key is accepted (and spends the token);
// another key for an existing gateway needs a token bound to that gateway.
func (s *Service) Redeem(req Request) (Response, error) {
	if err := req.Check(); err != nil {
		return Response{}, err
	}
	h := sha256.Sum256([]byte(req.Token))
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[h]
	if !ok || s.now().After(t.expires) {
		return Response{}, ErrToken
	}
	if t.gateway != "" && t.gateway != req.GatewayID {
		return Response{}, fmt.Errorf("%w: the token is for gateway %s", ErrToken, t.gateway)
	}
	g := registry.Gateway{ID: req.GatewayID, PublicKey: req.PublicKey, Site: t.site}
	if old, exists := s.reg.Get(req.GatewayID); exists {
		if !old.PublicKey.Equal(req.PublicKey) && t.gateway != req.GatewayID {
			return Response{}, fmt.Errorf("%w: %s", ErrConflict, req.GatewayID)
		}
		g.Assets = old.Assets
	}
	if err := s.reg.Put(g); err != nil {
		return Response{}, fmt.Errorf("register gateway %s: %w", req.GatewayID, err)
	}
	delete(s.tokens, h)
	return Response{GatewayID: g.ID, Site: g.Site, Topic: wire.Topic(g.ID, "#")}, nil
}

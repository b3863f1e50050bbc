// Package enrollment is twin-service's half of gateway enrollment: it issues
// one-time tokens and redeems them into the gateway registry. The messages and
// the gateway's client are in internal/edge/enroll.
package enrollment

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"time"

	"twinchain/internal/edge/enroll"
	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

// Gateways is the registry the service writes to; *registry.Registry is one.
type Gateways interface {
	Get(id string) (registry.Gateway, bool)
	Put(g registry.Gateway) error
}

type pendingToken struct {
	site, gateway string
	assets        []string // bound at redemption (TokenRequest.Assets)
	expires       time.Time
}

// Service issues and redeems tokens. Tokens live in memory, stored as
// SHA-256 hashes: a twin-service restart voids unredeemed tokens. Safe for
// concurrent use.
type Service struct {
	reg    Gateways
	ca     *CA
	now    func() time.Time
	mu     sync.Mutex
	tokens map[[32]byte]pendingToken
}

// NewService returns a Service that registers gateways in reg and, when ca
// is not nil, issues each an MQTT client certificate.
func NewService(reg Gateways, ca *CA, now func() time.Time) *Service {
	return &Service{reg: reg, ca: ca, now: now, tokens: map[[32]byte]pendingToken{}}
}

// DefaultTTL is a token's lifetime when the request names none.
const DefaultTTL = time.Hour

// Issue creates a one-time token.
func (s *Service) Issue(req enroll.TokenRequest) (enroll.Token, error) {
	if req.Site == "" {
		return enroll.Token{}, fmt.Errorf("%w: site missing", enroll.ErrInvalid)
	}
	if req.GatewayID != "" && !wire.ValidGatewayID(req.GatewayID) {
		return enroll.Token{}, fmt.Errorf("%w: gateway id %q", enroll.ErrInvalid, req.GatewayID)
	}
	ttl := DefaultTTL
	if req.TTLSeconds < 0 || req.TTLSeconds > 30*24*3600 {
		return enroll.Token{}, fmt.Errorf("%w: ttl_seconds %d: want 1 to 2592000", enroll.ErrInvalid, req.TTLSeconds)
	}
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return enroll.Token{}, err
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
	s.tokens[sha256.Sum256([]byte(tok))] = pendingToken{site: req.Site, gateway: req.GatewayID, assets: slices.Clone(req.Assets), expires: now.Add(ttl)}
	return enroll.Token{Token: tok, Site: req.Site, GatewayID: req.GatewayID, Expires: now.Add(ttl)}, nil
}

// Redeem checks the request, spends its token and registers the gateway.
// Enrolling again with the same key is accepted (and spends the token);
// another key for an existing gateway needs a token bound to that gateway.
func (s *Service) Redeem(req enroll.Request) (enroll.Response, error) {
	if err := req.Check(); err != nil {
		return enroll.Response{}, err
	}
	h := sha256.Sum256([]byte(req.Token))
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[h]
	if !ok || s.now().After(t.expires) {
		return enroll.Response{}, enroll.ErrToken
	}
	if t.gateway != "" && t.gateway != req.GatewayID {
		return enroll.Response{}, fmt.Errorf("%w: the token is for gateway %s", enroll.ErrToken, t.gateway)
	}
	g := registry.Gateway{ID: req.GatewayID, PublicKey: req.PublicKey, Site: t.site}
	if old, exists := s.reg.Get(req.GatewayID); exists {
		if !old.PublicKey.Equal(req.PublicKey) && t.gateway != req.GatewayID {
			return enroll.Response{}, fmt.Errorf("%w: %s", enroll.ErrConflict, req.GatewayID)
		}
		g.Assets = old.Assets
	}
	if len(t.assets) > 0 {
		g.Assets = t.assets
	}
	resp := enroll.Response{GatewayID: g.ID, Site: g.Site, Topic: wire.Topic(g.ID, "#")}
	if s.ca != nil {
		cert, err := s.ca.IssueGateway(g.ID, g.PublicKey)
		if err != nil {
			return enroll.Response{}, err
		}
		resp.Certificate, resp.CACertificate = string(cert), string(s.ca.CertPEM())
	}
	if err := s.reg.Put(g); err != nil {
		return enroll.Response{}, fmt.Errorf("register gateway %s: %w", req.GatewayID, err)
	}
	delete(s.tokens, h)
	return resp, nil
}

package broker

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"twinchain/internal/wire"
)

// Roles of service clients (configured in Config.Clients).
const (
	RoleAlertReader = "alert_reader" // subscribes to twinchain/v1/alerts/...
	RoleSysMonitor  = "sys_monitor"  // subscribes to $SYS/...
)

// ServiceClientPrefix starts the client id of a service client: svc:{name}.
const ServiceClientPrefix = "svc:"

// ServiceClient is a client of the embedded broker that is not a gateway:
// it connects with client id svc:{name}, username {name} and the secret
// whose SHA-256 is SecretSHA256, and may only subscribe to what its role
// allows. It never publishes.
type ServiceClient struct {
	Name         string `yaml:"name"`
	SecretSHA256 string `yaml:"secret_sha256"` // hex
	Role         string `yaml:"role"`          // alert_reader or sys_monitor
}

func (c ServiceClient) validate() error {
	if !wire.ValidGatewayID(c.Name) {
		return fmt.Errorf("client name %q: want 1-64 of [A-Za-z0-9._-]", c.Name)
	}
	if b, err := hex.DecodeString(c.SecretSHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("client %s: secret_sha256: want 64 hex digits (sha256sum of the secret)", c.Name)
	}
	switch c.Role {
	case RoleAlertReader, RoleSysMonitor:
	default:
		return fmt.Errorf("client %s: role %q: want %s or %s", c.Name, c.Role, RoleAlertReader, RoleSysMonitor)
	}
	return nil
}

// Gateways is the registry the broker authenticates gateways against;
// *registry.Registry is one.
type Gateways interface {
	Lookup(id string) (pub ed25519.PublicKey, site string, ok bool)
}

// Refusal reasons, counted by Stats.Refused.
const (
	RefusedNoCredentials  = "no_credentials"   // no password and no client certificate
	RefusedBadPassword    = "bad_password"     // malformed, wrong signature or wrong service secret
	RefusedExpired        = "expired_password" // connect password outside its window
	RefusedReused         = "reused_password"  // a connect password already used
	RefusedUnknownGateway = "unknown_gateway"  // not (or no longer) in the registry
	RefusedBadCertificate = "bad_certificate"  // no gateway URI, or not the registered key (re-keyed)
	RefusedClientID       = "client_id"        // client id or username is not the credential's own
	RefusedFull           = "max_connections"  // authenticated connections at the limit
	RefusedPending        = "max_pending"      // unauthenticated connections at the limit
	RefusedPendingAddress = "max_pending_address"
	RefusedTimeout        = "connect_timeout" // no CONNECT (or TLS handshake) in time
	RefusedBadConnect     = "bad_connect"     // first packet not a CONNECT, or too large
	RefusedTLS            = "tls_handshake"   // TLS handshake failed
	RefusedRevoked        = "revoked"         // a live session closed by revocation or re-keying
)

var refusals = []string{RefusedNoCredentials, RefusedBadPassword, RefusedExpired, RefusedReused, RefusedUnknownGateway,
	RefusedBadCertificate, RefusedClientID, RefusedFull, RefusedPending, RefusedPendingAddress, RefusedTimeout,
	RefusedBadConnect, RefusedTLS, RefusedRevoked}

// counters counts refusals by reason; a fixed set, so no map grows.
type counters struct {
	n [16]atomic.Uint64
}

func (c *counters) add(reason string) {
	for i, r := range refusals {
		if r == reason {
			c.n[i].Add(1)
			return
		}
	}
}

func (c *counters) snapshot() map[string]uint64 {
	out := make(map[string]uint64, len(refusals))
	for i, r := range refusals {
		out[r] = c.n[i].Load()
	}
	return out
}

// session is who a connected client proved to be.
type session struct {
	gateway string            // the gateway id; empty for a service client
	key     ed25519.PublicKey // the gateway key it proved (password or certificate)
	role    string            // a service client's role
}

var (
	gatewayPrefix = strings.TrimSuffix(wire.GatewayFilter(), "+/+") // twinchain/v1/gw/
	alertPrefix   = strings.TrimSuffix(wire.AlertFilter(), "#")     // twinchain/v1/alerts/
	sysPrefix     = "$SYS/"
	errRevoked    = errors.New("gateway revoked or re-keyed")
	errShutdown   = errors.New("twin-service is stopping")
	errNotAllowed = errors.New("not authorized")
)

// authHook authenticates every connection (a gateway's certificate or
// connect password, or a service client's secret), binds the client id to
// that identity, and confines each client to what it may read and write.
// Nobody connects anonymously; the service's inline client may do anything.
type authHook struct {
	mqtt.HookBase
	gateways     Gateways
	services     map[string]ServiceClient
	now          func() time.Time
	maxKeepalive uint16
	refused      *counters
	logRefusal   func(reason string, cl *mqtt.Client, err error)

	mu       sync.Mutex
	sessions map[*mqtt.Client]session
	used     map[usedKey]struct{} // connect passwords accepted within the window
	pruned   time.Time
}

type usedKey struct {
	gateway string
	ns      int64
}

func newAuthHook(gws Gateways, services []ServiceClient, maxKeepalive time.Duration, now func() time.Time, refused *counters,
	logRefusal func(string, *mqtt.Client, error)) *authHook {
	h := &authHook{gateways: gws, services: map[string]ServiceClient{}, now: now, refused: refused, logRefusal: logRefusal,
		maxKeepalive: uint16(min(maxKeepalive/time.Second, 65535)), sessions: map[*mqtt.Client]session{}, used: map[usedKey]struct{}{}}
	for _, c := range services {
		h.services[c.Name] = c
	}
	return h
}

func (h *authHook) ID() string { return "twinchain-auth" }

func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnConnect bounds the keepalive: a client asking for none, or for more than
// the maximum, gets the maximum (a silent connection is closed after 1.5
// times that).
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if ka := cl.State.Keepalive; ka == 0 || ka > h.maxKeepalive {
		cl.State.Keepalive = h.maxKeepalive
		cl.State.ServerKeepalive = true
	}
	return nil
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if cl.Net.Inline {
		return true
	}
	s, reason, err := h.authenticate(cl.ID, pk.Connect.Username, pk.Connect.Password, peerCertificate(cl.Net.Conn))
	if reason != "" {
		h.refused.add(reason)
		h.logRefusal(reason, cl, err)
		return false
	}
	h.mu.Lock()
	h.sessions[cl] = s
	h.mu.Unlock()
	if c, ok := cl.Net.Conn.(*conn); ok {
		c.authenticated(s.gateway != "")
	}
	return true
}

// authenticate decides who a CONNECT is: a refusal reason, or a session.
func (h *authHook) authenticate(clientID string, username, password []byte, cert *x509.Certificate) (session, string, error) {
	if cert != nil {
		return h.certificateSession(clientID, string(username), cert)
	}
	if name, ok := strings.CutPrefix(clientID, ServiceClientPrefix); ok {
		sc, ok := h.services[name]
		sum := sha256.Sum256(password)
		want, _ := hex.DecodeString(sc.SecretSHA256)
		if !ok || string(username) != name || subtle.ConstantTimeCompare(sum[:], want) != 1 {
			return session{}, RefusedBadPassword, fmt.Errorf("service client %q: unknown name or wrong secret", name)
		}
		return session{role: sc.Role}, "", nil
	}
	if len(password) == 0 {
		return session{}, RefusedNoCredentials, errors.New("no password and no client certificate")
	}
	gw := string(username)
	if !wire.IsConnectPassword(password) || !wire.ValidGatewayID(gw) {
		return session{}, RefusedBadPassword, errors.New("want username = gateway id and a connect password (tc1:...)")
	}
	pub, _, ok := h.gateways.Lookup(gw)
	if !ok {
		return session{}, RefusedUnknownGateway, fmt.Errorf("gateway %s is not registered", gw)
	}
	now := h.now()
	ns, err := wire.VerifyConnectPassword(pub, gw, password, now)
	switch {
	case errors.Is(err, wire.ErrConnectExpired):
		return session{}, RefusedExpired, err
	case err != nil:
		return session{}, RefusedBadPassword, err
	case clientID != gw:
		return session{}, RefusedClientID, fmt.Errorf("client id %q: a gateway connects with its own id %q", clientID, gw)
	case !h.spend(gw, ns, now):
		return session{}, RefusedReused, errors.New("connect password already used")
	}
	return session{gateway: gw, key: pub}, "", nil
}

// certificateSession checks a verified client certificate: it names a
// registered gateway and carries that gateway's current key.
func (h *authHook) certificateSession(clientID, username string, cert *x509.Certificate) (session, string, error) {
	gw := ""
	for _, u := range cert.URIs {
		if id, ok := wire.GatewayFromURI(u.String()); ok {
			gw = id
			break
		}
	}
	if gw == "" {
		return session{}, RefusedBadCertificate, errors.New("client certificate names no gateway (URI SAN urn:twinchain:gateway:{id})")
	}
	pub, _, ok := h.gateways.Lookup(gw)
	if !ok {
		return session{}, RefusedUnknownGateway, fmt.Errorf("gateway %s is not registered", gw)
	}
	certKey, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !certKey.Equal(pub) {
		return session{}, RefusedBadCertificate, fmt.Errorf("gateway %s: the certificate's key is not the registered one (re-keyed?)", gw)
	}
	if clientID != gw || (username != "" && username != gw) {
		return session{}, RefusedClientID, fmt.Errorf("client id %q / username %q: a gateway connects as itself, %q", clientID, username, gw)
	}
	return session{gateway: gw, key: pub}, "", nil
}

// spend records a connect password as used; false if it already was.
func (h *authHook) spend(gw string, ns int64, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.pruned) > wire.ConnectWindow/4 {
		h.pruned = now
		oldest := now.Add(-2 * wire.ConnectWindow).UnixNano()
		for k := range h.used {
			if k.ns < oldest {
				delete(h.used, k)
			}
		}
	}
	k := usedKey{gw, ns}
	if _, dup := h.used[k]; dup {
		return false
	}
	h.used[k] = struct{}{}
	return true
}

// current reports whether a gateway session's key is still the registered
// one.
func (h *authHook) current(s session) bool {
	pub, _, ok := h.gateways.Lookup(s.gateway)
	return ok && pub.Equal(s.key)
}

func (h *authHook) session(cl *mqtt.Client) (session, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[cl]
	return s, ok
}

// OnACLCheck: a gateway publishes only within its own subtree
// twinchain/v1/gw/{id}/ (and only while its key is the registered one) and
// subscribes to nothing; an
// alert reader subscribes only under twinchain/v1/alerts/; a $SYS monitor
// only under $SYS/. Service clients never publish.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	s, ok := h.session(cl)
	if !ok {
		return false
	}
	return allowed(s, topic, write) && (s.gateway == "" || h.current(s))
}

// allowed is the ACL for one session and one topic (write) or filter (read).
func allowed(s session, topic string, write bool) bool {
	switch {
	case s.gateway != "" && !write:
		return false // nothing is addressed to a gateway: it reads nothing, not even its own messages
	case s.gateway != "":
		rest, ok := strings.CutPrefix(topic, gatewayPrefix)
		gw, sub, ok2 := strings.Cut(rest, "/")
		return ok && ok2 && gw == s.gateway && sub != ""
	case write:
		return false
	case s.role == RoleAlertReader:
		return strings.HasPrefix(topic, alertPrefix) && len(topic) > len(alertPrefix)
	case s.role == RoleSysMonitor:
		return strings.HasPrefix(topic, sysPrefix) && len(topic) > len(sysPrefix)
	}
	return false
}

func (h *authHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.mu.Lock()
	delete(h.sessions, cl)
	h.mu.Unlock()
}

// revoke closes the sessions of gateway id whose key is no longer the
// registered one, without their last will (the gateway did not go offline:
// its credential did).
func (h *authHook) revoke(id string) int {
	h.mu.Lock()
	var stale []*mqtt.Client
	for cl, s := range h.sessions {
		if s.gateway == id && !h.current(s) {
			stale = append(stale, cl)
		}
	}
	h.mu.Unlock()
	for _, cl := range stale {
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
		cl.Stop(errRevoked)
		h.refused.add(RefusedRevoked)
	}
	return len(stale)
}

// peerCertificate is the verified client certificate of a TLS connection,
// or nil.
func peerCertificate(c interface{}) *x509.Certificate {
	var tc *tls.Conn
	switch v := c.(type) {
	case *conn:
		tc, _ = v.Conn.(*tls.Conn)
	case *tls.Conn:
		tc = v
	}
	if tc == nil {
		return nil
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return nil
	}
	return st.PeerCertificates[0]
}

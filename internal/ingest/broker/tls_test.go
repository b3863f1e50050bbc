package broker

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

// certOptions are a gateway's paho options over TLS with the client
// certificate issued for (id, the certificate's key) and private key k:
// no password, as a gateway configured with cert_file connects.
func certOptions(t *testing.T, s *stack, clientID string, certFor string, certKey, k ed25519.PrivateKey) *paho.ClientOptions {
	t.Helper()
	certPEM, err := s.ca.IssueGateway(certFor, certKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	tc := &tls.Config{RootCAs: s.ca.Pool(), MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{block.Bytes}, PrivateKey: k}}}
	return paho.NewClientOptions().AddBroker(s.tlsURL).SetClientID(clientID).SetTLSConfig(tc)
}

// TestClientCertificate: over TLS a gateway proves who it is with the
// certificate issued at enrollment, and publishes; a certificate for
// another gateway, one on a key that is not the registered one, and an
// anonymous TLS client are refused, each counted; revoking the gateway
// closes its live TLS session at once and its certificate is refused from
// then on, though it still chains to the CA.
func TestClientCertificate(t *testing.T) {
	s := startAuthStack(t, Config{TLS: TLSConfig{Addr: "set by startStackWith"}})
	lost := make(chan error, 1)
	c, err := tryConnect(t, certOptions(t, s, "gw-a", "gw-a", key("gw-a"), key("gw-a")).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	if err != nil {
		t.Fatalf("gw-a with its certificate: %v", err)
	}
	publish(t, c, wire.Topic("gw-a", wire.KindTelemetry), seal(t, "gw-a", 1, wire.KindTelemetry, hostTelemetry("host-a")))
	if st := gatewayStats(s.in.Stats(), "gw-a"); st.Accepted != 1 {
		t.Errorf("gw-a accepted = %d, want 1", st.Accepted)
	}

	thiefSeed := sha256.Sum256([]byte("thief"))
	thief := ed25519.NewKeyFromSeed(thiefSeed[:])
	for _, tc := range []struct {
		name   string
		opts   *paho.ClientOptions
		reason string
	}{
		{"gw-b's certificate, client id gw-a", certOptions(t, s, "gw-a", "gw-b", key("gw-b"), key("gw-b")), RefusedClientID},
		{"a certificate for gw-b on another key", certOptions(t, s, "gw-b", "gw-b", thief, thief), RefusedBadCertificate},
		{"a certificate for an unregistered gateway", certOptions(t, s, "gw-x", "gw-x", thief, thief), RefusedUnknownGateway},
		{"TLS without a certificate or password", paho.NewClientOptions().AddBroker(s.tlsURL).SetClientID("gw-a").
			SetTLSConfig(&tls.Config{RootCAs: s.ca.Pool()}), RefusedNoCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) { expectRefused(t, s, tc.opts, tc.reason) })
	}
	if !c.IsConnectionOpen() {
		t.Fatal("gw-a lost its session to a refused client")
	}

	// Re-keying gw-a revokes the certificate on its old key at once.
	newSeed := sha256.Sum256([]byte("gw-a new key"))
	newKey := ed25519.NewKeyFromSeed(newSeed[:])
	if err := s.reg.Put(registry.Gateway{ID: "gw-a", PublicKey: newKey.Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(20 * time.Second):
		t.Fatal("re-keyed gw-a: the live TLS session was not closed")
	}
	expectRefused(t, s, certOptions(t, s, "gw-a", "gw-a", key("gw-a"), key("gw-a")), RefusedBadCertificate) // the old certificate
	if _, err := tryConnect(t, certOptions(t, s, "gw-a", "gw-a", newKey, newKey)); err != nil {
		t.Errorf("gw-a's certificate on its new key: %v", err)
	}
	// Deleting gw-b refuses its certificate.
	if _, err := s.reg.Delete("gw-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := tryConnect(t, certOptions(t, s, "gw-b", "gw-b", key("gw-b"), key("gw-b"))); err == nil {
		t.Error("deleted gw-b connected with its certificate")
	}
}

// FuzzCertificateSession: whatever URI SANs a CA-verified certificate
// carries and whatever client id and username come with it, a session is
// granted only to the registered gateway its first gateway URI names, on
// that gateway's key, connecting under its own id.
func FuzzCertificateSession(f *testing.F) {
	gws := registry.New(registry.Gateway{ID: "gw-a", PublicKey: key("gw-a").Public().(ed25519.PublicKey), Site: "s1"})
	h := newAuthHook(gws, nil, time.Minute, time.Now, &counters{}, nil)
	f.Add(wire.GatewayURI("gw-a"), "", "gw-a", "", true)
	f.Add(wire.GatewayURI("gw-b"), wire.GatewayURI("gw-a"), "gw-a", "gw-a", true)
	f.Add("urn:twinchain:gateway:gw-a/../x", "", "gw-a", "", false)
	f.Fuzz(func(t *testing.T, uri1, uri2, clientID, username string, ownKey bool) {
		cert := &x509.Certificate{PublicKey: key("other").Public()}
		if ownKey {
			cert.PublicKey = key("gw-a").Public()
		}
		for _, u := range []string{uri1, uri2} {
			if p, err := url.Parse(u); err == nil {
				cert.URIs = append(cert.URIs, p)
			}
		}
		s, reason, _ := h.authenticate(clientID, []byte(username), nil, cert)
		if reason != "" {
			return
		}
		first := ""
		for _, u := range cert.URIs {
			if id, ok := wire.GatewayFromURI(u.String()); ok {
				first = id
				break
			}
		}
		if s.gateway != "gw-a" || first != "gw-a" || !ownKey || clientID != "gw-a" || (username != "" && username != "gw-a") {
			t.Fatalf("certificate %v (own key %v), client id %q, username %q: granted %+v", cert.URIs, ownKey, clientID, username, s)
		}
	})
}

package enrollment

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/edge/enroll"
	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

func key(s string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(s))
	return ed25519.NewKeyFromSeed(seed[:])
}

func TestIssueRedeem(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	reg := registry.New()
	clock := func() time.Time { return now }
	dir := t.TempDir()
	ca, err := OpenCA(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), true, clock)
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService(reg, ca, clock)
	tok, err := svc.Issue(enroll.TokenRequest{Site: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	k := key("gw-a")
	resp, err := svc.Redeem(enroll.NewRequest(k, tok.Token, "gw-a", "host-a"))
	if err != nil || resp.GatewayID != "gw-a" || resp.Site != "s1" || resp.Topic != "twinchain/v1/gw/gw-a/#" {
		t.Fatalf("Redeem = %+v, %v, want gw-a at s1", resp, err)
	}
	checkCertificate(t, ca, resp, "gw-a", k.Public().(ed25519.PublicKey))
	if pub, site, ok := reg.Lookup("gw-a"); !ok || site != "s1" || !pub.Equal(k.Public()) {
		t.Errorf("registry after Redeem: %v %q %v, want gw-a's key at s1", pub, site, ok)
	}
	// One time only.
	if _, err := svc.Redeem(enroll.NewRequest(k, tok.Token, "gw-a", "")); !errors.Is(err, enroll.ErrToken) {
		t.Errorf("Redeem(used token) = %v, want enroll.ErrToken", err)
	}

	cases := []struct {
		name string
		req  func(tok string) enroll.Request
		want error
	}{
		{"bad signature", func(tok string) enroll.Request { r := enroll.NewRequest(k, tok, "gw-b", ""); r.Sig[0] ^= 1; return r }, enroll.ErrInvalid},
		{"key not matching signature", func(tok string) enroll.Request {
			r := enroll.NewRequest(k, tok, "gw-b", "")
			r.PublicKey = key("other").Public().(ed25519.PublicKey)
			return r
		}, enroll.ErrInvalid},
		{"bad gateway id", func(tok string) enroll.Request { return enroll.NewRequest(k, tok, "../x", "") }, enroll.ErrInvalid},
		{"unknown token", func(string) enroll.Request { return enroll.NewRequest(k, "nope", "gw-b", "") }, enroll.ErrToken},
		{"another key for gw-a", func(tok string) enroll.Request { return enroll.NewRequest(key("thief"), tok, "gw-a", "") }, enroll.ErrConflict},
	}
	for _, tc := range cases {
		tok, _ := svc.Issue(enroll.TokenRequest{Site: "s1"})
		if _, err := svc.Redeem(tc.req(tok.Token)); !errors.Is(err, tc.want) {
			t.Errorf("%s: Redeem = %v, want %v", tc.name, err, tc.want)
		}
	}

	// A token bound to gw-a may re-key it, and no other gateway.
	bound, _ := svc.Issue(enroll.TokenRequest{Site: "s1", GatewayID: "gw-a"})
	if _, err := svc.Redeem(enroll.NewRequest(key("gw-c"), bound.Token, "gw-c", "")); !errors.Is(err, enroll.ErrToken) {
		t.Errorf("Redeem(token for gw-a, as gw-c) = %v, want enroll.ErrToken", err)
	}
	if _, err := svc.Redeem(enroll.NewRequest(key("gw-a2"), bound.Token, "gw-a", "")); err != nil {
		t.Errorf("Redeem(re-key gw-a with a bound token) = %v", err)
	}
	// Expiry.
	short, _ := svc.Issue(enroll.TokenRequest{Site: "s1", TTLSeconds: 60})
	now = now.Add(61 * time.Second)
	if _, err := svc.Redeem(enroll.NewRequest(key("gw-d"), short.Token, "gw-d", "")); !errors.Is(err, enroll.ErrToken) {
		t.Errorf("Redeem(expired) = %v, want enroll.ErrToken", err)
	}
	if _, err := svc.Issue(enroll.TokenRequest{}); !errors.Is(err, enroll.ErrInvalid) {
		t.Errorf("Issue(no site) = %v, want enroll.ErrInvalid", err)
	}
}

// checkCertificate: the answer carries a client certificate for gw on its
// key, which chains to the CA the answer also carries.
func checkCertificate(t *testing.T, ca *CA, resp enroll.Response, gw string, pub ed25519.PublicKey) {
	t.Helper()
	if resp.CACertificate != string(ca.CertPEM()) {
		t.Errorf("ca_certificate is not the CA's certificate")
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	if block == nil {
		t.Fatalf("certificate %q: no PEM block", resp.Certificate)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime: ca.now()}); err != nil {
		t.Errorf("certificate does not verify against the CA as a client certificate: %v", err)
	}
	if got, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !got.Equal(pub) {
		t.Errorf("certificate key = %v, want the gateway's", cert.PublicKey)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != wire.GatewayURI(gw) || cert.Subject.CommonName != gw {
		t.Errorf("certificate names CN %q, URIs %v; want %s and %s", cert.Subject.CommonName, cert.URIs, gw, wire.GatewayURI(gw))
	}
}

// TestOpenCA: twin-service's own CA is made once and reopened the same; an
// operator's CA must exist, and must be a CA.
func TestOpenCA(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if _, err := OpenCA(cert, key, false, time.Now); err == nil {
		t.Error("OpenCA(missing, create off) = nil error, want one")
	}
	a, err := OpenCA(cert, key, true, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenCA(cert, key, false, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.CertPEM()) != string(b.CertPEM()) {
		t.Error("reopening the CA made another one")
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("CA key file: %v, %v; want mode 0600", st, err)
	}
	// A server certificate is no CA: refused as one.
	srv, err := a.ServerCertificate([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := x509.MarshalPKCS8PrivateKey(srv.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	lc, lk := filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "leaf.key")
	if err := os.WriteFile(lc, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lk, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: leafKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCA(lc, lk, false, time.Now); err == nil {
		t.Error("OpenCA(a server certificate) = nil error, want: not a CA")
	}
}

// TestEnrollmentBindsAssets: a token may bind assets; the gateway that
// redeems it gets them as its list (re-enrolling without keeps the list).
func TestEnrollmentBindsAssets(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	reg := registry.New()
	svc := NewService(reg, nil, func() time.Time { return now })
	tok, err := svc.Issue(enroll.TokenRequest{Site: "s1", Assets: []string{"srv-a", "srv-a.gpu0"}})
	if err != nil {
		t.Fatal(err)
	}
	k := key("gw-a")
	if _, err := svc.Redeem(enroll.NewRequest(k, tok.Token, "gw-a", "host-a")); err != nil {
		t.Fatal(err)
	}
	if b := reg.Binding("gw-a", "srv-a.gpu0"); b != registry.Bound {
		t.Errorf("Binding(gw-a, srv-a.gpu0) = %v, want Bound", b)
	}
	if b := reg.Binding("gw-b", "srv-a.gpu0"); b != registry.Unbound {
		t.Errorf("Binding(gw-b, srv-a.gpu0) = %v, want Unbound (gw-a's)", b)
	}
	again, _ := svc.Issue(enroll.TokenRequest{Site: "s1"})
	if _, err := svc.Redeem(enroll.NewRequest(k, again.Token, "gw-a", "host-a")); err != nil {
		t.Fatal(err)
	}
	if g, _ := reg.Get("gw-a"); len(g.Assets) != 2 {
		t.Errorf("after re-enrolling without assets: %v, want the two bound", g.Assets)
	}
}

// TestCRL: the CRL lists the certificates of gateways deleted or re-keyed
// since, not those of gateways still registered with that key, nor expired
// ones; the record of issued certificates survives a reopen of the CA.
func TestCRL(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	open := func() *CA {
		ca, err := OpenCA(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), true, clock)
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.KeepRecord(filepath.Join(dir, IssuedFile), filepath.Join(dir, CRLFile)); err != nil {
			t.Fatal(err)
		}
		return ca
	}
	ca := open()
	serials := map[string]string{}
	for _, gw := range []string{"gw-keep", "gw-gone", "gw-rekeyed"} {
		p, err := ca.IssueGateway(gw, key(gw).Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(p)
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		serials[gw] = c.SerialNumber.String()
	}
	current := map[string]ed25519.PublicKey{"gw-keep": key("gw-keep").Public().(ed25519.PublicKey), "gw-rekeyed": key("new").Public().(ed25519.PublicKey)}
	lookup := func(id string) (ed25519.PublicKey, bool) { k, ok := current[id]; return k, ok }
	listed := func(ca *CA) map[string]bool {
		t.Helper()
		n, err := ca.WriteCRL(lookup)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, CRLFile))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		caBlock, _ := pem.Decode(ca.CertPEM())
		caCert, _ := x509.ParseCertificate(caBlock.Bytes)
		if err := crl.CheckSignatureFrom(caCert); err != nil {
			t.Errorf("CRL signature: %v", err)
		}
		out := map[string]bool{}
		for _, e := range crl.RevokedCertificateEntries {
			out[e.SerialNumber.String()] = true
		}
		if n != len(out) {
			t.Errorf("WriteCRL = %d, CRL lists %d", n, len(out))
		}
		return out
	}
	for _, ca := range []*CA{ca, open()} { // the record survives a reopen
		got := listed(ca)
		if !got[serials["gw-gone"]] || !got[serials["gw-rekeyed"]] || got[serials["gw-keep"]] || len(got) != 2 {
			t.Errorf("CRL lists %v; want gw-gone's %s and gw-rekeyed's %s only", got, serials["gw-gone"], serials["gw-rekeyed"])
		}
	}
	now = now.Add(gatewayLifetime + time.Hour) // every certificate expired
	if got := listed(open()); len(got) != 0 {
		t.Errorf("CRL lists expired certificates: %v", got)
	}
}

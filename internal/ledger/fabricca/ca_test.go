package fabricca

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"twinchain/internal/testsvc"
)

// TestCAEnrollRegister runs against a real fabric-ca-server.
func TestCAEnrollRegister(t *testing.T) {
	srv := testsvc.StartFabricCA(t)
	ca, err := DialCA(CAConfig{
		URL: srv.URL, Name: srv.Name, TLSCACert: srv.CertFile, Registrar: srv.Admin, RegistrarPW: srv.Secret,
		MSPID: "Org1MSP", StoreDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	admin, err := ca.EnrollAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := admin.Certificate(); err != nil || c.Subject.CommonName != "admin" {
		t.Fatalf("admin certificate CN = %v (%v), want admin", c, err)
	}
	for _, tc := range []struct{ id, role string }{{"gw-s1-dock", "gateway"}, {"alice", "ml_lead"}} {
		secret, err := ca.Register(tc.id, "", tc.role)
		if err != nil {
			t.Fatal(err)
		}
		if secret == "" {
			t.Fatalf("Register(%s) gave an empty secret", tc.id)
		}
		id, err := ca.Enroll(tc.id, secret)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := id.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := CertAttrs(cert)
		if err != nil {
			t.Fatal(err)
		}
		if got := attrs[RoleAttr]; got != tc.role {
			t.Errorf("%s certificate attribute %s = %q, want %q (all: %v)", tc.id, RoleAttr, got, tc.role, attrs)
		}
		// The key the SDK stored is the certificate's key.
		kb, _ := pem.Decode(id.KeyPEM)
		if kb == nil {
			t.Fatalf("%s key is not PEM", tc.id)
		}
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !k.(*ecdsa.PrivateKey).PublicKey.Equal(cert.PublicKey) {
			t.Errorf("%s stored key does not match its certificate", tc.id)
		}
		re, err := ca.Reenroll(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := re.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		if rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			t.Errorf("%s reenrolled certificate has the same serial %v", tc.id, rc.SerialNumber)
		}
		if got, _ := CertAttrs(rc); got[RoleAttr] != tc.role {
			t.Errorf("%s reenrolled attribute %s = %q, want %q", tc.id, RoleAttr, got[RoleAttr], tc.role)
		}
	}
	if _, err := ca.Enroll("nobody", "wrong"); err == nil {
		t.Errorf("Enroll(unregistered) = nil error, want one")
	}
}

package fabricca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// TestIssue: an identity issued from a local CA key chains to that CA,
// is a client, and carries twin.role where Fabric CA puts attributes.
func TestIssue(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca.org1.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(caKey)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	id, err := Issue(caPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), "Org1MSP", "twin-service", "service")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := id.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	if err := cert.CheckSignatureFrom(ca); err != nil {
		t.Errorf("issued certificate does not chain to the CA: %v", err)
	}
	if cert.Subject.CommonName != "twin-service" || len(cert.Subject.OrganizationalUnit) != 1 || cert.Subject.OrganizationalUnit[0] != "client" {
		t.Errorf("subject = %v, want CN twin-service, OU client", cert.Subject)
	}
	attrs, err := CertAttrs(cert)
	if err != nil || attrs[RoleAttr] != "service" {
		t.Errorf("CertAttrs = %v, %v; want twin.role=service", attrs, err)
	}
	if _, err := Issue(caPEM, []byte("not pem"), "Org1MSP", "x", "auditor"); err == nil {
		t.Error("Issue with a key that is not PEM: no error")
	}
}

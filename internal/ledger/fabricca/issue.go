package fabricca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Issue makes an identity without a Fabric CA: a client certificate for id
// signed by an organisation's CA (its certificate and PKCS#8 key, as
// cryptogen writes them: ca/*-cert.pem and ca/priv_sk), carrying the
// twin.role attribute in the extension Fabric CA uses, so the chaincode
// reads the role as from an enrolled ECert. OU "client" makes it a client
// under the MSP's NodeOUs. It is valid for a year.
func Issue(caCertPEM, caKeyPEM []byte, mspID, id, role string) (Identity, error) {
	cb, _ := pem.Decode(caCertPEM)
	kb, _ := pem.Decode(caKeyPEM)
	if cb == nil || kb == nil {
		return Identity{}, errors.New("issue: the CA certificate and key must be PEM")
	}
	caCert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return Identity{}, fmt.Errorf("issue: CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return Identity{}, fmt.Errorf("issue: CA key: %w", err)
	}
	caKey, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return Identity{}, errors.New("issue: the CA key is not ECDSA")
	}
	if id == "" || role == "" {
		return Identity{}, errors.New("issue: id and role are required")
	}
	attrs, err := json.Marshal(map[string]map[string]string{"attrs": {"hf.EnrollmentID": id, "hf.Type": "client", RoleAttr: role}})
	if err != nil {
		return Identity{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return Identity{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id, OrganizationalUnit: []string{"client"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: fabricAttrOID, Value: attrs}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return Identity{}, fmt.Errorf("issue: %w", err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Identity{}, err
	}
	return Identity{ID: id, MSPID: mspID, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})}, nil
}

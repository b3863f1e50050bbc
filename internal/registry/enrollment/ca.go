package enrollment

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"twinchain/internal/wire"
)

// Files of twin-service's own gateway CA in its data directory.
const (
	CACertFile = "gateway-ca.pem"
	CAKeyFile  = "gateway-ca.key" // 0600
)

// Certificate lifetimes.
const (
	caLifetime      = 20 * 365 * 24 * time.Hour
	gatewayLifetime = 5 * 365 * 24 * time.Hour
	serverLifetime  = 365 * 24 * time.Hour
)

// CA is twin-service's gateway CA. At enrollment it issues the gateway a
// client certificate on the gateway's own Ed25519 key (common name and URI
// SAN urn:twinchain:gateway:{id}); it also issues the embedded broker's TLS
// server certificate. The embedded broker checks a client certificate
// against the registry at every connect, so a revoked or re-keyed gateway's
// certificate stops working at once; the certificate's lifetime is not what
// ends it. Safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	now     func() time.Time

	// The record of issued gateway certificates and the CRL (crl.go).
	mu                  sync.Mutex
	issued              []issuedCert
	issuedPath, crlPath string
}

// OpenCA loads the CA certificate and key (PEM) from certPath and keyPath.
// When create is set and neither file exists, it makes a new CA (ECDSA
// P-256) there first: twin-service's own CA in its data directory. An
// operator's CA is opened with create off.
func OpenCA(certPath, keyPath string, create bool, now func() time.Time) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) && create {
		if _, kerr := os.Stat(keyPath); !errors.Is(kerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("gateway ca: %s exists without %s", keyPath, certPath)
		}
		if err := makeCA(certPath, keyPath, now()); err != nil {
			return nil, err
		}
		certPEM, err = os.ReadFile(certPath)
	}
	if err != nil {
		return nil, fmt.Errorf("gateway ca: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("gateway ca %s: %w", certPath, err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("gateway ca %s: the key cannot sign", keyPath)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("gateway ca %s: %w", certPath, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("gateway ca %s: not a CA certificate (basic constraints CA and key usage certSign)", certPath)
	}
	return &CA{cert: cert, certPEM: certPEM, key: key, now: now}, nil
}

func makeCA(certPath, keyPath string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "twinchain gateway CA", Organization: []string{"twinchain"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(caLifetime),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("gateway ca: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: a certificate without its key is never left behind.
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fmt.Errorf("gateway ca: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("gateway ca: %w", err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// CertPEM is the CA certificate (PEM): what gateways trust for the broker,
// and what a broker trusts for gateway certificates.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Pool is a pool holding the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueGateway issues gateway id's client certificate on its key (PEM),
// recorded (KeepRecord) before it is returned, so that it can be revoked.
func (ca *CA) IssueGateway(id string, pub ed25519.PublicKey) ([]byte, error) {
	if !wire.ValidGatewayID(id) || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("issue certificate: gateway %q: invalid id or key", id)
	}
	uri, err := url.Parse(wire.GatewayURI(id))
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: id, Organization: []string{"twinchain gateway"}},
		URIs: []*url.URL{uri}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(gatewayLifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", id, err)
	}
	ca.mu.Lock()
	err = ca.record(issuedCert{Serial: tmpl.SerialNumber, Gateway: id, PublicKey: pub, NotAfter: tmpl.NotAfter})
	ca.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", id, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// ServerCertificate issues a TLS server certificate for hosts (DNS names
// or IP addresses) on a new key, with the CA certificate in its chain.
func (ca *CA) ServerCertificate(hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "twinchain mqtt broker"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(serverLifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}, nil
}

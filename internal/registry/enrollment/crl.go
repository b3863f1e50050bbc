package enrollment

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"slices"
	"time"

	"twinchain/internal/atomicfile"
)

// Files of the gateway certificates' revocation in the data directory:
// the record of every gateway certificate the CA issued, and the CRL made
// from it, for a broker that checks certificates itself (Mosquitto's
// crlfile; deploy/mosquitto/README.md).
const (
	IssuedFile = "gateway-certs.json"
	CRLFile    = "gateway-crl.pem"
)

// crlLifetime is how long a CRL is valid (its nextUpdate). It is rewritten
// at every start and every change of the registry; a broker that has not
// loaded one for this long refuses every certificate (OpenSSL: "CRL has
// expired").
const crlLifetime = 365 * 24 * time.Hour

// issuedCert is one certificate in the record.
type issuedCert struct {
	Serial    *big.Int          `json:"serial"`
	Gateway   string            `json:"gateway"`
	PublicKey ed25519.PublicKey `json:"public_key"`
	NotAfter  time.Time         `json:"not_after"`
}

// KeepRecord makes the CA record each gateway certificate it issues in
// issuedPath (JSON) and WriteCRL write the CRL to crlPath. Call it before
// the CA is shared.
func (ca *CA) KeepRecord(issuedPath, crlPath string) error {
	data, err := os.ReadFile(issuedPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("gateway certificates: %w", err)
	default:
		if err := json.Unmarshal(data, &ca.issued); err != nil {
			return fmt.Errorf("gateway certificates %s: %w", issuedPath, err)
		}
	}
	ca.issuedPath, ca.crlPath = issuedPath, crlPath
	return nil
}

// record adds a certificate to the record and saves it; ca.mu is held.
func (ca *CA) record(c issuedCert) error {
	if ca.issuedPath == "" {
		return nil
	}
	now := ca.now()
	kept := slices.DeleteFunc(slices.Clone(ca.issued), func(c issuedCert) bool { return now.After(c.NotAfter) })
	kept = append(kept, c)
	data, err := json.Marshal(kept)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(ca.issuedPath, data, 0o600); err != nil {
		return fmt.Errorf("gateway certificates: %w", err)
	}
	ca.issued = kept
	return nil
}

// WriteCRL writes the CRL (PEM, signed by the CA) of every unexpired
// certificate the CA issued whose gateway is no longer registered with
// that key: the gateway was deleted (revoked) or re-keyed. current returns
// a gateway's registered key. It returns the number of certificates
// listed. Without KeepRecord it does nothing.
func (ca *CA) WriteCRL(current func(id string) (ed25519.PublicKey, bool)) (int, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.crlPath == "" {
		return 0, nil
	}
	now := ca.now()
	var revoked []x509.RevocationListEntry
	for _, c := range ca.issued {
		if now.After(c.NotAfter) {
			continue
		}
		if key, ok := current(c.Gateway); ok && key.Equal(c.PublicKey) {
			continue
		}
		revoked = append(revoked, x509.RevocationListEntry{SerialNumber: c.Serial, RevocationTime: now})
	}
	// A CRL number only grows: the time in nanoseconds.
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(now.UnixNano()), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(crlLifetime),
		RevokedCertificateEntries: revoked,
	}, ca.cert, ca.key)
	if err != nil {
		return 0, fmt.Errorf("gateway crl: %w", err)
	}
	if err := atomicfile.Write(ca.crlPath, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600); err != nil {
		return 0, fmt.Errorf("gateway crl: %w", err)
	}
	return len(revoked), nil
}

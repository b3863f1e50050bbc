package fabricledger

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/testsvc"
)

func TestMapError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{status.Error(codes.Aborted, "failed to endorse transaction, see attached details for more info"), nil},
		{status.Error(codes.Unknown, "chaincode response 500, [not_found] asset srv-x: not found"), ledger.ErrNotFound},
		{status.Error(codes.Unknown, "chaincode response 500, [forbidden] register asset: role \"auditor\" may not: forbidden"), ledger.ErrForbidden},
		{status.Error(codes.Unknown, "[conflict] anchor 3 already covers events: conflict"), ledger.ErrConflict},
		{status.Error(codes.Unknown, "[invalid] anchor size 3: invalid"), ledger.ErrInvalid},
		{status.Error(codes.Unavailable, "connection refused"), ledger.ErrUnavailable},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), ledger.ErrUnavailable},
	} {
		got := mapError("Fn", tc.err)
		for _, s := range []error{ledger.ErrNotFound, ledger.ErrForbidden, ledger.ErrConflict, ledger.ErrInvalid, ledger.ErrUnavailable} {
			if is := errors.Is(got, s); is != (s == tc.want) {
				t.Errorf("mapError(%v) = %v: errors.Is(%v) = %v, want %v", tc.err, got, s, is, s == tc.want)
			}
		}
	}
	if mapError("Fn", nil) != nil {
		t.Errorf("mapError(nil) != nil")
	}
}

// selfSigned writes a P-256 certificate and PKCS#8 key, as Fabric CA issues.
func selfSigned(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestPeerAway dials a loopback port where no peer listens: calls fail as
// ErrUnavailable (the anchor queue waits on that), not as rule errors.
func TestPeerAway(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "twin-service")
	tlsCA, _ := selfSigned(t, dir, "peer0.org1.example.com")
	b, err := Dial(Config{PeerEndpoint: testsvc.Addr(testsvc.FreePort(t)), PeerHostOverride: "peer0.org1.example.com",
		TLSCACert: tlsCA, Channel: "twinchain", MSPID: "Org1MSP", CertFile: cert, KeyFile: key, Timeout: 2 * time.Second,
		IdentityDir: filepath.Join(dir, "ids")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l := ledger.New(b)
	_, err = l.SubmitAnchor(ledgertest.As(core.RoleService), core.AnchorInput{})
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("SubmitAnchor with no peer = %v, want ErrUnavailable", err)
	}
	// A user without an enrolled identity is refused before any call.
	_, err = l.GetAsset(ledgertest.As(core.RoleAuditor), "x")
	if !errors.Is(err, ledger.ErrForbidden) {
		t.Errorf("GetAsset as a user without an identity = %v, want ErrForbidden", err)
	}
	if _, err := Dial(Config{PeerEndpoint: "x:1"}); err == nil {
		t.Errorf("Dial(incomplete config) = nil error, want one")
	}
}

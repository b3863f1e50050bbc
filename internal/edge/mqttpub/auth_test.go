package mqttpub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/edge/diskqueue"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// writePKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate whose common name is cn, as PEM files in dir.
func writePKI(t *testing.T, dir, cn string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, tmpl *x509.Certificate) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		write(name+".pem", "CERTIFICATE", der)
		write(name+".key", "EC PRIVATE KEY", kder)
	}
	issue("server", 2, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	issue("client", 3, &x509.Certificate{Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
}

// runFor runs p for d and reports how many sessions it opened.
func runFor(p *Publisher, d time.Duration) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	p.Run(ctx)
	return p.Stats.Connects.Load()
}

// TestTLSClientCertificate connects through Mosquitto's TLS listener, which
// requires a client certificate and takes the gateway id from it.
func TestTLSClientCertificate(t *testing.T) {
	dir := t.TempDir()
	writePKI(t, dir, "gw-pub")
	tlsPort := testsvc.FreePort(t)
	// "user root": started as root, Mosquitto would switch users and could
	// not read the test's files (no effect when the tests do not run as root).
	broker := testsvc.StartMosquitto(t, fmt.Sprintf("user root\nlistener %d 127.0.0.1\ncafile %s/ca.pem\ncertfile %s/server.pem\nkeyfile %s/server.key\nrequire_certificate true\nuse_identity_as_username true\n",
		tlsPort, dir, dir, dir))
	if err := testsvc.WaitTCP(testsvc.Addr(tlsPort), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	sub := collect(t, broker.URL())
	q, _ := diskqueue.Open(t.TempDir(), diskqueue.Options{})
	defer q.Close()
	url := "ssl://" + testsvc.Addr(tlsPort)

	// Without a client certificate the broker refuses the connection.
	bare := newPublisher(t, url, q, 1000)
	bare.cfg.CAFile = filepath.Join(dir, "ca.pem")
	if n := runFor(bare, 1500*time.Millisecond); n != 0 {
		t.Errorf("connected %d times without a client certificate, want refused", n)
	}

	p := newPublisher(t, url, q, 1000)
	p.cfg.CAFile, p.cfg.CertFile, p.cfg.KeyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := p.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p.Publish(wire.KindGPS, time.Now(), wire.GPSFix{Asset: "gw-pub", Lat: 1, Quality: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testsvc.Eventually(t, 30*time.Second, "messages over TLS", func() bool { return q.Len() == 0 && sub.count() >= 2 })
	cancel()
	<-done
}

// TestPassword connects with a username and password from Mosquitto's
// password file, and is refused with a wrong one.
func TestPassword(t *testing.T) {
	tool, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		testsvc.Missing(t, "mosquitto_passwd not found (apt-get install -y mosquitto)")
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwords")
	if out, err := exec.Command(tool, "-c", "-b", pw, "gw-pub", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	broker := testsvc.StartMosquitto(t, fmt.Sprintf("user root\npassword_file %s\n", pw))
	sub := collect(t, broker.URL())
	q, _ := diskqueue.Open(t.TempDir(), diskqueue.Options{})
	defer q.Close()

	wrong := newPublisher(t, broker.URL(), q, 1000)
	wrong.cfg.Password = "guess"
	if n := runFor(wrong, 1500*time.Millisecond); n != 0 {
		t.Errorf("connected %d times with a wrong password, want refused", n)
	}
	p := newPublisher(t, broker.URL(), q, 1000)
	p.cfg.Password = "s3cret" // the username defaults to the gateway id
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testsvc.Eventually(t, 30*time.Second, "messages with a password", func() bool { return q.Len() == 0 && sub.count() >= 1 })
	cancel()
	<-done
}

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"twinchain/internal/atomicfile"
)

// HTTPTLS says how the API and dashboard are served over TLS.
type HTTPTLS struct {
	// CertFile and KeyFile are a PEM certificate (chain) and its key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// SelfSigned serves a certificate twin-service makes and keeps in
	// {data_dir}/tls/ (the default on a non-loopback address without
	// cert_file); set it to use one on loopback too.
	SelfSigned bool `yaml:"self_signed"`
}

// selfSignedValidity is how long a made certificate lasts; it is made
// again at start when less than a month is left.
const selfSignedValidity = 825 * 24 * time.Hour

func (c HTTPConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("http.addr %q: want host:port", c.Addr)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("http.tls: cert_file and key_file go together")
	}
	if c.Plaintext && (c.TLS.CertFile != "" || c.TLS.SelfSigned) {
		return errors.New("http.plaintext and http.tls: choose one")
	}
	return nil
}

// httpScheme says whether the API is served over TLS: with the configured
// certificate, or a self-signed one on a non-loopback address unless
// http.plaintext says otherwise (loopback: plaintext unless asked).
func (c HTTPConfig) tlsOn() bool {
	host, _, _ := net.SplitHostPort(c.Addr)
	switch {
	case c.TLS.CertFile != "" || c.TLS.SelfSigned:
		return true
	case c.Plaintext:
		return false
	}
	return !loopbackHost(host)
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpTLS is the API's TLS configuration (nil: plaintext) and a line for
// the operator saying which certificate it serves.
func httpTLS(c HTTPConfig, dataDir string) (*tls.Config, string, error) {
	if !c.tlsOn() {
		return nil, "", nil
	}
	certFile, keyFile := c.TLS.CertFile, c.TLS.KeyFile
	made := certFile == ""
	if made {
		dir := filepath.Join(dataDir, "tls")
		certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		if err := ensureSelfSigned(c.Addr, certFile, keyFile, time.Now()); err != nil {
			return nil, "", fmt.Errorf("http tls: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("http tls: %w", err)
	}
	fp := sha256.Sum256(cert.Certificate[0])
	what := fmt.Sprintf("certificate %s, SHA-256 %X", certFile, fp)
	if made {
		what = fmt.Sprintf("self-signed certificate %s, SHA-256 %X: trust that file in the browser, or give it to edge-agent enroll --ca", certFile, fp)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, what, nil
}

// ensureSelfSigned keeps a self-signed certificate for addr's host (and
// loopback) in certFile and keyFile, making a new one when there is none,
// it does not name the host, or less than a month of it is left.
func ensureSelfSigned(addr, certFile, keyFile string, now time.Time) error {
	host, _, _ := net.SplitHostPort(addr)
	ips, names := certNames(host)
	if old, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		if leaf, err := x509.ParseCertificate(old.Certificate[0]); err == nil &&
			now.Add(30*24*time.Hour).Before(leaf.NotAfter) && covers(leaf, ips, names) {
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "twin-service", Organization: []string{"twinchain (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so that the file itself can be trusted as a root
		IPAddresses:           ips,
		DNSNames:              names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600) // every data file is private; copy it to whoever needs it
}

// certNames are the addresses and names a certificate for host must hold:
// the host (every interface address when it is unspecified) and loopback.
func certNames(host string) ([]net.IP, []string) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	names := []string{"localhost"}
	ip := net.ParseIP(host)
	switch {
	case ip != nil && ip.IsUnspecified():
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
					ips = append(ips, n.IP)
				}
			}
		}
		if h, err := os.Hostname(); err == nil && h != "" {
			names = append(names, h)
		}
	case ip != nil:
		if !ip.IsLoopback() {
			ips = append(ips, ip)
		}
	case host != "" && host != "localhost":
		names = append(names, strings.ToLower(host))
	}
	return ips, names
}

func covers(c *x509.Certificate, ips []net.IP, names []string) bool {
	for _, ip := range ips {
		if c.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	for _, n := range names {
		if c.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

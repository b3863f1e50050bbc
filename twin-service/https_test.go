package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/enroll"
	"twinchain/internal/testsvc"
)

// TestHTTPS serves the API with the self-signed certificate: the session
// cookie is Secure, plaintext gets nothing, the key is private, a restart
// keeps the certificate, and edge-agent enroll reaches https:// with --ca
// (and refuses without it). On main the API had no TLS at all.
func TestHTTPS(t *testing.T) {
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{TLS: true})
	if !strings.HasPrefix(svc.URL, "https://") || !strings.Contains(svc.Output(), "dashboard at https://") {
		t.Fatalf("URL %s, output:\n%s", svc.URL, svc.Output())
	}
	resp, err := svc.Client.Post(svc.URL+"/api/v1/auth/login", "application/json",
		strings.NewReader(`{"username":"admin","password":"`+svc.AdminPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(resp.Cookies()) == 0 {
		t.Fatalf("sign-in over https = %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	for _, c := range resp.Cookies() {
		if !c.Secure {
			t.Errorf("cookie %s is not Secure over TLS", c.Name)
		}
	}
	if resp, err := http.Get("http://" + svc.HTTPAddr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plaintext GET /readyz on the TLS port = 200")
		}
	}
	certFile := filepath.Join(svc.DataDir, "tls", "cert.pem")
	if fi, err := os.Stat(filepath.Join(svc.DataDir, "tls", "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tls/key.pem: %v %v, want mode 0600", fi, err)
	}
	fingerprint := func() [32]byte {
		conn, err := tls.Dial("tcp", svc.HTTPAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	}
	before := fingerprint()
	svc.Restart(t)
	if fingerprint() != before {
		t.Errorf("a restart served another certificate")
	}

	agentBin := filepath.Join(testsvc.Programs(t, "edge-agent"), "edge-agent")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(conf, []byte("gateway_id: gw-tls\nstate_dir: "+filepath.Join(dir, "state")+"\nmqtt: {broker: tcp://"+svc.MQTTAddr+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ca   []string
		ok   bool
	}{{"without --ca", nil, false}, {"with --ca", []string{"--ca", certFile}, true}} {
		tok, err := enroll.IssueToken(ctx, svc.Client, svc.URL, svc.AdminToken, enroll.TokenRequest{Site: "s1", GatewayID: "gw-tls"})
		if err != nil {
			t.Fatalf("issue token over https: %v", err)
		}
		p := testsvc.StartProcess(t, agentBin, append([]string{"enroll", "--config", conf, "--server", svc.URL, "--token", tok.Token}, tc.ca...)...)
		err = p.Wait()
		if tc.ok != (err == nil) {
			t.Errorf("edge-agent enroll %s: %v, want ok=%v\n%s", tc.name, err, tc.ok, p.Output)
		}
		if !tc.ok && !strings.Contains(p.Output.String(), "certificate") {
			t.Errorf("edge-agent enroll %s failed without naming the certificate:\n%s", tc.name, p.Output)
		}
	}
}

// TLS is on by default off loopback, plaintext on loopback or when asked.
func TestHTTPTLSDefaults(t *testing.T) {
	for _, tc := range []struct {
		c    HTTPConfig
		want bool
	}{
		{HTTPConfig{Addr: "127.0.0.1:8080"}, false},
		{HTTPConfig{Addr: "[::1]:8080"}, false},
		{HTTPConfig{Addr: "localhost:8080"}, false},
		{HTTPConfig{Addr: "0.0.0.0:8080"}, true},
		{HTTPConfig{Addr: ":8080"}, true},
		{HTTPConfig{Addr: "twin.lan:8443"}, true},
		{HTTPConfig{Addr: "0.0.0.0:8080", Plaintext: true}, false},
		{HTTPConfig{Addr: "127.0.0.1:8080", TLS: HTTPTLS{SelfSigned: true}}, true},
		{HTTPConfig{Addr: "127.0.0.1:8080", TLS: HTTPTLS{CertFile: "c", KeyFile: "k"}}, true},
	} {
		if got := tc.c.tlsOn(); got != tc.want {
			t.Errorf("%+v: tlsOn() = %v, want %v", tc.c, got, tc.want)
		}
	}
	for _, bad := range []HTTPConfig{
		{Addr: "8080"},
		{Addr: "0.0.0.0:8080", TLS: HTTPTLS{CertFile: "c"}},
		{Addr: "0.0.0.0:8080", Plaintext: true, TLS: HTTPTLS{SelfSigned: true}},
	} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v: validate() = nil, want an error", bad)
		}
	}
	// The made certificate names the host it serves; a new host gets a new one.
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, host := range []string{"10.1.2.3", "twin.lan"} {
		if err := ensureSelfSigned(host+":8443", cert, key, time.Now()); err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		for _, name := range []string{host, "127.0.0.1", "localhost"} {
			if err := leaf.VerifyHostname(name); err != nil {
				t.Errorf("certificate made for %s: %v", host, err)
			}
		}
	}
}

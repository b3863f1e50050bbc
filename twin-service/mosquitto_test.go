package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/edge/enroll"
	"twinchain/internal/registry"
	"twinchain/internal/registry/enrollment"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// shippedMosquitto is a real Mosquitto running deploy/mosquitto's
// configuration unchanged but for its paths and ports: gateways on mutual
// TLS with certificates from a gateway CA, twin-service with its own user.
type shippedMosquitto struct {
	*testsvc.Mosquitto
	ca          *enrollment.CA
	dir         string // /etc/mosquitto/twinchain/ of the configuration
	gatewayURL  string // ssl://127.0.0.1:port
	serviceURL  string // tcp://127.0.0.1:port
	serviceUser string
	servicePW   string
}

func startShippedMosquitto(t *testing.T) *shippedMosquitto {
	t.Helper()
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		testsvc.Missing(t, "mosquitto_passwd not found (apt-get install -y mosquitto)")
	}
	dir := t.TempDir()
	// twin-service's gateway CA, as the configuration names it.
	ca, err := enrollment.OpenCA(filepath.Join(dir, "gateway-ca.pem"), filepath.Join(dir, "gateway-ca.key"), true, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.ServerCertificate([]string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srv.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, der := range srv.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	// The CRL the configuration's crlfile names, empty: as twin-service
	// writes it ({data_dir}/gateway-crl.pem) before any gateway is revoked.
	if err := ca.KeepRecord(filepath.Join(dir, enrollment.IssuedFile), filepath.Join(dir, enrollment.CRLFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WriteCRL(func(string) (ed25519.PublicKey, bool) { return nil, false }); err != nil {
		t.Fatal(err)
	}
	m := &shippedMosquitto{ca: ca, dir: dir, serviceUser: "twin-service@test", servicePW: "service-secret"}
	files := map[string][]byte{"server.pem": chain, "server.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
	for _, f := range []string{"acl-gateways", "acl-service"} {
		if files[f], err = os.ReadFile(filepath.Join("..", "deploy", "mosquitto", f)); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(passwd, "-c", "-b", filepath.Join(dir, "passwd"), m.serviceUser, m.servicePW).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	if err := os.Mkdir(filepath.Join(dir, "persist"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join("..", "deploy", "mosquitto", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	gwAddr, svcAddr := testsvc.Addr(testsvc.FreePort(t)), testsvc.Addr(testsvc.FreePort(t))
	text := string(conf)
	for _, r := range [][2]string{
		{"/etc/mosquitto/twinchain/", dir + "/"},
		{"/var/lib/mosquitto/", dir + "/persist/"},
		{"\nlistener 8883\n", "\nlistener " + strings.TrimPrefix(gwAddr, "127.0.0.1:") + " 127.0.0.1\n"},
		{"\nlistener 1884 127.0.0.1\n", "\nlistener " + strings.TrimPrefix(svcAddr, "127.0.0.1:") + " 127.0.0.1\n"},
	} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("deploy/mosquitto/mosquitto.conf has no %q any more: update this test", r[0])
		}
		text = strings.ReplaceAll(text, r[0], r[1])
	}
	// "user root": started as root, Mosquitto would switch users and could
	// not read the test's files (no effect when the tests do not run as root).
	text = "user root\nlog_dest stderr\nlog_type error\nlog_type warning\n" + text
	m.Mosquitto = testsvc.StartMosquittoConf(t, text, svcAddr)
	if err := testsvc.WaitTCP(gwAddr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	m.gatewayURL, m.serviceURL = "ssl://"+gwAddr, "tcp://"+svcAddr
	return m
}

// serviceConfig is twin-service's YAML for this broker.
func (m *shippedMosquitto) serviceConfig() string {
	return fmt.Sprintf("mqtt:\n  mode: external\n  external:\n    url: %s\n    username: %q\n    password: %q\n", m.serviceURL, m.serviceUser, m.servicePW)
}

// gateway connects gw over mutual TLS with a certificate the gateway CA
// issued on k, as an enrolled gateway does.
func (m *shippedMosquitto) gateway(t *testing.T, gw string, k ed25519.PrivateKey) paho.Client {
	t.Helper()
	certPEM, err := m.ca.IssueGateway(gw, k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.connect(gw, certPEM, k)
	if err != nil {
		t.Fatalf("gateway %s: connect over TLS: %v", gw, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// connect connects gw over mutual TLS with the client certificate certPEM
// on k.
func (m *shippedMosquitto) connect(gw string, certPEM []byte, k ed25519.PrivateKey) (paho.Client, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, fmt.Errorf("no PEM certificate")
	}
	tc := &tls.Config{RootCAs: m.ca.Pool(), Certificates: []tls.Certificate{{Certificate: [][]byte{block.Bytes}, PrivateKey: k}}}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(m.gatewayURL).SetClientID(gw).SetTLSConfig(tc).
		SetCleanSession(false).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(20 * time.Second) {
		return nil, fmt.Errorf("connect: timed out")
	}
	return c, tok.Error()
}

func gatewayKey(gw string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("mosquitto test " + gw))
	return ed25519.NewKeyFromSeed(seed[:])
}

// TestMosquittoOutageStoredOnce: with deploy/mosquitto's configuration,
// twin-service is stopped while 3 gateways publish 3,000 messages over
// mutual TLS, and Mosquitto is restarted before twin-service comes back;
// every message Mosquitto acknowledged to a gateway is stored exactly once.
func TestMosquittoOutageStoredOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Mosquitto and twin-service")
	}
	m := startShippedMosquitto(t)
	gws := []string{"gw-out-1", "gw-out-2", "gw-out-3"}
	var file registry.File
	for _, gw := range gws {
		file.Gateways = append(file.Gateways, registry.Gateway{ID: gw, PublicKey: gatewayKey(gw).Public().(ed25519.PublicKey), Site: "s1"})
	}
	regPath := filepath.Join(t.TempDir(), "registry.json")
	if err := registry.WriteFile(regPath, file); err != nil {
		t.Fatal(err)
	}
	// Ready means the probe went round through the shipped ACL.
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Config: m.serviceConfig(), Registry: regPath, Tokens: []testsvc.Token{viewer}})

	clients := map[string]paho.Client{}
	for _, gw := range gws {
		clients[gw] = m.gateway(t, gw, gatewayKey(gw))
	}
	acked := map[string][]uint64{}
	send := func(from, to uint64) {
		t.Helper()
		for _, gw := range gws {
			toks := make([]paho.Token, 0, to-from+1)
			for seq := from; seq <= to; seq++ {
				env, err := wire.Seal(gatewayKey(gw), gw, seq, time.Now(), wire.KindStatus, wire.Status{State: wire.StateOnline, QueueDepth: int(seq)})
				if err != nil {
					t.Fatal(err)
				}
				toks = append(toks, clients[gw].Publish(wire.Topic(gw, wire.KindStatus), 1, false, env))
			}
			for i, tok := range toks {
				if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
					acked[gw] = append(acked[gw], from+uint64(i))
				}
			}
		}
	}
	accepted := func() uint64 {
		var st struct{ Accepted uint64 }
		getJSON(t, svc.URL+"/api/v1/stats/ingest", &st)
		return st.Accepted
	}
	send(1, 10)
	testsvc.Eventually(t, 60*time.Second, "30 messages stored while twin-service runs", func() bool { return accepted() >= 30 })

	if err := svc.Stop(); err != nil {
		t.Fatalf("stop twin-service: %v", err)
	}
	const outage = 1000 // per gateway
	send(11, 10+outage)
	total := 0
	for _, gw := range gws {
		total += len(acked[gw])
	}
	if total < 3000 {
		t.Fatalf("Mosquitto acknowledged %d messages, want every one of %d", total, 3*(10+outage))
	}
	// Mosquitto restarts too (a clean stop): the queue survives on disk.
	m.Restart(t)
	svc.Restart(t)
	// Accepted counts from the restart: the outage's messages.
	for deadline := time.Now().Add(120 * time.Second); accepted() < uint64(3*outage); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart twin-service stored %d of the %d messages Mosquitto acknowledged during the outage", accepted(), 3*outage)
		}
	}
	if err := svc.Stop(); err != nil {
		t.Fatalf("stop twin-service: %v", err)
	}

	store, err := twinstore.Open(filepath.Join(svc.DataDir, "twins.db"), twinstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stored := map[string]map[uint64]int{}
	for pos := uint64(0); ; {
		batch, err := store.MessagesAfter(pos, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		for _, msg := range batch {
			if stored[msg.Gateway] == nil {
				stored[msg.Gateway] = map[uint64]int{}
			}
			stored[msg.Gateway][msg.Seq]++
			pos = msg.Pos
		}
	}
	for _, gw := range gws {
		missing, twice := 0, 0
		for _, seq := range acked[gw] {
			switch stored[gw][seq] {
			case 0:
				missing++
			case 1:
			default:
				twice++
			}
		}
		if missing > 0 || twice > 0 || len(stored[gw]) != len(acked[gw]) {
			t.Errorf("%s: %d acknowledged, %d stored; %d missing, %d stored more than once", gw, len(acked[gw]), len(stored[gw]), missing, twice)
		}
	}
	t.Logf("Mosquitto acknowledged %d messages (%d during the outage); each stored exactly once", total, 3*outage)
}

// TestMosquittoRefusesRevokedCertificate: twin-service (external mode, the
// operator's gateway CA) enrolls two gateways, whose certificates connect to
// Mosquitto with deploy/mosquitto's configuration; revoking one over the API
// makes twin-service rewrite {data_dir}/gateway-crl.pem with that
// certificate in it, and once the file is installed as Mosquitto's crlfile
// and Mosquitto reloaded (SIGHUP), Mosquitto refuses that certificate at
// CONNECT while the other gateway still connects. A re-keyed gateway's old
// certificate goes the same way.
func TestMosquittoRefusesRevokedCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Mosquitto and twin-service")
	}
	m := startShippedMosquitto(t)
	cfg := m.serviceConfig() + fmt.Sprintf("  gateway_ca:\n    cert_file: %s\n    key_file: %s\n",
		filepath.Join(m.dir, "gateway-ca.pem"), filepath.Join(m.dir, "gateway-ca.key"))
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Config: cfg})
	certs := map[string][]byte{}
	keys := map[string]ed25519.PrivateKey{"gw-crl-keep": gatewayKey("gw-crl-keep"), "gw-crl-revoke": gatewayKey("gw-crl-revoke"), "gw-crl-rekey": gatewayKey("gw-crl-rekey")}
	for gw, k := range keys {
		var tok enroll.Token
		if st := apiDo(t, svc, http.MethodPost, enroll.PathTokens, enroll.TokenRequest{Site: "s1", GatewayID: gw}, &tok); st != http.StatusOK && st != http.StatusCreated {
			t.Fatalf("enrollment token for %s: %d", gw, st)
		}
		resp, err := enroll.Enroll(context.Background(), http.DefaultClient, svc.URL, enroll.NewRequest(k, tok.Token, gw, ""))
		if err != nil {
			t.Fatal(err)
		}
		certs[gw] = []byte(resp.Certificate)
		c, err := m.connect(gw, certs[gw], k)
		if err != nil {
			t.Fatalf("%s before the revocation: %v", gw, err)
		}
		c.Disconnect(100)
	}
	serial := func(gw string) string {
		block, _ := pem.Decode(certs[gw])
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c.SerialNumber.String()
	}

	// Revoke one, re-key another (its old certificate must go too).
	if st := apiDo(t, svc, http.MethodDelete, "/gateways/gw-crl-revoke", nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE gw-crl-revoke = %d", st)
	}
	var tok enroll.Token
	apiDo(t, svc, http.MethodPost, enroll.PathTokens, enroll.TokenRequest{Site: "s1", GatewayID: "gw-crl-rekey"}, &tok)
	newKey := seededKey(77)
	if _, err := enroll.Enroll(context.Background(), http.DefaultClient, svc.URL, enroll.NewRequest(newKey, tok.Token, "gw-crl-rekey", "")); err != nil {
		t.Fatal(err)
	}
	crlPath := filepath.Join(svc.DataDir, enrollment.CRLFile)
	var listed map[string]bool
	testsvc.Eventually(t, 20*time.Second, "both certificates in "+crlPath, func() bool {
		data, err := os.ReadFile(crlPath)
		if err != nil {
			return false
		}
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "X509 CRL" {
			return false
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", crlPath, err)
		}
		if err := crl.CheckSignatureFrom(caCert(t, m.ca)); err != nil {
			t.Fatalf("%s is not signed by the gateway CA: %v", crlPath, err)
		}
		listed = map[string]bool{}
		for _, e := range crl.RevokedCertificateEntries {
			listed[e.SerialNumber.String()] = true
		}
		return listed[serial("gw-crl-revoke")] && listed[serial("gw-crl-rekey")]
	})
	if listed[serial("gw-crl-keep")] {
		t.Error("the CRL lists the certificate of a gateway still enrolled with its key")
	}

	// Install the CRL as the operator does (README: copy, then reload).
	data, err := os.ReadFile(crlPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, enrollment.CRLFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, gw := range []string{"gw-crl-revoke", "gw-crl-rekey"} {
		testsvc.Eventually(t, 10*time.Second, gw+"'s certificate refused after the reload", func() bool {
			c, err := m.connect(gw, certs[gw], keys[gw])
			if err == nil {
				c.Disconnect(0)
			}
			return err != nil
		})
	}
	c, err := m.connect("gw-crl-keep", certs["gw-crl-keep"], keys["gw-crl-keep"])
	if err != nil {
		t.Fatalf("gw-crl-keep after the reload: %v", err)
	}
	c.Disconnect(100)
}

func caCert(t *testing.T, ca *enrollment.CA) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(ca.CertPEM())
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

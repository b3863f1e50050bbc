package testsvc

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TwinServiceOptions says how to start twin-service. Every field is optional.
type TwinServiceOptions struct {
	// Config is YAML for twin-service's -config file. Tokens and the admin
	// token are added to its auth.tokens.
	Config string
	// Tokens are API tokens the service accepts, added to the config.
	Tokens []Token
	// DetectConfig is the -detect-config file, Registry the -registry file.
	DetectConfig, Registry string
	// DataDir is the -data directory; "" a new one under t.TempDir().
	DataDir string
	// HTTPAddr and MQTTAddr are the -http and -mqtt-addr listen addresses;
	// "" a spare loopback port each.
	HTTPAddr, MQTTAddr string
	// TLS serves the API with the service's self-signed certificate
	// (-http-self-signed): URL is https:// and Client trusts that
	// certificate.
	TLS bool
	// Args are more flags, after the helper's own (-log-level warn among
	// them, which a later -log-level overrides).
	Args []string
}

// Token is an API token: its secret, and the name and role the service
// gives whoever presents it.
type Token struct {
	Name, Role, Secret string
}

// TwinService is a twin-service process owned by one test, started from the
// binary Programs builds.
type TwinService struct {
	URL string // http://127.0.0.1:port (https:// with TLS)
	// Client is an HTTP client for URL: with TLS, one that trusts the
	// service's certificate ({DataDir}/tls/cert.pem).
	Client   *http.Client
	HTTPAddr string // 127.0.0.1:port
	MQTTAddr string // 127.0.0.1:port of the embedded broker
	DataDir  string
	// AdminToken is an API token with role admin.
	AdminToken string
	// AdminPassword is the password of the admin user the service made in
	// DataDir at its first start, read from DataDir/admin-password ("" when
	// sign-in is off, or when that file is gone).
	AdminPassword string
	// Proc is the running process; Restart replaces it.
	Proc *Process

	t    testing.TB
	bin  string
	args []string
}

// MQTTURL is the embedded broker's tcp:// URL.
func (s *TwinService) MQTTURL() string { return "tcp://" + s.MQTTAddr }

// StartTwinService builds twin-service (once per test binary), starts it
// with no TWINCHAIN_* environment variables, and waits until /readyz
// answers 200 (the HTTP API is up and MQTT is connected) and the sign-in
// line is printed; it fails t at once if the process exits first. t.Cleanup
// stops it with SIGTERM (SIGKILL after 20s); when the test failed, its
// output is logged.
func StartTwinService(t testing.TB, opts TwinServiceOptions) *TwinService {
	t.Helper()
	dir := t.TempDir()
	s := &TwinService{t: t, DataDir: opts.DataDir, HTTPAddr: opts.HTTPAddr, MQTTAddr: opts.MQTTAddr}
	if s.DataDir == "" {
		s.DataDir = filepath.Join(dir, "data")
	}
	if s.HTTPAddr == "" {
		s.HTTPAddr = Addr(FreePort(t))
	}
	if s.MQTTAddr == "" {
		s.MQTTAddr = Addr(FreePort(t))
	}
	s.URL = "http://" + s.HTTPAddr
	s.Client = http.DefaultClient
	if opts.TLS {
		s.URL = "https://" + s.HTTPAddr
		opts.Args = append([]string{"-http-self-signed", "true"}, opts.Args...)
	}
	s.AdminToken = "tc_testsvc_admin_" + rand.Text()
	tokens := append([]Token{{Name: "testsvc-admin", Role: "admin", Secret: s.AdminToken}}, opts.Tokens...)
	conf, err := withTokens(opts.Config, tokens)
	if err != nil {
		t.Fatalf("twin-service config: %v", err)
	}
	confPath := filepath.Join(dir, "twin-service.yaml")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{"-config", confPath, "-data", s.DataDir, "-http", s.HTTPAddr, "-mqtt-addr", s.MQTTAddr, "-log-level", "warn"}
	if opts.DetectConfig != "" {
		s.args = append(s.args, "-detect-config", opts.DetectConfig)
	}
	if opts.Registry != "" {
		s.args = append(s.args, "-registry", opts.Registry)
	}
	s.args = append(s.args, opts.Args...)
	s.bin = filepath.Join(Programs(t, "twin-service"), "twin-service")
	s.start(nil)
	return s
}

func (s *TwinService) start(extra []string) {
	s.t.Helper()
	s.Proc = startProcess(s.t, serviceEnv(), s.bin, append(append([]string(nil), s.args...), extra...)...)
	p := s.Proc
	client := &http.Client{Timeout: 2 * time.Second}
	ready := func() bool {
		if strings.HasPrefix(s.URL, "https:") {
			pem, err := os.ReadFile(filepath.Join(s.DataDir, "tls", "cert.pem"))
			if err != nil {
				return false // not written yet
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(pem)
			s.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
			client = &http.Client{Timeout: 2 * time.Second, Transport: s.Client.Transport}
		}
		resp, err := client.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && strings.Contains(p.Output.String(), "twin-service: sign")
	}
	Eventually(s.t, 60*time.Second, "twin-service ready (/readyz and the sign-in line)", func() bool {
		select {
		case <-p.Exited():
			s.t.Fatalf("twin-service exited before it was ready: %v\n%s", p.Wait(), Tail(p.Output.String(), 16<<10))
		default:
		}
		return ready()
	})
	if pw, err := os.ReadFile(filepath.Join(s.DataDir, "admin-password")); err == nil {
		s.AdminPassword = strings.TrimSpace(string(pw))
	}
}

// Restart stops the service if it still runs (SIGTERM, as Stop), then starts
// it again over the same data directory and ports with the same flags, plus
// extraArgs, and waits until it is ready.
func (s *TwinService) Restart(t testing.TB, extraArgs ...string) {
	t.Helper()
	_ = s.Proc.Stop() // often after Kill: the status says only how it was stopped
	s.t = t
	s.start(extraArgs)
}

// Stop stops the service with SIGTERM (SIGKILL after 20s) and returns its
// exit error: nil after a clean shutdown.
func (s *TwinService) Stop() error { return s.Proc.Stop() }

// Kill stops the service with SIGKILL, as a crash would.
func (s *TwinService) Kill() { s.Proc.Kill() }

// Output is everything the running process has printed.
func (s *TwinService) Output() string { return s.Proc.Output.String() }

// serviceEnv is the test's environment without TWINCHAIN_* variables, so
// that only the options configure the service (a TWINCHAIN_LEDGER or
// TWINCHAIN_NO_AUTH in the shell that runs the tests would change it).
func serviceEnv() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TWINCHAIN_") {
			env = append(env, kv)
		}
	}
	return env
}

// withTokens adds tokens to the auth.tokens of the YAML configuration conf.
func withTokens(conf string, tokens []Token) ([]byte, error) {
	doc := map[string]any{}
	if err := yaml.Unmarshal([]byte(conf), &doc); err != nil {
		return nil, err
	}
	if doc == nil {
		doc = map[string]any{}
	}
	auth, _ := doc["auth"].(map[string]any)
	if auth == nil {
		if doc["auth"] != nil {
			return nil, fmt.Errorf("auth is %T, want a mapping", doc["auth"])
		}
		auth = map[string]any{}
	}
	list, _ := auth["tokens"].([]any)
	for _, tk := range tokens {
		sum := sha256.Sum256([]byte(tk.Secret))
		list = append(list, map[string]any{"name": tk.Name, "role": tk.Role, "sha256": hex.EncodeToString(sum[:])})
	}
	auth["tokens"] = list
	doc["auth"] = auth
	return yaml.Marshal(doc)
}

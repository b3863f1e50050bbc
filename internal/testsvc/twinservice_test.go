package testsvc

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestWithTokens(t *testing.T) {
	conf := "log: {level: warn}\nauth:\n  tokens:\n    - {name: old, role: viewer, sha256: abc}\n  session_ttl: 1h\n"
	out, err := withTokens(conf, []Token{{Name: "new", Role: "admin", Secret: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Log  struct{ Level string }
		Auth struct {
			SessionTTL string `yaml:"session_ttl"`
			Tokens     []struct{ Name, Role, SHA256 string }
		}
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	const sumOfS = "043a718774c572bd8a25adbeb1bfcd5c0256ae11cecf9f9c3f925d0e52beaf89"
	if got.Log.Level != "warn" || got.Auth.SessionTTL != "1h" || len(got.Auth.Tokens) != 2 ||
		got.Auth.Tokens[0].Name != "old" || got.Auth.Tokens[1].Name != "new" || got.Auth.Tokens[1].Role != "admin" || got.Auth.Tokens[1].SHA256 != sumOfS {
		t.Errorf("withTokens(%q) = %s, want the old settings kept and the new token added with its SHA-256", conf, out)
	}
	if _, err := withTokens("auth: [1]", nil); err == nil {
		t.Errorf("withTokens(auth as a list) = nil error, want one")
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 10*time.Second, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

// TestStartTwinService: the service is ready when it returns, accepts the
// admin token and the printed admin password, keeps its data across a
// Restart, and exits cleanly on Stop.
func TestStartTwinService(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts twin-service")
	}
	s := StartTwinService(t, TwinServiceOptions{Tokens: []Token{{Name: "v", Role: "viewer", Secret: "viewer-secret"}}})
	me := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/auth/me", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Role string }
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Role
	}
	for _, tc := range []struct{ token, role string }{{s.AdminToken, "admin"}, {"viewer-secret", "viewer"}} {
		if code, role := me(tc.token); code != 200 || role != tc.role {
			t.Errorf("GET /auth/me with the %s token = %d %q, want 200 %q", tc.role, code, role, tc.role)
		}
	}
	if code, _ := me("not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("GET /auth/me with a wrong token = %d, want 401", code)
	}
	login := func() int {
		resp, err := http.Post(s.URL+"/api/v1/auth/login", "application/json",
			strings.NewReader(`{"username":"admin","password":"`+s.AdminPassword+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s.AdminPassword == "" || login() != 200 {
		t.Errorf("sign-in as admin with the password from the admin-password file %q failed", s.AdminPassword)
	}
	// The password is in a file only its owner reads, never in the output.
	if fi, err := os.Stat(s.DataDir + "/admin-password"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin-password file: %v, %v, want mode 0600", fi, err)
	}
	if s.AdminPassword != "" && strings.Contains(s.Output(), s.AdminPassword) {
		t.Errorf("twin-service printed the admin password:\n%s", s.Output())
	}
	if _, err := os.Stat(s.DataDir + "/users.yaml"); err != nil {
		t.Errorf("no users file in the data directory: %v", err)
	}
	s.Restart(t)
	if s.AdminPassword == "" || login() != 200 {
		t.Errorf("after a restart, sign-in with the first start's password failed")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("twin-service after SIGTERM: %v", err)
	}
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	RemovePrograms()
	os.Exit(code)
}

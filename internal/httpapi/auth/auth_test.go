package auth

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// src is the address the tests sign in from.
const src = "192.0.2.1"

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newAuth(t *testing.T, c *clock, max int) *Authenticator {
	t.Helper()
	a, err := New(Config{
		Users: []UserConfig{
			{Name: "ada", Role: Security, PasswordHash: hash(t, "correct horse")},
			{Name: "vic", Role: Viewer, PasswordHash: hash(t, "viewer pass")},
		},
		Tokens:      []TokenConfig{{Name: "ci", Role: Auditor, SHA256: HashToken("tc_secret")}},
		SessionTTL:  time.Hour,
		MaxSessions: max,
	}, c.now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		role Role
		act  Action
		want bool
	}{
		{Viewer, ReadAll, true},
		{Viewer, AckAlerts, false},
		{Security, AckAlerts, true},
		{Maintenance, AckAlerts, false},
		{Maintenance, WriteWorkOrders, true},
		{Maintenance, ApproveWorkOrders, false},
		{AssetManager, ApproveWorkOrders, true},
		{MLEngineer, LedgerWrite, true},
		{Auditor, WriteAssets, false},
		{MLLead, ReadAll, true},
		{MLLead, WriteAssets, false},
		{Compliance, ReadAll, true},
		{Compliance, AckAlerts, false},
		{Admin, AckAlerts, true},
		{Admin, QuarantineAssets, true},
		{Security, QuarantineAssets, true},
		{AssetManager, QuarantineAssets, false},
		{AssetManager, GatewayKeys, false},
		{Security, GatewayKeys, true},
		{Maintenance, MaintainAssets, true},
		{Maintenance, WriteAssets, false},
		{Auditor, LedgerWrite, false},
		{Role("root"), ReadAll, false},
	} {
		if got := Allowed(tc.role, tc.act); got != tc.want {
			t.Errorf("Allowed(%s, %s) = %v, want %v", tc.role, tc.act, got, tc.want)
		}
	}
	if got := len(Actions(Admin)); got != len(Policy()) {
		t.Errorf("len(Actions(admin)) = %d, want %d", got, len(Policy()))
	}
}

func TestLoginSessionLogout(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuth(t, c, 100)
	for _, tc := range []struct{ name, pw string }{
		{"ada", "wrong"}, {"nobody", "correct horse"}, {"", ""},
	} {
		if _, err := a.Login(src, tc.name, tc.pw); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Login(%q, %q) error = %v, want ErrBadCredentials", tc.name, tc.pw, err)
		}
	}
	s, err := a.Login(src, "ada", "correct horse")
	if err != nil {
		t.Fatalf("Login(ada) = %v", err)
	}
	if s.ID == "" || s.CSRF == "" || s.ID == s.CSRF {
		t.Fatalf("session id %q csrf %q: want two different non-empty values", s.ID, s.CSRF)
	}
	p, ok := a.Session(s.ID)
	if !ok || p.Name != "ada" || p.Role != Security || p.Via != "session" {
		t.Fatalf("Session = %+v, %v, want ada/security/session", p, ok)
	}
	if !CheckCSRF(p, s.CSRF) || CheckCSRF(p, s.CSRF+"x") || CheckCSRF(p, "") {
		t.Errorf("CheckCSRF accepts only the session's token: failed")
	}
	// Use within the TTL slides the expiry; a full TTL of silence ends it.
	c.t = c.t.Add(50 * time.Minute)
	if _, ok := a.Session(s.ID); !ok {
		t.Fatalf("session gone after 50m of a 1h TTL")
	}
	c.t = c.t.Add(50 * time.Minute)
	if _, ok := a.Session(s.ID); !ok {
		t.Fatalf("session gone 50m after its last use")
	}
	c.t = c.t.Add(61 * time.Minute)
	if _, ok := a.Session(s.ID); ok {
		t.Fatalf("session alive 61m after its last use, want expired")
	}
	s2, err := a.Login(src, "vic", "viewer pass")
	if err != nil {
		t.Fatal(err)
	}
	a.Logout(s2.ID)
	if _, ok := a.Session(s2.ID); ok {
		t.Errorf("session alive after Logout")
	}
	if _, ok := a.Session(""); ok {
		t.Errorf("empty session id accepted")
	}
}

func TestSessionTableBounded(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuth(t, c, 3)
	var ids []string
	for i := 0; i < 5; i++ {
		c.t = c.t.Add(time.Second)
		s, err := a.Login(src, "vic", "viewer pass")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	if n := len(a.sessions); n != 3 {
		t.Errorf("sessions after 5 logins with max 3 = %d, want 3", n)
	}
	if _, ok := a.Session(ids[0]); ok {
		t.Errorf("oldest session kept, want evicted")
	}
	if _, ok := a.Session(ids[4]); !ok {
		t.Errorf("newest session evicted")
	}
}

func TestToken(t *testing.T) {
	a := newAuth(t, &clock{time.Now()}, 10)
	p, ok := a.Token("tc_secret")
	if !ok || p.Name != "ci" || p.Role != Auditor || p.Via != "token" || p.CSRF != "" {
		t.Errorf("Token(tc_secret) = %+v, %v, want ci/auditor/token", p, ok)
	}
	for _, bad := range []string{"", "tc_secre", "tc_secret "} {
		if _, ok := a.Token(bad); ok {
			t.Errorf("Token(%q) accepted", bad)
		}
	}
	tok, err := NewToken(rand.Reader)
	if err != nil || !strings.HasPrefix(tok, "tc_") || len(tok) < 40 {
		t.Errorf("NewToken() = %q, %v", tok, err)
	}
}

func TestValidate(t *testing.T) {
	good := hash(t, "password1")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{Users: []UserConfig{{Role: Viewer, PasswordHash: good}}}, "no name"},
		{"twice", Config{Users: []UserConfig{{Name: "a", Role: Viewer, PasswordHash: good}, {Name: "a", Role: Admin, PasswordHash: good}}}, "twice"},
		{"role", Config{Users: []UserConfig{{Name: "a", Role: "root", PasswordHash: good}}}, "unknown role"},
		{"plain password", Config{Users: []UserConfig{{Name: "a", Role: Viewer, PasswordHash: "hunter22"}}}, "not a bcrypt hash"},
		{"token hash", Config{Tokens: []TokenConfig{{Name: "t", Role: Viewer, SHA256: "abc"}}}, "64 hex"},
		{"ok", Config{Users: []UserConfig{{Name: "a", Role: Viewer, PasswordHash: good}}, Tokens: []TokenConfig{{Name: "t", Role: Viewer, SHA256: HashToken("x")}}}, ""},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want error containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := HashPassword("short"); err == nil {
		t.Errorf("HashPassword(short) = nil error, want too short")
	}
}

func TestEnsureAdmin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "users.yaml")
	pw, err := EnsureAdmin(path, rand.Reader)
	if err != nil || len(pw) != 12 {
		t.Fatalf("EnsureAdmin() = %q, %v, want a 12-character password", pw, err)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), pw) {
		t.Errorf("users file holds the plain password")
	}
	pwFile := AdminPasswordFile(path)
	if got, err := os.ReadFile(pwFile); err != nil || strings.TrimSpace(string(got)) != pw {
		t.Errorf("admin password file %s = %q, %v, want the password", pwFile, got, err)
	}
	for _, p := range []string{path, pwFile} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, %v, want 0600", p, fi.Mode(), err)
		}
	}
	users, err := LoadUsersFile(path)
	if err != nil || len(users) != 1 || users[0].Name != "admin" || users[0].Role != Admin {
		t.Fatalf("LoadUsersFile() = %+v, %v", users, err)
	}
	a, err := New(Config{Users: users}, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(src, "admin", pw); err != nil {
		t.Errorf("Login(admin, printed password) = %v", err)
	}
	again, err := EnsureAdmin(path, rand.Reader)
	if err != nil || again != "" {
		t.Errorf("second EnsureAdmin() = %q, %v, want \"\" (file kept)", again, err)
	}
}

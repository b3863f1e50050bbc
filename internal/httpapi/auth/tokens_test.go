package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTokenFile: a token made with CreateToken works at once, is listed
// with its role, maker and last use (never the token), survives a restart
// through the token file (0600, the SHA-256 only), and stops working when
// revoked; a configured token works beside it and cannot be revoked; names
// are unique across both.
func TestTokenFile(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "tokens.json")
	a := newAuth(t, c, 10)
	if _, _, err := a.CreateToken("early", Viewer, "ada"); !errors.Is(err, ErrNoTokenFile) {
		t.Errorf("CreateToken without a token file: %v, want ErrNoTokenFile", err)
	}
	if created, err := a.OpenTokenFile(path); err != nil || !created {
		t.Fatalf("OpenTokenFile(new) = %v, %v; want created", created, err)
	}
	tok, info, err := a.CreateToken("pipeline", MLEngineer, "ada")
	if err != nil || !strings.HasPrefix(tok, "tc_") || info.Name != "pipeline" || info.Role != MLEngineer || info.Source != TokenFromFile || info.CreatedBy != "ada" || !info.Created.Equal(c.t) {
		t.Fatalf("CreateToken = %q, %+v, %v", tok, info, err)
	}
	for _, tc := range []struct {
		name string
		role Role
		want error
	}{{"pipeline", Viewer, ErrTokenExists}, {"ci", Viewer, ErrTokenExists}, {"bad name", Viewer, ErrTokenName}, {"", Viewer, ErrTokenName}} {
		if _, _, err := a.CreateToken(tc.name, tc.role, "ada"); !errors.Is(err, tc.want) {
			t.Errorf("CreateToken(%q) = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, _, err := a.CreateToken("x", "root", "ada"); err == nil {
		t.Errorf("CreateToken with role root succeeded")
	}
	c.t = c.t.Add(time.Hour)
	if p, ok := a.Token(tok); !ok || p.Name != "pipeline" || p.Role != MLEngineer {
		t.Fatalf("Token(new) = %+v, %v", p, ok)
	}
	list := a.Tokens()
	if len(list) != 2 || list[0].Name != "ci" || list[0].Source != TokenFromConfig || list[1].Name != "pipeline" || !list[1].LastUsed.Equal(c.t) {
		t.Errorf("Tokens() = %+v, want ci (config) and pipeline used at %s", list, c.t)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
	if strings.Contains(string(raw), tok) || !strings.Contains(string(raw), HashToken(tok)) {
		t.Errorf("token file holds the token or lacks its hash:\n%s", raw)
	}
	if !strings.Contains(string(raw), c.t.Format(time.RFC3339)) {
		t.Errorf("token file lacks the last use %s (the first use after a minute is saved):\n%s", c.t.Format(time.RFC3339), raw)
	}

	// A restart: the token file's token still works, with its last use.
	b := newAuth(t, c, 10)
	if _, err := b.OpenTokenFile(path); err != nil {
		t.Fatal(err)
	}
	if p, ok := b.Token(tok); !ok || p.Name != "pipeline" {
		t.Errorf("after a restart Token(new) = %+v, %v", p, ok)
	}
	if err := b.RevokeToken("ci"); !errors.Is(err, ErrTokenInConfig) {
		t.Errorf("RevokeToken(ci) = %v, want ErrTokenInConfig", err)
	}
	if err := b.RevokeToken("nope"); !errors.Is(err, ErrTokenNotFound) {
		t.Errorf("RevokeToken(nope) = %v, want ErrTokenNotFound", err)
	}
	if err := b.RevokeToken("pipeline"); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Token(tok); ok {
		t.Errorf("a revoked token still works")
	}
	if _, ok := b.Token("tc_secret"); !ok {
		t.Errorf("the configured token stopped working")
	}
	d := newAuth(t, c, 10)
	if _, err := d.OpenTokenFile(path); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Token(tok); ok || len(d.Tokens()) != 1 {
		t.Errorf("after revoke and restart: token works %v, tokens %+v; want only ci", ok, d.Tokens())
	}
	// A token file naming a configured token is refused.
	if err := os.WriteFile(path, []byte(`[{"name":"ci","role":"viewer","sha256":"`+HashToken("x")+`"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newAuth(t, c, 10).OpenTokenFile(path); err == nil || !strings.Contains(err.Error(), "also in the configuration") {
		t.Errorf("token file naming a configured token: %v", err)
	}
}

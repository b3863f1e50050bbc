package httpapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/enroll"
	"twinchain/internal/httpapi/auth"
	"twinchain/internal/registry"
	"twinchain/internal/registry/enrollment"
)

// TestEnrollRoutes drives the enrollment routes over real HTTP with the
// client edge-agent uses, with sign-in on: a token needs a principal allowed
// to manage gateways; redeeming one needs no sign-in.
func TestEnrollRoutes(t *testing.T) {
	tokens := map[auth.Role]string{auth.Admin: "admin-token-0123456789", auth.Viewer: "viewer-token-0123456789"}
	var cfg auth.Config
	for role, tok := range tokens {
		sum := sha256.Sum256([]byte(tok))
		cfg.Tokens = append(cfg.Tokens, auth.TokenConfig{Name: string(role), Role: role, SHA256: hex.EncodeToString(sum[:])})
	}
	cfg.Defaults()
	authn, err := auth.New(cfg, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New()
	srv, err := New(Options{Gateways: reg, Enroll: enrollment.NewService(reg, nil, time.Now), Auth: NewAuth(authn, false, slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	base := "http://" + ln.Addr().String()
	hc := http.DefaultClient

	if _, err := enroll.IssueToken(ctx, hc, base, "", enroll.TokenRequest{Site: "s1"}); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("IssueToken(no credentials) = %v, want unauthorized", err)
	}
	if _, err := enroll.IssueToken(ctx, hc, base, tokens[auth.Viewer], enroll.TokenRequest{Site: "s1"}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("IssueToken(viewer) = %v, want forbidden", err)
	}
	tok, err := enroll.IssueToken(ctx, hc, base, tokens[auth.Admin], enroll.TokenRequest{Site: "s1"})
	if err != nil || tok.Token == "" {
		t.Fatalf("IssueToken(admin) = %+v, %v", tok, err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	resp, err := enroll.Enroll(ctx, hc, base, enroll.NewRequest(priv, tok.Token, "gw-http", "h"))
	if err != nil || resp.GatewayID != "gw-http" || resp.Site != "s1" {
		t.Fatalf("Enroll = %+v, %v", resp, err)
	}
	if g, ok := reg.Get("gw-http"); !ok || !g.PublicKey.Equal(priv.Public()) {
		t.Errorf("registry has %+v, %v; want gw-http with the enrolled key", g, ok)
	}
	_, err = enroll.Enroll(ctx, hc, base, enroll.NewRequest(priv, tok.Token, "gw-http", "h"))
	if err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("Enroll(spent token) = %v, want unauthorized", err)
	}
	_, err = enroll.IssueToken(ctx, hc, base, tokens[auth.Admin], enroll.TokenRequest{})
	if err == nil || !strings.Contains(err.Error(), "bad_request") {
		t.Errorf("IssueToken(no site) = %v, want bad_request", err)
	}

	// Not configured: 503 on both routes.
	off, _ := New(Options{})
	for _, path := range []string{"/api/v1/enroll", "/api/v1/enroll/tokens"} {
		r, _ := http.NewRequest(http.MethodPost, path, strings.NewReader(`{}`))
		r.Header.Set("Content-Type", "application/json")
		res, err := off.App().Test(r)
		if err != nil || res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("POST %s without a service = %v, %v, want 503", path, res.StatusCode, err)
		}
	}
}

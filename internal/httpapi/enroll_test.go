package httpapi

import (
	"context"
	"crypto/ed25519"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"twinchain/internal/enroll"
	"twinchain/internal/registry"
)

// TestEnrollRoutes drives the enrollment routes over real HTTP with the
// client edge-agent uses.
func TestEnrollRoutes(t *testing.T) {
	reg := registry.New()
	srv, err := New(Options{Gateways: reg, Enroll: enroll.NewService(reg, time.Now)})
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

	tok, err := enroll.IssueToken(ctx, http.DefaultClient, base, "", enroll.TokenRequest{Site: "s1"})
	if err != nil || tok.Token == "" {
		t.Fatalf("IssueToken = %+v, %v", tok, err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	resp, err := enroll.Enroll(ctx, http.DefaultClient, base, enroll.NewRequest(priv, tok.Token, "gw-http", "h"))
	if err != nil || resp.GatewayID != "gw-http" || resp.Site != "s1" {
		t.Fatalf("Enroll = %+v, %v", resp, err)
	}
	if g, ok := reg.Get("gw-http"); !ok || !g.PublicKey.Equal(priv.Public()) {
		t.Errorf("registry has %+v, %v; want gw-http with the enrolled key", g, ok)
	}
	_, err = enroll.Enroll(ctx, http.DefaultClient, base, enroll.NewRequest(priv, tok.Token, "gw-http", "h"))
	if err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("Enroll(spent token) = %v, want unauthorized", err)
	}
	_, err = enroll.IssueToken(ctx, http.DefaultClient, base, "", enroll.TokenRequest{})
	if err == nil || !strings.Contains(err.Error(), "bad_request") {
		t.Errorf("IssueToken(no site) = %v, want bad_request", err)
	}

	// Not configured: 503.
	off, _ := New(Options{})
	res, err := off.App().Test(newJSONRequest("/api/v1/enroll", `{}`))
	if err != nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /enroll without a service = %v, %v, want 503", res.StatusCode, err)
	}
	// A token request from another host is refused (app.Test comes from 0.0.0.0).
	res, err = srv.App().Test(newJSONRequest("/api/v1/enroll/tokens", `{"site":"s1"}`))
	if err != nil || res.StatusCode != http.StatusForbidden {
		t.Errorf("POST /enroll/tokens from a non-loopback address = %v, %v, want 403", res.StatusCode, err)
	}
}

func newJSONRequest(path, body string) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

package httpapi

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/bcrypt"

	"twinchain/internal/httpapi/auth"
)

func testAuthApp(t testing.TB) *fiber.App {
	t.Helper()
	h := func(pw string) string {
		b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a, err := auth.New(auth.Config{
		Users: []auth.UserConfig{
			{Name: "sec", Role: auth.Security, PasswordHash: h("sec-password")},
			{Name: "view", Role: auth.Viewer, PasswordHash: h("view-password")},
		},
		Tokens: []auth.TokenConfig{
			{Name: "bot", Role: auth.Security, SHA256: auth.HashToken("tc_bot")},
			{Name: "audit", Role: auth.Auditor, SHA256: auth.HashToken("tc_audit")},
		},
	}, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	alerts, _ := detectStores(t)
	srv, err := New(Options{Auth: NewAuth(a, false, slog.New(slog.NewTextHandler(io.Discard, nil))), Alerts: alerts})
	if err != nil {
		t.Fatal(err)
	}
	return srv.App()
}

// The routes TestAuthRoutes calls: a read, a public route, and a write
// for security (404: it passed the checks and found no such alert).
const (
	readPath   = "/api/v1/alerts"
	publicPath = "/api/v1/enroll" // 503: no enrollment configured
	ackPath    = "/api/v1/alerts/nope/ack"
	ackPassed  = 404
)

type client struct {
	t       *testing.T
	app     *fiber.App
	cookies []*http.Cookie
	csrf    string
}

func (cl *client) do(method, path, body string, hdr map[string]string) (int, string) {
	cl.t.Helper()
	req := httptest.NewRequest(method, "http://twin.test"+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, c := range cl.cookies {
		req.AddCookie(c)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := cl.app.Test(req, 5000)
	if err != nil {
		cl.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if cs := resp.Cookies(); len(cs) > 0 {
		cl.cookies = cs
	}
	return resp.StatusCode, string(b)
}

func (cl *client) login(user, pw string) int {
	cl.t.Helper()
	code, body := cl.do("POST", "/api/v1/auth/login", `{"username":"`+user+`","password":"`+pw+`"}`, nil)
	if code == 200 {
		var me meResponse
		if err := json.Unmarshal([]byte(body), &me); err != nil {
			cl.t.Fatal(err)
		}
		cl.csrf = me.CSRF
	}
	return code
}

func TestAuthRoutes(t *testing.T) {
	app := testAuthApp(t)
	anon := &client{t: t, app: app}
	if code, body := anon.do("GET", readPath, "", nil); code != 401 || !strings.Contains(body, `"code":"unauthorized"`) {
		t.Errorf("GET %s signed out = %d %s, want 401 unauthorized", readPath, code, body)
	}
	if code, body := anon.do("POST", publicPath, "", nil); code != 503 {
		t.Errorf("POST a public path signed out = %d %q, want 503 (not configured, but no sign-in asked)", code, body)
	}
	if code := anon.login("sec", "nope"); code != 401 {
		t.Errorf("login with a wrong password = %d, want 401", code)
	}
	if code, _ := anon.do("POST", "/api/v1/auth/login", `{"username":"sec","password":"sec-password"}`, map[string]string{"Origin": "http://evil.test"}); code != 403 {
		t.Errorf("cross-origin login = %d, want 403", code)
	}

	sec := &client{t: t, app: app}
	if code := sec.login("sec", "sec-password"); code != 200 {
		t.Fatalf("login sec = %d, want 200", code)
	}
	var session *http.Cookie
	for _, c := range sec.cookies {
		if c.Name == SessionCookie {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie = %+v, want HttpOnly SameSite=Strict", session)
	}
	if code, body := sec.do("GET", readPath, "", nil); code != 200 {
		t.Errorf("GET %s signed in = %d %q, want 200", readPath, code, body)
	}
	if code, body := sec.do("GET", "/api/v1/auth/me", "", nil); code != 200 || !strings.Contains(body, `"alerts.ack"`) {
		t.Errorf("GET /auth/me = %d %s, want the alerts.ack action", code, body)
	}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no csrf header", nil, 403},
		{"wrong csrf header", map[string]string{CSRFHeader: "x" + sec.csrf}, 403},
		{"other origin", map[string]string{CSRFHeader: sec.csrf, "Origin": "http://evil.test"}, 403},
		{"csrf header", map[string]string{CSRFHeader: sec.csrf}, ackPassed},
		{"csrf header and same origin", map[string]string{CSRFHeader: sec.csrf, "Origin": "http://twin.test"}, ackPassed},
	} {
		if code, body := sec.do("POST", ackPath, "", tc.hdr); code != tc.want {
			t.Errorf("security POST ack with %s = %d %s, want %d", tc.name, code, body, tc.want)
		}
	}

	view := &client{t: t, app: app}
	if code := view.login("view", "view-password"); code != 200 {
		t.Fatalf("login view = %d", code)
	}
	if code, body := view.do("POST", ackPath, "", map[string]string{CSRFHeader: view.csrf}); code != 403 || !strings.Contains(body, `"forbidden"`) {
		t.Errorf("viewer POST ack = %d %s, want 403 forbidden", code, body)
	}

	bot := &client{t: t, app: app}
	for _, tc := range []struct {
		token string
		want  int
	}{
		{"tc_bot", ackPassed}, {"tc_audit", 403}, {"tc_nobody", 401},
	} {
		if code, body := bot.do("POST", ackPath, "", map[string]string{"Authorization": "Bearer " + tc.token}); code != tc.want {
			t.Errorf("POST ack with token %s = %d %s, want %d", tc.token, code, body, tc.want)
		}
	}

	if code, _ := sec.do("POST", "/api/v1/auth/logout", "", map[string]string{CSRFHeader: sec.csrf}); code != 204 {
		t.Errorf("logout = %d, want 204", code)
	}
	sec.cookies = []*http.Cookie{session}
	if code, _ := sec.do("GET", readPath, "", nil); code != 401 {
		t.Errorf("GET with the session after logout = %d, want 401", code)
	}
}

// FuzzAuthenticate throws arbitrary cookies, bearer tokens and CSRF headers
// at a protected write: only the real token gets through.
func FuzzAuthenticate(f *testing.F) {
	app := testAuthApp(f)
	f.Add("", "", "")
	f.Add("tc_bot", "", "")
	f.Add("", "not-a-session", "x")
	f.Add("tc_bot ", "a=b", "")
	f.Add("\x00", "\xff", "\n")
	f.Fuzz(func(t *testing.T, bearer, cookie, csrf string) {
		req := httptest.NewRequest("POST", "http://twin.test"+ackPath, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		req.Header.Set("Cookie", SessionCookie+"="+cookie)
		req.Header.Set(CSRFHeader, csrf)
		resp, err := app.Test(req, 5000)
		if err != nil {
			return // a request net/http cannot write is not the middleware's
		}
		resp.Body.Close()
		if resp.StatusCode == ackPassed && strings.TrimSpace(bearer) != "tc_bot" {
			t.Errorf("POST with bearer %q cookie %q csrf %q = %d (passed the checks), want refused", bearer, cookie, csrf, ackPassed)
		}
	})
}

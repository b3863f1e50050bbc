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
	app := fiber.New()
	api := app.Group("/api/v1")
	// A route added before Mount needs no principal.
	api.Post("/open", func(c *fiber.Ctx) error { return c.SendString("open") })
	NewAuth(a, false, slog.New(slog.NewTextHandler(io.Discard, nil))).Mount(api)
	api.Get("/things", func(c *fiber.Ctx) error { return c.SendString("things") })
	api.Post("/things/ack", Allow(auth.AckAlerts), func(c *fiber.Ctx) error {
		p, _ := Principal(c)
		if c.Locals("user") != p.Name || c.Locals("role") != string(p.Role) {
			return c.SendString("locals do not name the principal")
		}
		return c.SendString("acked by " + p.Name)
	})
	return app
}

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
	if code, body := anon.do("GET", "/api/v1/things", "", nil); code != 401 || !strings.Contains(body, `"code":"unauthorized"`) {
		t.Errorf("GET /things signed out = %d %s, want 401 unauthorized", code, body)
	}
	if code, body := anon.do("POST", "/api/v1/open", "", nil); code != 200 || body != "open" {
		t.Errorf("POST a public path signed out = %d %q, want 200 open", code, body)
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
	if code, body := sec.do("GET", "/api/v1/things", "", nil); code != 200 || body != "things" {
		t.Errorf("GET /things signed in = %d %q, want 200 things", code, body)
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
		{"csrf header", map[string]string{CSRFHeader: sec.csrf}, 200},
		{"csrf header and same origin", map[string]string{CSRFHeader: sec.csrf, "Origin": "http://twin.test"}, 200},
	} {
		if code, body := sec.do("POST", "/api/v1/things/ack", "", tc.hdr); code != tc.want {
			t.Errorf("security POST ack with %s = %d %s, want %d", tc.name, code, body, tc.want)
		}
	}

	if code, body := sec.do("POST", "/api/v1/things/ack", "", map[string]string{CSRFHeader: sec.csrf}); body != "acked by sec" {
		t.Errorf("POST ack as sec = %d %q, want \"acked by sec\"", code, body)
	}

	view := &client{t: t, app: app}
	if code := view.login("view", "view-password"); code != 200 {
		t.Fatalf("login view = %d", code)
	}
	if code, body := view.do("POST", "/api/v1/things/ack", "", map[string]string{CSRFHeader: view.csrf}); code != 403 || !strings.Contains(body, `"forbidden"`) {
		t.Errorf("viewer POST ack = %d %s, want 403 forbidden", code, body)
	}

	bot := &client{t: t, app: app}
	for _, tc := range []struct {
		token string
		want  int
	}{
		{"tc_bot", 200}, {"tc_audit", 403}, {"tc_nobody", 401},
	} {
		if code, body := bot.do("POST", "/api/v1/things/ack", "", map[string]string{"Authorization": "Bearer " + tc.token}); code != tc.want {
			t.Errorf("POST ack with token %s = %d %s, want %d", tc.token, code, body, tc.want)
		}
	}

	if code, _ := sec.do("POST", "/api/v1/auth/logout", "", map[string]string{CSRFHeader: sec.csrf}); code != 204 {
		t.Errorf("logout = %d, want 204", code)
	}
	sec.cookies = []*http.Cookie{session}
	if code, _ := sec.do("GET", "/api/v1/things", "", nil); code != 401 {
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
		req := httptest.NewRequest("POST", "http://twin.test/api/v1/things/ack", nil)
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
		if resp.StatusCode == 200 && strings.TrimSpace(bearer) != "tc_bot" {
			t.Errorf("POST with bearer %q cookie %q csrf %q = 200, want refused", bearer, cookie, csrf)
		}
	})
}

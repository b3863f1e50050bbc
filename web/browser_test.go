package web_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/bcrypt"

	"twinchain/internal/httpapi"
	"twinchain/internal/httpapi/auth"
	"twinchain/internal/testsvc"
	"twinchain/web"
)

// The users every browser test signs in as.
var testUsers = []struct {
	name, password string
	role           auth.Role
}{
	{"admin", "admin-password", auth.Admin},
	{"sec", "security-password", auth.Security},
	{"view", "viewer-password", auth.Viewer},
}

func testAuthConfig(t testing.TB) auth.Config {
	t.Helper()
	var cfg auth.Config
	for _, u := range testUsers {
		h, err := bcrypt.GenerateFromPassword([]byte(u.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Users = append(cfg.Users, auth.UserConfig{Name: u.name, Role: u.role, PasswordHash: string(h)})
	}
	return cfg
}

func password(name string) string {
	for _, u := range testUsers {
		if u.name == name {
			return u.password
		}
	}
	return ""
}

// serve runs app on a spare loopback port until t ends and returns its URL.
func serve(t testing.TB, app *fiber.App) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Listener(l) }()
	t.Cleanup(func() {
		app.ShutdownWithTimeout(5 * time.Second)
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

// minimalApp is the sign-in and the dashboard with no twin behind them:
// every other API route answers 503 (not configured).
func minimalApp(t testing.TB) *fiber.App {
	t.Helper()
	a, err := auth.New(testAuthConfig(t), time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Options{
		Auth:      httpapi.NewAuth(a, false, slog.New(slog.NewTextHandler(io.Discard, nil))),
		Dashboard: web.Dist(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv.App()
}

// artifacts is where screenshots go: $TWINCHAIN_ARTIFACTS, or
// artifacts/screenshots at the repository root (git ignores it).
func artifacts(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TWINCHAIN_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	dir = filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// strayValue finds a JavaScript value printed as text where a view meant
// to leave something out.
var strayValue = regexp.MustCompile(`\b(null|undefined|NaN|\[object Object\])\b`)

// shot saves a full-page PNG of what the browser shows, and fails the test
// when the page prints a stray null, undefined or NaN.
func shot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	if m := strayValue.FindString(evalJS[string](t, ctx, `document.body.innerText`)); m != "" {
		t.Errorf("page %s shows a stray %q", name, m)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(artifacts(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot %s", path)
}

// viewport sets the page's width (1280 desktop, 390 phone).
func viewport(width, height int64, mobile bool) chromedp.Action[chromedp.Void] {
	if mobile {
		return chromedp.EmulateViewport(width, height, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
	}
	return chromedp.EmulateViewport(width, height)
}

// waitJS polls a JavaScript expression until it is truthy.
func waitJS(t testing.TB, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
		t.Fatalf("waiting for %s (%s): %v\npage text:\n%s", what, expr, err, body)
	}
}

func evalJS[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// signIn opens the dashboard and signs in through the form.
func signIn(t testing.TB, ctx context.Context, base, user string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/#/fleet"),
		chromedp.WaitVisible(chromedp.CSS(`form.login input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`form.login input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`form.login input[name=password]`), password(user)),
		chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
	); err != nil {
		t.Fatalf("sign in as %s: %v", user, err)
	}
	waitJS(t, ctx, "signed in as "+user, fmt.Sprintf(`document.querySelector("#who .user") && document.querySelector("#who .user").textContent.startsWith(%q)`, user), 20*time.Second)
}

// newTab opens a fresh browser tab with its own cookies. The test fails
// when the page logs an error to the console or throws (watchConsole).
func newTab(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	watchConsole(t, ctx)
	return ctx
}

// watchConsole fails t, when it ends, for every console error, uncaught
// exception and browser log error of the tab. A refused API call (the
// browser logs "Failed to load resource" for a 4xx/5xx answer of
// /api/v1/...) is the API speaking, which tests provoke on purpose; the
// same for a page asset (a missing favicon) counts.
func watchConsole(t testing.TB, ctx context.Context) {
	t.Helper()
	var mu sync.Mutex
	var bad []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
				continue
			}
			if strings.HasPrefix(m.Text, "Failed to load resource") && strings.Contains(m.URL, "/api/v1/") {
				continue
			}
			mu.Lock()
			bad = append(bad, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bad {
			t.Errorf("browser console: %s", b)
		}
	})
}

func TestSignInForm(t *testing.T) {
	base := serve(t, minimalApp(t))
	ctx := newTab(t, testsvc.StartChromium(t))
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`form.login`))); err != nil {
		t.Fatal(err)
	}
	shot(t, ctx, "signin")
	// A wrong password says so and keeps the form.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "not-the-password"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the sign-in error", `document.querySelector(".form-error").textContent.includes("Wrong")`, 10*time.Second)
	signIn(t, ctx, base, "view")
	// The session cookie is HttpOnly: the page's script cannot read it.
	if c := evalJS[string](t, ctx, `document.cookie`); strings.Contains(c, httpapi.SessionCookie+"=") {
		t.Errorf("document.cookie = %q, want no %s (HttpOnly)", c, httpapi.SessionCookie)
	}
	// With no twin behind it, the fleet view says plainly that the list is not there.
	waitJS(t, ctx, "the not-available notice", `document.querySelector(".notice") && document.querySelector(".notice").textContent.includes("not available yet")`, 10*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#who button`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the sign-in form after signing out", `!!document.querySelector("form.login")`, 10*time.Second)
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "still signed out after reload", `!!document.querySelector("form.login")`, 10*time.Second)
}

// TestProofCheckerInBrowser checks RFC 6962 inclusion proofs made by
// transparency-dev/merkle with the dashboard's WebCrypto code in Chromium:
// every true proof holds and every tampered one does not.
func TestProofCheckerInBrowser(t *testing.T) {
	base := serve(t, minimalApp(t))
	ctx := newTab(t, testsvc.StartChromium(t))
	signIn(t, ctx, base, "view")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/provenance"), chromedp.WaitVisible(chromedp.CSS(`details.proof-check`))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`details.proof-check summary`))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range proofCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			if err := chromedp.Do(ctx,
				chromedp.SetValue(chromedp.CSS(`#proof-json`), tc.json),
				chromedp.Evaluate[chromedp.Void](`document.querySelector(".proof-check .verify-result").removeAttribute("data-valid")`),
				chromedp.Click(chromedp.CSS(`#proof-verify`)),
			); err != nil {
				t.Fatal(err)
			}
			waitJS(t, ctx, "a verdict", `document.querySelector(".proof-check .verify-result").dataset.valid !== undefined`, 10*time.Second)
			got := evalJS[string](t, ctx, `document.querySelector(".proof-check .verify-result").dataset.valid`)
			text := evalJS[string](t, ctx, `document.querySelector(".proof-check .verify-result").textContent`)
			if want := fmt.Sprint(tc.valid); got != want {
				t.Errorf("browser verdict on %s = %s (%q), want %s", tc.name, got, text, want)
			}
			if tc.valid && !strings.Contains(text, "Proof holds") || !tc.valid && !strings.Contains(text, "does NOT hold") {
				t.Errorf("verdict text %q does not say plainly whether the proof holds", text)
			}
			if tc.shot != "" {
				shot(t, ctx, tc.shot)
			}
		})
	}
}

// click clicks the element sel names, found and clicked in one browser
// step: a live redraw between a lookup and a mouse click would leave the
// click a node that is gone ("Could not find node with given id").
func click(t testing.TB, ctx context.Context, sel string) {
	t.Helper()
	waitJS(t, ctx, "click "+sel, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true; })()`, sel), 10*time.Second)
}

// setControl sets an input's or select's value as a user would and fires
// the event the page listens to.
func setControl(t testing.TB, ctx context.Context, sel, value, event string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event(%q, {bubbles: true})); return e.value; })()`, sel, value, event)
	if got := evalJS[string](t, ctx, js); got != value {
		t.Fatalf("set %s to %q: it holds %q", sel, value, got)
	}
}

// TestProofBundleInBrowser checks event proof bundles (the ledger's format)
// in Chromium: the true bundle holds on every check, and each tampered copy
// fails, on the check it breaks.
func TestProofBundleInBrowser(t *testing.T) {
	base := serve(t, minimalApp(t))
	ctx := newTab(t, testsvc.StartChromium(t))
	signIn(t, ctx, base, "view")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/provenance"), chromedp.WaitVisible(chromedp.CSS(`details.proof-check`)),
		chromedp.Click(chromedp.CSS(`details.proof-check summary`))); err != nil {
		t.Fatal(err)
	}
	cases, key := bundleCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setControl(t, ctx, "#proof-json", tc.json, "input")
			setControl(t, ctx, "#proof-key", key, "input")
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#proof-verify`))); err != nil {
				t.Fatal(err)
			}
			waitJS(t, ctx, "a verdict", `document.querySelector(".proof-check .verify-result").dataset.valid !== undefined`, 10*time.Second)
			got := evalJS[string](t, ctx, `document.querySelector(".proof-check .verify-result").dataset.valid`)
			text := evalJS[string](t, ctx, `document.querySelector(".proof-check .verify-result").innerText`)
			if want := fmt.Sprint(tc.valid); got != want {
				t.Fatalf("browser verdict = %s, want %s:\n%s", got, want, text)
			}
			failed := evalJS[[]string](t, ctx, `[...document.querySelectorAll(".proof-check ul.checks li.bad strong")].map(e => e.textContent)`)
			if tc.valid && len(failed) > 0 {
				t.Errorf("true bundle failed checks %q:\n%s", failed, text)
			}
			if !tc.valid && !slices.Contains(failed, tc.failCheck) {
				t.Errorf("failed checks = %q, want %q among them:\n%s", failed, tc.failCheck, text)
			}
			if tc.valid {
				shot(t, ctx, "bundle-valid")
			} else if tc.failCheck == "tree inclusion" {
				shot(t, ctx, "bundle-tampered")
			}
		})
	}
	// A node's bundle whose ledger key is not the one pinned fails on it.
	for _, tc := range cases {
		if tc.name != nodeBundleCase {
			continue
		}
		setControl(t, ctx, "#proof-json", tc.json, "input")
		setControl(t, ctx, "#proof-key", key, "input")
		setControl(t, ctx, "#proof-ledger-key", strings.Repeat("33", 32), "input")
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#proof-verify`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "a verdict", `document.querySelector(".proof-check .verify-result").dataset.valid === "false"`, 10*time.Second)
		if failed := evalJS[[]string](t, ctx, `[...document.querySelectorAll(".proof-check ul.checks li.bad strong")].map(e => e.textContent)`); !slices.Contains(failed, "ledger key") {
			t.Errorf("node bundle under another pinned ledger key: failed checks %q, want the ledger key", failed)
		}
		setControl(t, ctx, "#proof-ledger-key", "", "input")
	}
	// A bundle signed by another key than the pinned one fails.
	other := strings.Repeat("11", 32)
	setControl(t, ctx, "#proof-json", cases[0].json, "input")
	setControl(t, ctx, "#proof-key", other, "input")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#proof-verify`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "a verdict", `document.querySelector(".proof-check .verify-result").dataset.valid === "false"`, 10*time.Second)
}

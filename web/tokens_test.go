package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"twinchain/internal/testsvc"
)

// TestTokens: an admin makes an API token in Settings > API tokens; it is
// shown once, works over the API at once and shows as used in the list;
// Revoke (two clicks) stops it. The configured tokens are listed without
// a Revoke button. A security user has no API tokens link and the view
// says it is for admins.
func TestTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service and Chromium")
	}
	svc := startTwin(t, []string{"fleet", "-sites", "1", "-servers", "1", "-gpus", "1"}, "")
	browser := testsvc.StartChromium(t)
	ctx := newTab(t, browser)
	if err := chromedp.Do(ctx, viewport(1440, 900, false)); err != nil {
		t.Fatal(err)
	}
	signIn(t, ctx, svc.URL, "admin")
	waitJS(t, ctx, "the API tokens link for an admin", `!document.querySelector("#nav-tokens").hidden`, 10*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#nav-tokens`))); err != nil {
		t.Fatal(err)
	}
	loaded := `document.querySelector("main").dataset.view === "apitokens" && document.querySelector("table.tokens") && document.querySelector("table.tokens").dataset.loaded === "true"`
	waitJS(t, ctx, "the tokens view", loaded, 30*time.Second)
	names := `[...document.querySelectorAll("table.tokens tbody tr[data-name]")].map((tr) => tr.dataset.name + ":" + tr.dataset.source).join(",")`
	// The configured tokens, and "cli" that twin-service made at first start.
	for _, want := range []string{"web-test:config", "ml-pipeline:config", "cli:file"} {
		if got := evalJS[string](t, ctx, names); !strings.Contains(got, want) {
			t.Errorf("tokens listed %s, want %s among them", got, want)
		}
	}
	if n := evalJS[int](t, ctx, `document.querySelectorAll('table.tokens tr[data-source=config] button[data-action=revoke]').length`); n != 0 {
		t.Errorf("%d configured tokens have a Revoke button, want none", n)
	}
	setControl(t, ctx, "#token-name", "nightly-export", "input")
	setControl(t, ctx, "#token-role", "auditor", "change")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#token-create`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the new token shown once", `!!document.querySelector("#token-value") && document.querySelector('table.tokens tr[data-name="nightly-export"]')`, 30*time.Second)
	tok := evalJS[string](t, ctx, `document.querySelector("#token-value").textContent`)
	if !strings.HasPrefix(tok, "tc_") {
		t.Fatalf("the token shown is %q", tok)
	}
	if got := evalJS[string](t, ctx, `document.querySelector('table.tokens tr[data-name="nightly-export"] td.col-role').textContent + "/" + document.querySelector('table.tokens tr[data-name="nightly-export"] td.col-by').textContent + "/" + document.querySelector('table.tokens tr[data-name="nightly-export"] td.col-used').textContent`); got != "auditor/admin/never" {
		t.Errorf("the new token's row reads %s, want auditor/admin/never", got)
	}
	shot(t, ctx, "tokens-created-1440")
	var me struct{ User, Role string }
	if code := svc.doAs(t, tok, "GET", "/auth/me", nil, &me); code != 200 || me.User != "nightly-export" || me.Role != "auditor" {
		t.Fatalf("the new token: /auth/me = %d %+v, want nightly-export as auditor", code, me)
	}
	// Shown once: a reload lists it, without the token.
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the tokens view after reload", loaded, 30*time.Second)
	if evalJS[bool](t, ctx, fmt.Sprintf(`document.body.innerText.includes(%q)`, tok)) {
		t.Errorf("the token is still on the page after a reload")
	}
	if got := evalJS[string](t, ctx, `document.querySelector('table.tokens tr[data-name="nightly-export"] td.col-used').textContent`); got == "never" {
		t.Errorf("the used token's last use reads never")
	}
	revoke := chromedp.Click(chromedp.CSS(`table.tokens tr[data-name="nightly-export"] button[data-action=revoke]`))
	if err := chromedp.Do(ctx, revoke); err != nil {
		t.Fatal(err)
	}
	if got := evalJS[string](t, ctx, `document.querySelector('table.tokens tr[data-name="nightly-export"] button[data-action=revoke]').textContent`); got != "Revoke: sure?" {
		t.Errorf("after one click the button reads %q, want it to ask", got)
	}
	if code := svc.doAs(t, tok, "GET", "/auth/me", nil, nil); code != 200 {
		t.Errorf("one click revoked the token (/auth/me %d)", code)
	}
	if err := chromedp.Do(ctx, revoke); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the revoked token gone", `!document.querySelector('table.tokens tr[data-name="nightly-export"]')`, 30*time.Second)
	if code := svc.doAs(t, tok, "GET", "/auth/me", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("the revoked token: /auth/me = %d, want 401", code)
	}
	if err := chromedp.Do(ctx, viewport(390, 844, true), chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the tokens view on a phone", loaded, 30*time.Second)
	shot(t, ctx, "tokens-390")

	// Not for a security user.
	sec := newTab(t, browser)
	signIn(t, sec, svc.URL, "sec")
	if !evalJS[bool](t, sec, `document.querySelector("#nav-tokens").hidden`) {
		t.Errorf("a security user sees the API tokens link")
	}
	if err := chromedp.Do(sec, chromedp.Navigate(svc.URL+"/#/settings/tokens")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, sec, "the tokens view for a security user", `document.querySelector("main").dataset.ready === "true" && document.querySelector("main").dataset.view === "apitokens"`, 20*time.Second)
	if got := evalJS[string](t, sec, `document.querySelector("main").innerText`); !strings.Contains(got, "Only an admin") || strings.Contains(got, "web-test") {
		t.Errorf("a security user's tokens view reads %q, want the admin-only notice and no tokens", got)
	}
}

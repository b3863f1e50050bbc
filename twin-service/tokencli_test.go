package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"twinchain/internal/cli"
	"twinchain/internal/testsvc"
)

// TestTokenCLI: on a fresh data directory twin-service writes the admin
// token of the command-line tools ({data}/cli-token, 0600), which every
// command finds with no flag; `token create` prints a new token once,
// which works at once and shows as used in `token list`; `token revoke`
// stops it; a non-admin token is refused (exit 1); `ledger proof` with the
// default token gets past sign-in (404 for a missing event, not 401).
func TestTokenCLI(t *testing.T) {
	dir := t.TempDir()
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{DataDir: dir, Tokens: []testsvc.Token{{Name: "reader", Role: "viewer", Secret: "tc_reader"}}})
	cliToken := filepath.Join(dir, "cli-token")
	if st, err := os.Stat(cliToken); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cli-token: %v (mode %v), want a 0600 file", err, st)
	}
	env := map[string]string{"TWINCHAIN_URL": svc.URL, "TWINCHAIN_DATA_DIR": dir}
	getenv := func(k string) string { return env[k] }
	tokens := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		err := runTokenCLI(context.Background(), args, getenv, &out, &errOut)
		return out.String(), errOut.String() + exitErr(err), cli.Status(err)
	}
	out, msg, code := tokens("create", "-name", "pipeline", "-role", "ml_engineer")
	tok := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(tok, "tc_") || !strings.Contains(msg, "shown this once") {
		t.Fatalf("token create = %q, %q, exit %d", out, msg, code)
	}
	authMe := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, svc.URL+"/api/v1/auth/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := authMe(tok); code != 200 {
		t.Errorf("the new token: /auth/me = %d, want 200", code)
	}
	out, msg, code = tokens("list")
	var pipelineRow, cliRow, readerRow string
	for _, line := range strings.Split(out, "\n") {
		switch f := strings.Fields(line); {
		case len(f) > 0 && f[0] == "pipeline":
			pipelineRow = line
		case len(f) > 0 && f[0] == "cli":
			cliRow = line
		case len(f) > 0 && f[0] == "reader":
			readerRow = line
		}
	}
	if code != 0 || !strings.Contains(pipelineRow, "ml_engineer") || !strings.Contains(pipelineRow, "file") || strings.HasSuffix(strings.TrimSpace(pipelineRow), "-") ||
		!strings.Contains(cliRow, "admin") || !strings.Contains(readerRow, "config") {
		t.Errorf("token list (exit %d, %s):\n%s\nwant pipeline (ml_engineer, file, used), cli (admin) and reader (config)", code, msg, out)
	}
	if strings.Contains(out, tok) {
		t.Errorf("token list shows the token itself")
	}
	if _, msg, code = tokens("revoke", "-name", "pipeline"); code != 0 {
		t.Fatalf("token revoke: exit %d: %s", code, msg)
	}
	if code := authMe(tok); code != http.StatusUnauthorized {
		t.Errorf("a revoked token: /auth/me = %d, want 401", code)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"create", "-name", "x"}, cli.StatusUsage, "-role is required"},
		{[]string{"revoke"}, cli.StatusUsage, "-name is required"},
		{[]string{"rotate"}, cli.StatusUsage, "unknown command"},
		{[]string{"list", "extra"}, cli.StatusUsage, "unexpected arguments"},
		{[]string{"revoke", "-name", "reader"}, cli.StatusFailed, "configuration file"},
		{[]string{"list", "-h"}, 0, "-token-file"},
	} {
		if _, msg, code := tokens(tc.args...); code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("token %v: exit %d, %q; want exit %d and %q", tc.args, code, msg, tc.code, tc.want)
		}
	}
	// A viewer's token (TWINCHAIN_TOKEN wins over the file) may not.
	env["TWINCHAIN_TOKEN"] = "tc_reader"
	if _, msg, code := tokens("list"); code != cli.StatusFailed || !strings.Contains(msg, "403") {
		t.Errorf("token list as a viewer: exit %d, %q; want exit 1 and 403", code, msg)
	}
	delete(env, "TWINCHAIN_TOKEN")
	// README's `twin-service ledger proof -event N` on a default install:
	// the default token passes sign-in.
	var out2, errOut bytes.Buffer
	err := runLedgerCLI(context.Background(), []string{"proof", "-event", "999999"}, getenv, &out2, &errOut)
	if err == nil || strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "404") {
		t.Errorf("ledger proof with the default token = %v, want 404 (signed in, no such event)", err)
	}
	// A named token file that is missing is an error, not an anonymous call.
	env["TWINCHAIN_TOKEN_FILE"] = filepath.Join(dir, "nope")
	if _, msg, code := tokens("list"); code != cli.StatusFailed || !strings.Contains(msg, "token file") {
		t.Errorf("a missing TWINCHAIN_TOKEN_FILE: exit %d, %q", code, msg)
	}
}

func exitErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestHelpAndExitStatus: twin-service -h lists the commands and the
// flags' defaults and exits 0; a bad flag, a missing command or argument
// exits 2; help COMMAND prints that command's usage.
func TestHelpAndExitStatus(t *testing.T) {
	noenv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"-h"}, 0, []string{"commands:", "verify", "ledger", "token", `(default "127.0.0.1:8080")`, `(default "data")`, "Exit status"}},
		{[]string{"help"}, 0, []string{"commands:"}},
		{[]string{"help", "token"}, 0, []string{"create -name N -role R"}},
		{[]string{"help", "nope"}, cli.StatusUsage, []string{"unknown command"}},
		{[]string{"-no-such-flag"}, cli.StatusUsage, []string{"flag provided but not defined"}},
		{[]string{"extra"}, cli.StatusUsage, []string{"unexpected arguments"}},
		{[]string{"ledger"}, cli.StatusUsage, []string{"missing command"}},
		{[]string{"ledger", "proof"}, cli.StatusUsage, []string{"missing flags"}},
		{[]string{"ledger", "record-model"}, cli.StatusUsage, []string{"-file is required"}},
		{[]string{"ledger", "proof", "-h"}, 0, []string{"-server", "TWINCHAIN_URL"}},
		{[]string{"verify"}, cli.StatusUsage, []string{"want one bundle"}},
		{[]string{"token"}, cli.StatusUsage, []string{"missing command"}},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, noenv, &out)
		code := exitStatus(err, &out)
		for _, w := range tc.want {
			if code != tc.code || !strings.Contains(out.String(), w) {
				t.Errorf("twin-service %v: exit %d, output:\n%s\nwant exit %d and %q", tc.args, code, out.String(), tc.code, w)
				break
			}
		}
	}
}

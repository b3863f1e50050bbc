package apiclient

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// TestLookup: the server and the token come from flags, then the
// environment, then the token file, then {data}/cli-token, in that order;
// a named token file that is missing is an error, a missing default one
// is no token.
func TestLookup(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	write("data/cli-token", "tc_default\n")
	named := write("named", " tc_named \n")
	for _, tc := range []struct {
		name       string
		args       []string
		env        map[string]string
		server     string
		token, src string
		fails      bool
	}{
		{"defaults", nil, map[string]string{"TWINCHAIN_DATA_DIR": filepath.Join(dir, "data")}, DefaultServer, "tc_default", filepath.Join(dir, "data", "cli-token"), false},
		{"no token anywhere", nil, map[string]string{"TWINCHAIN_DATA_DIR": filepath.Join(dir, "none")}, DefaultServer, "", "", false},
		{"old server name", nil, map[string]string{"TWINCHAIN_SERVER": "http://old:1/", "TWINCHAIN_DATA_DIR": dir}, "http://old:1", "", "", false},
		{"env", nil, map[string]string{"TWINCHAIN_URL": "http://env:2", "TWINCHAIN_SERVER": "http://old:1", "TWINCHAIN_TOKEN": "tc_env", "TWINCHAIN_TOKEN_FILE": named}, "http://env:2", "tc_env", "TWINCHAIN_TOKEN", false},
		{"env file", nil, map[string]string{"TWINCHAIN_TOKEN_FILE": named}, DefaultServer, "tc_named", named, false},
		{"flags win", []string{"-server", "http://flag:3", "-token", "tc_flag"}, map[string]string{"TWINCHAIN_URL": "http://env:2", "TWINCHAIN_TOKEN": "tc_env"}, "http://flag:3", "tc_flag", "-token", false},
		{"flag file over env file", []string{"-token-file", named}, map[string]string{"TWINCHAIN_TOKEN_FILE": "/nope"}, DefaultServer, "tc_named", named, false},
		{"missing named file", []string{"-token-file", filepath.Join(dir, "missing")}, nil, "", "", "", true},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		f := Bind(fs, func(k string) string { return tc.env[k] })
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		c, err := f.Client()
		if tc.fails {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil || c.Server != tc.server || c.Token != tc.token || c.TokenFrom != tc.src {
			t.Errorf("%s: %+v, %v; want server %s token %q from %q", tc.name, c, err, tc.server, tc.token, tc.src)
		}
	}
}

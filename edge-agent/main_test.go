package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"twinchain/internal/cli"
)

// TestHelpAndExitStatus: edge-agent follows internal/cli's convention:
// -h exits 0, an unknown command or flag and a missing argument exit 2.
func TestHelpAndExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "usage: edge-agent COMMAND"},
		{[]string{"run", "-h"}, 0, "usage: edge-agent run"},
		{nil, cli.StatusUsage, "usage: edge-agent COMMAND"},
		{[]string{"fly"}, cli.StatusUsage, "usage: edge-agent COMMAND"},
		{[]string{"run", "-no-such-flag"}, cli.StatusUsage, "flag provided but not defined"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, &out)
		if code := cli.Exit("edge-agent", err, &out); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("edge-agent %v: exit %d, output:\n%s\nwant exit %d and %q", tc.args, code, out.String(), tc.code, tc.want)
		}
	}
}

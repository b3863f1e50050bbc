package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"twinchain/internal/cli"
)

// TestHelpAndExitStatus: firmware-sim follows internal/cli's convention:
// -h exits 0, an unknown command or flag and a missing argument exit 2.
func TestHelpAndExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "usage: firmware-sim COMMAND"},
		{[]string{"scenario", "-h"}, 0, "usage: firmware-sim scenario"},
		{nil, cli.StatusUsage, "missing command"},
		{[]string{"fly"}, cli.StatusUsage, "unknown command"},
		{[]string{"fleet", "-no-such-flag"}, cli.StatusUsage, "flag provided but not defined"},
		{[]string{"load", "-no-such-flag"}, cli.StatusUsage, "flag provided but not defined"},
		{[]string{"serial", "-no-such-flag"}, cli.StatusUsage, "flag provided but not defined"},
		{[]string{"scenario"}, cli.StatusUsage, "want one scenario file"},
		{[]string{"scenario", "-check", "../internal/sim/scenario/testdata/scenarios/theft.yaml"}, cli.StatusUsage, "-check and -hold go with -own-fleet"},
		// No fleet at the socket: a clear error, and how to get one.
		{[]string{"scenario", "-fleet", "/nonexistent/fleet.sock", "../internal/sim/scenario/testdata/scenarios/theft.yaml"}, cli.StatusFailed, "no running fleet at /nonexistent/fleet.sock"},
		{[]string{"scenario", "-fleet", "/nonexistent/fleet.sock", "../internal/sim/scenario/testdata/scenarios/theft.yaml"}, cli.StatusFailed, "start make run"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, &out)
		if code := cli.Exit("firmware-sim", err, &out); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("firmware-sim %v: exit %d, output:\n%s\nwant exit %d and %q", tc.args, code, out.String(), tc.code, tc.want)
		}
	}
}

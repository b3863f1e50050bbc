package testsvc

import (
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

// LinkRule says what one program or package may link: Tailscale's deptest,
// as a table (see deps_test.go at the repository root).
type LinkRule struct {
	Pkg string // import path, e.g. "twinchain/edge-agent"
	Dir string // the module's folder, relative to the caller's ("" = the caller's module)
	// Own, when set, are the only packages of this module (Pkg's module)
	// that Pkg may link: exact paths, or prefixes ending in "/...".
	Own []string
	// Forbid maps an import path prefix to the reason it must not be linked.
	Forbid map[string]string
	// ForbidDirect maps a package that Pkg itself must not import (its
	// dependencies may) to the reason.
	ForbidDirect map[string]string
	// Want are packages that must be in the list, to show it is real.
	Want []string
}

type listed struct {
	deps, imports []string
}

// goList returns pkg's dependencies and direct imports.
func goList(t testing.TB, dir, pkg string) listed {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	run := func(args ...string) []string {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			msg := err.Error()
			if ee, ok := err.(*exec.ExitError); ok {
				msg += ": " + string(ee.Stderr)
			}
			t.Fatalf("go %s: %s", strings.Join(args, " "), msg)
		}
		return strings.Fields(string(out))
	}
	return listed{
		deps:    run("list", "-deps", pkg),
		imports: run("list", "-f", `{{join .Imports " "}}`, pkg),
	}
}

// CheckLinks fails t for every package r.Pkg links against r.
func CheckLinks(t *testing.T, r LinkRule) {
	t.Helper()
	l := goList(t, r.Dir, r.Pkg)
	module := strings.SplitN(r.Pkg, "/", 2)[0]
	for _, d := range l.deps {
		for prefix, why := range r.Forbid {
			if d == prefix || strings.HasPrefix(d, strings.TrimSuffix(prefix, "/")+"/") {
				t.Errorf("%s links %s: %s", r.Pkg, d, why)
			}
		}
		if r.Own != nil && d != r.Pkg && (d == module || strings.HasPrefix(d, module+"/")) && !ownAllowed(d, r.Own) {
			t.Errorf("%s links %s; of this module it may link only %v", r.Pkg, d, r.Own)
		}
	}
	for _, imp := range l.imports {
		if why, bad := r.ForbidDirect[imp]; bad {
			t.Errorf("%s imports %s: %s", r.Pkg, imp, why)
		}
	}
	for _, w := range r.Want {
		if !slices.Contains(l.deps, w) {
			t.Errorf("go list -deps %s lacks %s; is the list complete?", r.Pkg, w)
		}
	}
}

func ownAllowed(pkg string, own []string) bool {
	for _, o := range own {
		if tree, ok := strings.CutSuffix(o, "/..."); ok {
			if pkg == tree || strings.HasPrefix(pkg, tree+"/") {
				return true
			}
		} else if pkg == o || path.Clean(o) == pkg {
			return true
		}
	}
	return false
}

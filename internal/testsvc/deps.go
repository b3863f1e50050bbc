package testsvc

import (
	"os/exec"
	"strings"
	"testing"
)

// Deps lists the packages the package in the current directory links
// (`go list -deps .`). It skips t when go is not on PATH.
func Deps(t testing.TB) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	return strings.Fields(string(out))
}

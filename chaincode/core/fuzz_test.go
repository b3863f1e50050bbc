package core

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// FuzzInvoke throws arbitrary function names and arguments at a populated
// ledger: the core must never panic, and every error must wrap one sentinel.
func FuzzInvoke(f *testing.F) {
	for name, arg := range writeArgs(&testing.T{}) {
		b, _ := json.Marshal(arg)
		f.Add(name, string(b), uint8(0))
	}
	f.Add("GetAsset", `{"id":"srv-s1-001.gpu0"}`, uint8(3))
	f.Add("ModelsExposedTo", `{"asset":"srv-s1-001.gpu0","kinds":["xid"]}`, uint8(9))
	f.Add("SubmitAnchor", `{"root":"00","first_event":18446744073709551615,"last_event":0}`, uint8(1))
	f.Fuzz(func(t *testing.T, name, arg string, role uint8) {
		l := mlWorld(t)
		r := Roles[int(role)%len(Roles)]
		_, err := do(l, r, func(tx *Tx) ([]byte, error) { return Invoke(tx, name, []byte(arg)) })
		if err != nil && Code(err) == "internal" {
			t.Fatalf("Invoke(%q, %q) as %s = %v, which wraps no sentinel", name, arg, r, err)
		}
	})
}

// TestCoreLinksNoFabric keeps the core free of Fabric's packages, so the
// embedded ledger in the root module can use it without pulling them in.
func TestCoreLinksNoFabric(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "hyperledger") || strings.Contains(dep, "grpc") || strings.Contains(dep, "protobuf") {
			t.Errorf("core depends on %s", dep)
		}
	}
}

package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// inForce is a fixed picture of the deployments in force (the ledger's,
// read in the background by approvals.Cache in twin-service).
type inForce map[string][]detect.Approval

func (f inForce) InForce(asset string) ([]detect.Approval, bool) { return f[asset], true }
func (f inForce) Kick()                                          {}

// TestRuntimeImageCheck: GET /assets/:id/runtime's judgement of each
// process says how its image compared with the deployment's container
// hash, local_only for an image built locally, and why a mismatch is not
// approved.
func TestRuntimeImageCheck(t *testing.T) {
	hex := func(c string) string { return strings.Repeat(c, 64) }
	s := &Server{opts: Options{Approvals: inForce{"srv.gpu0": {{Deployment: "dep-1", Model: "llama", Artifact: hex("a"), Container: hex("c")}}}}}
	proc := func(pid uint32, repo string) wire.Process {
		return wire.Process{PID: pid, Name: "vllm", Model: "llama", Artifact: "sha256:" + hex("a"), Image: "sha256:" + hex("e"), RepoDigest: repo}
	}
	a := twin.Asset{ID: "srv.gpu0", Kind: twin.KindGPU, Workload: &twin.Workload{At: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Processes: []wire.Process{proc(1, "sha256:"+hex("c")), proc(2, ""), proc(3, "sha256:"+hex("d"))}}}
	raw, err := json.Marshal(s.runtimeOf(&a))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Processes []struct {
			PID        uint32 `json:"pid"`
			Approved   bool   `json:"approved"`
			ImageCheck string `json:"image_check"`
			Reason     string `json:"reason"`
		} `json:"processes"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		approved bool
		check    string
	}{{true, "match"}, {true, "local_only"}, {false, "mismatch"}}
	if len(got.Processes) != len(want) {
		t.Fatalf("runtime = %s, want 3 processes", raw)
	}
	for i, w := range want {
		if p := got.Processes[i]; p.Approved != w.approved || p.ImageCheck != w.check {
			t.Errorf("process %d: approved %v image_check %q, want %v %q", p.PID, p.Approved, p.ImageCheck, w.approved, w.check)
		}
	}
	if r := got.Processes[2].Reason; !strings.Contains(r, "image digest differs") {
		t.Errorf("mismatch reason = %q, want it to say the image digest differs", r)
	}
}

package detect

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// approvalsMap is a fixed picture of the deployments in force.
type approvalsMap struct {
	m       map[string][]Approval
	loaded  bool
	version uint64
}

func (a *approvalsMap) InForce(asset string) ([]Approval, bool) { return a.m[asset], a.loaded }
func (a *approvalsMap) Version() uint64                         { return a.version }

func workloadsMsg(seq uint64, sec float64, gpus ...wire.GPUWorkload) Input {
	m := msg("gw-srv", seq, at(sec))
	m.Kind, m.Workloads = wire.KindWorkloads, &wire.Workloads{Host: "srv", GPUs: gpus}
	return Input{Message: m}
}

func sha(c string) string { return strings.Repeat(c, 64) }

// TestRuntimeChecks: the GPU runs the approved model (nothing), an
// unapproved one, and a tampered build of the approved one (each
// unapproved_model, with the signed message as evidence); the driver
// changes under the approved deployment (environment_drift); nothing is
// judged before the approvals were read, and the newest reports are judged
// again when they change (a pause).
func TestRuntimeChecks(t *testing.T) {
	f := newFleet()
	ap := &approvalsMap{m: map[string][]Approval{"srv.gpu0": {{Deployment: "dep-1", Model: "llama", Artifact: sha("a"), VBIOS: "96.00.99", Driver: "550.54"}}}}
	s := NewSet(Defaults(), NewView(nil))
	s.SetApprovals(ap)
	if _, err := s.Observe(f.change("srv.gpu0", at(0), gpu("s1", "srv", 0, "GPU-0"))); err != nil {
		t.Fatal(err)
	}
	proc := func(model, art string) wire.GPUWorkload {
		return wire.GPUWorkload{Asset: "srv.gpu0", Processes: []wire.Process{{PID: 7, Name: "vllm", Model: model, Artifact: "sha256:" + art}}}
	}
	observe := func(in Input) []Finding {
		t.Helper()
		fs, err := s.Observe(in)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	// Before the approvals were read: not judged.
	if got := observe(workloadsMsg(1, 1, proc("other", sha("b")))); len(got) != 0 {
		t.Fatalf("before the approvals were read: %+v, want nothing", got)
	}
	// Read (version 1): the newest report is judged at the next tick.
	ap.loaded, ap.version = true, 1
	got := s.Tick(at(2))
	if len(got) != 1 || got[0].Type != TypeUnapprovedModel || got[0].Evidence.Messages[0].Seq != 1 {
		t.Fatalf("tick after the approvals were read = %+v, want unapproved_model on report 1", got)
	}
	if got := s.Tick(at(3)); len(got) != 0 {
		t.Errorf("tick with unchanged approvals = %+v, want nothing", got)
	}
	for _, tc := range []struct {
		name, model, art, want string
	}{
		{"approved", "llama", sha("a"), ""},
		{"unapproved", "mistral", sha("b"), "pid 7 vllm serves model mistral as sha256:" + sha("b")},
		{"tampered", "llama", sha("c"), "(deployment dep-1 approves sha256:" + sha("a") + ")"},
	} {
		got := observe(workloadsMsg(2, 4, proc(tc.model, tc.art)))
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%s: %+v, want nothing", tc.name, got)
		case tc.want != "" && (len(got) != 1 || got[0].Type != TypeUnapprovedModel || got[0].Severity != Critical ||
			!strings.Contains(got[0].Summary, tc.want) || got[0].Evidence.Messages[0].Seq != 2 || got[0].Site != "s1"):
			t.Errorf("%s: %+v, want one critical unapproved_model at s1 on message 2 saying %q", tc.name, got, tc.want)
		}
	}
	// An older report sent late does not replace the newest.
	observe(workloadsMsg(3, 10, proc("llama", sha("a"))))
	if got := observe(workloadsMsg(4, 9, proc("x", sha("d")))); len(got) != 0 {
		t.Errorf("late report = %+v, want not judged", got)
	}
	// The driver changes under dep-1 (firmware_unauthorised too: no work
	// order covers it; one would not cover the drift).
	got = observe(f.change("srv.gpu0", at(20), func(a *twin.Asset) { a.Firmware.Driver = "555.10" }))
	got = slices.DeleteFunc(got, func(f Finding) bool { return f.Type == TypeFirmwareUnauthorised })
	if len(got) != 1 || got[0].Type != TypeEnvironmentDrift || got[0].Severity != Warning ||
		!strings.Contains(got[0].Summary, "driver 550.54 approved, 555.10 now") || len(got[0].Evidence.Events) != 1 {
		t.Errorf("driver change = %+v, want environment_drift naming dep-1's driver, with the event", got)
	}
	// dep-1 paused (the approvals change): the model still running is unapproved.
	ap.m, ap.version = map[string][]Approval{}, 2
	got = s.Tick(at(30))
	if len(got) != 1 || got[0].Type != TypeUnapprovedModel || got[0].Evidence.Messages[0].Seq != 3 {
		t.Errorf("tick after dep-1 left force = %+v, want unapproved_model on the newest report (3)", got)
	}
	// A process without an artifact (no configured model) is not judged.
	if got := observe(workloadsMsg(5, 40, wire.GPUWorkload{Asset: "srv.gpu0", Processes: []wire.Process{{PID: 8, Name: "miner", Skip: wire.SkipNoModel}}})); len(got) != 0 {
		t.Errorf("process without artifact = %+v, want nothing", got)
	}
}

// TestJudge: a process is judged by its artifact and, in a container whose
// deployment names a container hash, by its image's registry digest.
func TestJudge(t *testing.T) {
	as := []Approval{
		{Deployment: "dep-1", Model: "llama", Artifact: sha("a"), Container: sha("c")},
		{Deployment: "dep-2", Model: "bert", Artifact: sha("b")},
	}
	p := func(art, image, repo string) wire.Process {
		return wire.Process{PID: 7, Name: "vllm", Model: "llama", Artifact: art, Image: image, RepoDigest: repo}
	}
	img := "sha256:" + sha("e")
	for _, tc := range []struct {
		name   string
		p      wire.Process
		want   Judgement
		reason string
	}{
		{"no artifact", p("", img, ""), Judgement{}, ""},
		{"unapproved artifact", p("sha256:"+sha("f"), "", ""), Judgement{Judged: true}, "no deployment in force here approves artifact sha256:" + sha("f")},
		{"no container", p("sha256:"+sha("a"), "", ""), Judgement{Judged: true, Approved: true, Deployment: "dep-1"}, ""},
		{"image match", p("sha256:"+sha("a"), img, "sha256:"+sha("c")), Judgement{Judged: true, Approved: true, Deployment: "dep-1", ImageCheck: ImageMatch}, ""},
		{"image mismatch", p("sha256:"+sha("a"), img, "sha256:"+sha("d")), Judgement{Judged: true, Deployment: "dep-1", ImageCheck: ImageMismatch},
			"image digest differs: runs image " + img + " with registry digest sha256:" + sha("d") + ", deployment dep-1 approves container sha256:" + sha("c")},
		{"local only", p("sha256:"+sha("a"), img, ""), Judgement{Judged: true, Approved: true, Deployment: "dep-1", ImageCheck: ImageLocalOnly}, ""},
		{"deployment names no container", p("sha256:"+sha("b"), img, "sha256:"+sha("d")), Judgement{Judged: true, Approved: true, Deployment: "dep-2"}, ""},
	} {
		tc.want.Reason = tc.reason
		if got := Judge(as, tc.p); got != tc.want {
			t.Errorf("%s: Judge(%+v) = %+v, want %+v", tc.name, tc.p, got, tc.want)
		}
	}
}

// TestRuntimeImageMismatch: the approved artifact in an image whose
// registry digest is not the deployment's container hash raises
// unapproved_model saying so; the same artifact in a locally built image
// (no registry digest) raises nothing and is counted as not compared.
func TestRuntimeImageMismatch(t *testing.T) {
	f := newFleet()
	ap := &approvalsMap{loaded: true, version: 1, m: map[string][]Approval{"srv.gpu0": {{Deployment: "dep-1", Model: "llama", Artifact: sha("a"), Container: sha("c")}}}}
	s := NewSet(Defaults(), NewView(nil))
	s.SetApprovals(ap)
	var notCompared atomic.Uint64
	s.CountImagesNotCompared(&notCompared)
	if _, err := s.Observe(f.change("srv.gpu0", at(0), gpu("s1", "srv", 0, "GPU-0"))); err != nil {
		t.Fatal(err)
	}
	run := func(seq uint64, repo string) []Finding {
		t.Helper()
		fs, err := s.Observe(workloadsMsg(seq, float64(seq), wire.GPUWorkload{Asset: "srv.gpu0", Processes: []wire.Process{
			{PID: 9, Name: "vllm", Model: "llama", Artifact: "sha256:" + sha("a"), Image: "sha256:" + sha("e"), RepoDigest: repo}}}))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	if got := run(1, "sha256:"+sha("c")); len(got) != 0 {
		t.Errorf("image with the approved digest: %+v, want nothing", got)
	}
	got := run(2, "sha256:"+sha("d"))
	if len(got) != 1 || got[0].Type != TypeUnapprovedModel || !strings.Contains(got[0].Summary, "image digest differs") ||
		got[0].Evidence.Values["pid.9.repo_digest"] != "sha256:"+sha("d") || got[0].Evidence.Messages[0].Seq != 2 {
		t.Errorf("image with another digest: %+v, want unapproved_model saying the image digest differs", got)
	}
	if got := run(3, ""); len(got) != 0 || notCompared.Load() != 1 {
		t.Errorf("locally built image: %+v, %d not compared; want nothing, 1", got, notCompared.Load())
	}
}

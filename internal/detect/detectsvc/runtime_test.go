package detectsvc

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/ingest"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// fixedApprovals is a picture of the deployments in force that never changes.
type fixedApprovals map[string][]detect.Approval

func (f fixedApprovals) InForce(asset string) ([]detect.Approval, bool) { return f[asset], true }
func (f fixedApprovals) Version() uint64                                { return 1 }

// TestRuntimeAlertsThroughTheEngine: through the real ingest and engine, a
// driver change under an approved deployment raises environment_drift and
// an unapproved artifact in a signed workloads report raises
// unapproved_model; each alert's raised step is a twin event naming the
// gateway message it rests on (what the anchorer puts on the ledger).
func TestRuntimeAlertsThroughTheEngine(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 50 * time.Millisecond
	sum := sha256.Sum256([]byte("llama v1"))
	approved := hex.EncodeToString(sum[:])
	seed := sha256.Sum256([]byte("gw-a"))
	r := &rig{t: t, dir: t.TempDir(), key: ed25519.NewKeyFromSeed(seed[:]), events: true,
		approvals: fixedApprovals{"srv-a.gpu0": {{Deployment: "dep-1", Model: "llama", Artifact: approved, VBIOS: "1.0", Driver: "550"}}}}
	r.open(cfg)
	t.Cleanup(r.close)
	now := time.Now().UTC().Add(-time.Hour)
	r.inventory(1, now, "1.0", "550")
	r.inventory(2, now.Add(time.Minute), "1.0", "560")
	body := wire.Workloads{Host: "srv-a", GPUs: []wire.GPUWorkload{{Asset: "srv-a.gpu0", Processes: []wire.Process{
		{PID: 7, Name: "vllm", Model: "llama", Artifact: "sha256:" + strings.Repeat("ab", 32)}}}}}
	data, err := wire.Seal(r.key, "gw-a", 3, now.Add(2*time.Minute), wire.KindWorkloads, body)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.in.Submit(ingest.Source{}, wire.Topic("gw-a", wire.KindWorkloads), data); err != nil || !out.Accepted() {
		t.Fatalf("submit workloads: %v %v", out.Err, err)
	}
	items := r.waitAlerts("environment_drift and unapproved_model", func(as []alert.Alert) bool {
		n := 0
		for _, a := range as {
			if a.Type == detect.TypeEnvironmentDrift || a.Type == detect.TypeUnapprovedModel {
				n++
			}
		}
		return n == 2
	})
	want := map[detect.Type]uint64{detect.TypeEnvironmentDrift: 2, detect.TypeUnapprovedModel: 3} // the message each rests on
	for _, a := range items {
		seq, ok := want[a.Type]
		if !ok {
			continue
		}
		if a.Type == detect.TypeEnvironmentDrift && !strings.Contains(a.Summary, "driver 550 approved, 560 now") {
			t.Errorf("environment_drift summary = %q", a.Summary)
		}
		if a.Type == detect.TypeUnapprovedModel && !strings.Contains(a.Summary, "deployment dep-1 approves sha256:"+approved) {
			t.Errorf("unapproved_model summary = %q", a.Summary)
		}
		var raised twin.Event
		testsvc.Eventually(t, 10*time.Second, string(a.Type)+"'s raised step on the event log", func() bool {
			evs, err := r.store.AssetEvents("srv-a.gpu0", 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.Type == twin.EventAlertRaised && strings.Contains(e.Note, "alert "+a.ID+" ") {
					raised = e
					return true
				}
			}
			return false
		})
		if raised.Source.Actor != "alerts" || raised.Source.Gateway != "gw-a" || raised.Source.Seq != seq {
			t.Errorf("%s raised event source = %+v, want alerts resting on gw-a seq %d", a.Type, raised.Source, seq)
		}
	}
}

// TestImageMismatchThroughTheEngine: through the real ingest and engine, a
// signed workloads report of the approved artifact in an image whose
// registry digest is not the deployment's container hash raises
// unapproved_model saying the image digest differs; the same artifact in
// a locally built image beside it is not alerted on, and counted.
func TestImageMismatchThroughTheEngine(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 50 * time.Millisecond
	approved, container := strings.Repeat("a1", 32), strings.Repeat("c3", 32)
	seed := sha256.Sum256([]byte("gw-a"))
	r := &rig{t: t, dir: t.TempDir(), key: ed25519.NewKeyFromSeed(seed[:]), events: true,
		approvals: fixedApprovals{"srv-a.gpu0": {{Deployment: "dep-1", Model: "llama", Artifact: approved, Container: container}}}}
	r.open(cfg)
	t.Cleanup(r.close)
	now := time.Now().UTC().Add(-time.Hour)
	r.inventory(1, now, "1.0", "550")
	img := "sha256:" + strings.Repeat("e5", 32)
	body := wire.Workloads{Host: "srv-a", GPUs: []wire.GPUWorkload{{Asset: "srv-a.gpu0", Processes: []wire.Process{
		{PID: 7, Name: "vllm", Model: "llama", Artifact: "sha256:" + approved, Image: img, RepoDigest: "sha256:" + strings.Repeat("d4", 32)},
		{PID: 8, Name: "vllm", Model: "llama", Artifact: "sha256:" + approved, Image: img}}}}}
	data, err := wire.Seal(r.key, "gw-a", 2, now.Add(time.Minute), wire.KindWorkloads, body)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.in.Submit(ingest.Source{}, wire.Topic("gw-a", wire.KindWorkloads), data); err != nil || !out.Accepted() {
		t.Fatalf("submit workloads: %v %v", out.Err, err)
	}
	items := r.waitAlerts("unapproved_model", func(as []alert.Alert) bool {
		return slices.ContainsFunc(as, func(a alert.Alert) bool { return a.Type == detect.TypeUnapprovedModel })
	})
	for _, a := range items {
		if a.Type != detect.TypeUnapprovedModel {
			continue
		}
		if !strings.Contains(a.Summary, "pid 7 vllm serves sha256:"+approved+": image digest differs") || strings.Contains(a.Summary, "pid 8") {
			t.Errorf("unapproved_model summary = %q, want pid 7's image digest differing and nothing on pid 8", a.Summary)
		}
	}
	if n := r.svc.engine.Stats.ImagesNotCompared.Load(); n == 0 {
		t.Errorf("images not compared = %d, want pid 8's locally built image counted", n)
	}
}

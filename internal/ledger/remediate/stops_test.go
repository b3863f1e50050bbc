package remediate

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger/approvals"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/registry"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// twins is a real ingest over a real twin store, gateway gw-1 signing with
// ledgertest.GatewayKey: the watcher reads what agents report, as in
// twin-service.
type twins struct {
	t     testing.TB
	store *twinstore.Store
	in    *ingest.Ingest
	seq   uint64
}

func newTwins(t testing.TB) *twins {
	reg := registry.New()
	if err := reg.Put(registry.Gateway{ID: "gw-1", PublicKey: ledgertest.GatewayKey.Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	store, err := twinstore.Open(filepath.Join(t.TempDir(), "twins.db"), twinstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(ingest.Config{CheckpointInterval: time.Nanosecond}, store, reg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingest Run: %v", err)
		}
		store.Close()
	})
	return &twins{t: t, store: store, in: in}
}

// report has gw-1 report srv.gpu1 running processes serving artifacts (hex).
func (tw *twins) report(artifacts ...string) {
	tw.t.Helper()
	tw.reportOn([]string{"srv.gpu1"}, artifacts...)
}

// reportOn has gw-1 report gpus each running processes serving artifacts.
func (tw *twins) reportOn(gpus []string, artifacts ...string) {
	tw.t.Helper()
	var gs []wire.GPUWorkload
	for _, gpu := range gpus {
		g := wire.GPUWorkload{Asset: gpu, Processes: []wire.Process{}}
		for i, a := range artifacts {
			g.Processes = append(g.Processes, wire.Process{PID: uint32(10 + i), Name: "tritonserver", MemBytes: 1, Model: "m", Artifact: "sha256:" + a})
		}
		gs = append(gs, g)
	}
	tw.seq++
	raw, err := wire.Seal(ledgertest.GatewayKey, "gw-1", tw.seq, time.Now(), wire.KindWorkloads, wire.Workloads{Host: "srv", GPUs: gs})
	if err != nil {
		tw.t.Fatal(err)
	}
	out, err := tw.in.Submit(ingest.Source{}, wire.Topic("gw-1", wire.KindWorkloads), raw)
	if err != nil || !out.Accepted() {
		tw.t.Fatalf("workloads %d: %s %v", tw.seq, out.Reason, err)
	}
}

// TestStopWatcher: after model-new's remediation paused it on srv.gpu1,
// nothing is recorded while the GPU's reports show it; the first signed
// report without it is recorded as the stop, once; a restarted watcher
// learns the stop from the ledger.
func TestStopWatcher(t *testing.T) {
	l := world(t)
	svc := core.Caller{ID: "twin-service", Role: core.RoleService}
	ctx := context.Background()
	must[core.Remediation](t, "propose")(l.ProposeRemediation(as(core.RoleService), core.RemediationInput{ID: "rem-w", Model: "model-new",
		Reason: "swap on its training GPU", Steps: []core.RemediationStep{{Action: core.ActionPause, Deployment: "dep-model-new"}}}))
	tw := newTwins(t)
	tw.report(ledgertest.Hash("model-new"))
	cache := approvals.New(l, svc, 0, nil)
	w := NewStopWatcher(l, cache, tw.store, nil, svc, time.Hour, nil)
	step := func(w *StopWatcher) []string {
		t.Helper()
		if err := cache.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := w.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := step(w); len(got) != 0 || w.Pending.Load() != 0 {
		t.Fatalf("before the execution: recorded %v, pending %d; want none", got, w.Pending.Load())
	}
	for _, r := range []core.Role{core.RoleMLLead, core.RoleSecurity} {
		must[core.Remediation](t, "decide")(l.DecideRemediation(as(r), core.RemediationApproval{ID: "rem-w", Decision: core.Approve}))
	}
	must[core.Remediation](t, "execute")(l.ExecuteRemediation(as(core.RoleService), "rem-w"))
	if got := step(w); len(got) != 0 || w.Pending.Load() != 1 {
		t.Fatalf("report from before the execution: recorded %v, pending %d; want none, 1 pending", got, w.Pending.Load())
	}
	tw.report(ledgertest.Hash("model-new"), ledgertest.Hash("model-old"))
	if got := step(w); len(got) != 0 || w.Pending.Load() != 1 {
		t.Fatalf("model still running: recorded %v, pending %d; want none, 1 pending", got, w.Pending.Load())
	}
	tw.report(ledgertest.Hash("model-old"))
	if got := step(w); len(got) != 1 || got[0] != "rem-w/srv.gpu1" || w.Pending.Load() != 0 || w.Recorded.Load() != 1 {
		t.Fatalf("model stopped: recorded %v, pending %d, recorded total %d; want rem-w/srv.gpu1, none pending", got, w.Pending.Load(), w.Recorded.Load())
	}
	r := must[core.Remediation](t, "get")(l.GetRemediation(as(core.RoleAuditor), "rem-w"))
	if len(r.Stops) != 1 || r.Stops[0].Asset != "srv.gpu1" || r.Stops[0].Gateway != "gw-1" || r.Stops[0].Seq != 3 {
		t.Fatalf("stops on the ledger = %+v, want srv.gpu1 by gw-1/3", r.Stops)
	}
	tw.report()
	if got := step(w); len(got) != 0 {
		t.Errorf("a later report recorded %v again", got)
	}
	w2 := NewStopWatcher(l, cache, tw.store, nil, svc, time.Hour, nil)
	if got := step(w2); len(got) != 0 || w2.Pending.Load() != 0 {
		t.Errorf("restarted watcher: recorded %v, pending %d; want none (the ledger has the stop)", got, w2.Pending.Load())
	}
}

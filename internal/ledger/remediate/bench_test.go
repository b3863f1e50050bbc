package remediate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/approvals"
	"twinchain/internal/ledger/ledgertest"
)

// BenchmarkApprovalsLookup compares what the run-time checks do per GPU of
// a workloads report (the cache's in-memory answer) with asking the
// embedded ledger each time (DeploymentsOn), on the same ledger.
func BenchmarkApprovalsLookup(b *testing.B) {
	l := world(b)
	svc := core.Caller{ID: "twin-service", Role: core.RoleService}
	cache := approvals.New(l, svc, 0, nil)
	ctx := context.Background()
	if err := cache.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("cache", func(b *testing.B) {
		for range b.N {
			if as, ok := cache.InForce("srv.gpu1"); !ok || len(as) != 2 {
				b.Fatalf("InForce = %v %v", as, ok)
			}
		}
	})
	b.Run("ledger", func(b *testing.B) {
		lctx := ledger.WithCaller(ctx, svc)
		for range b.N {
			if ds, err := l.DeploymentsOn(lctx, "srv.gpu1"); err != nil || len(ds) != 2 {
				b.Fatalf("DeploymentsOn = %d %v", len(ds), err)
			}
		}
	})
}

// BenchmarkStopWatcherStep is one step of the stop watcher with 64 GPUs
// whose paused model still runs (the steady state while an operator has
// not stopped it): the twins are read from the real store, the ledger not
// at all.
func BenchmarkStopWatcherStep(b *testing.B) {
	l := world(b)
	am, eng := as(core.RoleAssetManager), as(core.RoleMLEngineer)
	gpus := make([]string, 64)
	for i := range gpus {
		gpus[i] = fmt.Sprintf("wide.gpu%d", i)
		must[core.Asset](b, "gpu")(l.RegisterAsset(am, core.AssetRegistration{ID: gpus[i], Kind: "gpu", FingerprintHash: ledgertest.Hash(gpus[i])}))
	}
	d := must[core.Deployment](b, "deploy")(l.RequestDeployment(eng, core.DeploymentInput{ID: "dep-wide", Model: "model-new", Policy: "prod", Targets: gpus,
		BinaryHash: ledgertest.Hash("b"), ContainerHash: ledgertest.Hash("c"), ConfigHash: ledgertest.Hash("f"),
		Environment: core.Environment{HardwareClass: "h100", Drivers: []core.ToolVersion{{Name: "nvidia", Version: "550.54"}}}}))
	if !d.Allowed {
		b.Fatalf("dep-wide refused: %+v", d.Reasons)
	}
	must[core.Remediation](b, "propose")(l.ProposeRemediation(as(core.RoleService), core.RemediationInput{ID: "rem-b", Model: "model-new",
		Reason: "bench", Steps: []core.RemediationStep{{Action: core.ActionPause, Deployment: "dep-wide"}}}))
	for _, r := range []core.Role{core.RoleMLLead, core.RoleSecurity} {
		must[core.Remediation](b, "decide")(l.DecideRemediation(as(r), core.RemediationApproval{ID: "rem-b", Decision: core.Approve}))
	}
	must[core.Remediation](b, "execute")(l.ExecuteRemediation(as(core.RoleService), "rem-b"))
	tw := newTwins(b)
	tw.reportOn(gpus, ledgertest.Hash("model-new"))
	svc := core.Caller{ID: "twin-service", Role: core.RoleService}
	cache := approvals.New(l, svc, 0, nil)
	ctx := context.Background()
	if err := cache.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	w := NewStopWatcher(l, cache, tw.store, nil, svc, time.Hour, nil)
	b.ResetTimer()
	for range b.N {
		if got, err := w.Step(ctx); err != nil || len(got) != 0 || w.Pending.Load() != 64 {
			b.Fatalf("Step = %v, %v, pending %d; want nothing recorded, 64 pending", got, err, w.Pending.Load())
		}
	}
}

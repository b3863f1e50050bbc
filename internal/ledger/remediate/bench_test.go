package remediate

import (
	"context"
	"testing"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/approvals"
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

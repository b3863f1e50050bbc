package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/detect"
	"twinchain/internal/testsvc"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func dep(id, model string, sec int, allowed bool, targets ...string) core.Deployment {
	return core.Deployment{DeploymentInput: core.DeploymentInput{ID: id, Kind: core.KindDeploy, Model: model, Targets: targets},
		ModelHash: strings.Repeat(model[:1], 64), Allowed: allowed, Stamp: core.Stamp{Time: t0.Add(time.Duration(sec) * time.Second)}}
}

func summary(m map[string][]detect.Approval) string {
	var b strings.Builder
	for _, a := range []string{"g0", "g1", "g2"} {
		fmt.Fprintf(&b, "%s:", a)
		for _, x := range m[a] {
			fmt.Fprintf(&b, " %s", x.Deployment)
		}
		b.WriteString(";")
	}
	return b.String()
}

// TestInForce: allowed deployments count on each target, refused ones
// never; an allowed rollback takes the deployment it replaces out of force
// on the targets they share only; a paused deployment is out everywhere.
func TestInForce(t *testing.T) {
	d1 := dep("d1", "alpha", 1, true, "g0", "g1")
	d1.Environment.Assets = []core.AssetEnvironment{{Asset: "g1", VBIOS: "96.00", Driver: "550.54"}}
	refused := dep("d2", "beta", 2, false, "g0")
	rb := dep("d3", "beta", 3, true, "g0")
	rb.Kind, rb.Replaces = core.KindRollback, "d1"
	paused := dep("d4", "gamma", 4, true, "g2")
	paused.Paused = &core.Pause{Remediation: "rem-1"}
	other := dep("d0", "delta", 0, true, "g2")
	got := InForce([]core.Deployment{d1, refused, rb, paused, other})
	if want := "g0: d3;g1: d1;g2: d0;"; summary(got) != want {
		t.Errorf("InForce = %s, want %s", summary(got), want)
	}
	if a := got["g1"][0]; a.Model != "alpha" || a.Artifact != strings.Repeat("a", 64) || a.Driver != "550.54" || a.VBIOS != "96.00" {
		t.Errorf("g1's approval = %+v, want alpha's artifact and the recorded environment", a)
	}
}

// lister pages through ds like the ledger, or fails with err.
type lister struct {
	ds    []core.Deployment
	err   error
	calls int
}

func (l *lister) ListDeployments(ctx context.Context, q core.PageQuery) (core.Page[core.Deployment], error) {
	l.calls++
	if l.err != nil {
		return core.Page[core.Deployment]{}, l.err
	}
	var p core.Page[core.Deployment]
	for _, d := range l.ds {
		if d.ID <= q.After {
			continue
		}
		if len(p.Items) == 2 { // small pages: paging is exercised
			p.Next = p.Items[1].ID
			break
		}
		p.Items = append(p.Items, d)
	}
	return p, nil
}

// TestCacheRefresh: nothing is known before the first read; Version moves
// when the picture changes and only then; a failed read keeps the last
// picture.
func TestCacheRefresh(t *testing.T) {
	l := &lister{ds: []core.Deployment{dep("a1", "alpha", 1, true, "g0"), dep("a2", "beta", 2, true, "g0"), dep("a3", "gamma", 3, true, "g1")}}
	c := New(l, core.Caller{ID: "twin-service", Role: core.RoleService}, 0, nil)
	if _, ok := c.InForce("g0"); ok || c.Version() != 0 {
		t.Fatalf("before a read: known %v version %d, want unknown at 0", ok, c.Version())
	}
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if as, ok := c.InForce("g0"); !ok || len(as) != 2 || c.Version() != 1 || l.calls != 2 {
		t.Fatalf("after a read: %+v known %v version %d calls %d, want a1 and a2 known at version 1 over 2 pages", as, ok, c.Version(), l.calls)
	}
	if err := c.Refresh(ctx); err != nil || c.Version() != 1 {
		t.Errorf("unchanged read: err %v version %d, want version 1", err, c.Version())
	}
	l.ds[0].Paused = &core.Pause{Remediation: "rem-1"}
	if err := c.Refresh(ctx); err != nil || c.Version() != 2 {
		t.Errorf("read after a pause: err %v version %d, want version 2", err, c.Version())
	}
	l.err = errors.New("peer away")
	if err := c.Refresh(ctx); err == nil || c.Errors.Load() != 1 {
		t.Errorf("failed read: err %v errors %d, want the error counted", err, c.Errors.Load())
	}
	if as, ok := c.InForce("g0"); !ok || len(as) != 1 || as[0].Deployment != "a2" {
		t.Errorf("after a failed read: %+v known %v, want the last picture (a2)", as, ok)
	}
}

// TestCacheRunKick: Run reads at start and again soon after a Kick, long
// before its interval.
func TestCacheRunKick(t *testing.T) {
	l := &lister{}
	c := New(l, core.Caller{ID: "twin-service", Role: core.RoleService}, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	testsvc.Eventually(t, 10*time.Second, "the first read", func() bool { return c.Reads.Load() == 1 })
	c.Kick()
	testsvc.Eventually(t, 10*time.Second, "a read after the kick", func() bool { return c.Reads.Load() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil at the end of its context", err)
	}
}

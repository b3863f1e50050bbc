// Package approvals keeps the ledger's deployments in force per asset in
// memory, for twin-service's run-time checks (detect.Approvals): which model
// artifacts may run on which GPU, and the firmware each was approved on.
//
// The ledger is never read per message: a Cache pages through every gate
// decision (ListDeployments) at start, every Every, and soon after Kick
// (twin-service kicks it when its API recorded a deployment), in its own
// goroutine; readers only take a read lock on the map it builds.
package approvals

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/detect"
	"twinchain/internal/ledger"
)

// Lister pages through the ledger's gate decisions; ledger.Ledger is one.
type Lister interface {
	ListDeployments(ctx context.Context, q core.PageQuery) (core.Page[core.Deployment], error)
}

// DefaultEvery is how often the ledger is read again without a kick (other
// organisations' deployments, rollbacks and pauses on a shared ledger).
const DefaultEvery = 30 * time.Second

// Cache is the deployments in force per asset. Safe for concurrent use.
type Cache struct {
	l      Lister
	caller core.Caller
	every  time.Duration
	log    *slog.Logger
	kick   chan struct{}

	mu      sync.RWMutex
	byAsset map[string][]detect.Approval
	all     []core.Deployment // every gate decision, as last read
	loaded  bool
	version atomic.Uint64

	// Reads counts the full reads of the ledger, Errors the failed ones.
	Reads, Errors atomic.Uint64
}

// New returns a cache that reads l as caller every every (0: DefaultEvery);
// it reads nothing until Run.
func New(l Lister, caller core.Caller, every time.Duration, log *slog.Logger) *Cache {
	if every <= 0 {
		every = DefaultEvery
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{l: l, caller: caller, every: every, log: log, kick: make(chan struct{}, 1)}
}

// Run reads the ledger at once, then every Every and after each Kick, until
// ctx ends. A failed read keeps the previous picture and is logged once
// until a read succeeds again.
func (c *Cache) Run(ctx context.Context) error {
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	failing := false
	for {
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				c.log.Warn("reading the deployments in force failed; keeping the last picture and retrying (logged once until it recovers)", "err", err)
			}
			failing = true
		} else if failing && err == nil {
			c.log.Info("deployments in force read again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-c.kick:
		}
	}
}

// Kick asks for a read soon; it never blocks.
func (c *Cache) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Refresh reads every gate decision and replaces the picture; Version moves
// when it changed.
func (c *Cache) Refresh(ctx context.Context) error {
	ctx = ledger.WithCaller(ctx, c.caller)
	var all []core.Deployment
	for q := (core.PageQuery{Limit: core.MaxPageLimit}); ; {
		p, err := c.l.ListDeployments(ctx, q)
		if err != nil {
			c.Errors.Add(1)
			return err
		}
		all = append(all, p.Items...)
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	c.Reads.Add(1)
	next := InForce(all)
	c.mu.Lock()
	changed := !c.loaded || !maps.EqualFunc(c.byAsset, next, slices.Equal)
	c.byAsset, c.all, c.loaded = next, all, true
	c.mu.Unlock()
	if changed {
		c.version.Add(1)
	}
	return nil
}

// InForce implements detect.Approvals.
func (c *Cache) InForce(asset string) ([]detect.Approval, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byAsset[asset], c.loaded
}

// Deployments are every gate decision as last read (nil before a read),
// in id order. The caller must not change them.
func (c *Cache) Deployments() []core.Deployment {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.all
}

// Version implements detect.Approvals.
func (c *Cache) Version() uint64 { return c.version.Load() }

// InForce works out the deployments in force per asset from every gate
// decision: each allowed deployment (or rollback) on each of its targets,
// except on the targets an allowed rollback of it shares, and except a
// paused one. Each asset's approvals are in the order they were recorded.
func InForce(ds []core.Deployment) map[string][]detect.Approval {
	allowed := make([]*core.Deployment, 0, len(ds))
	for i := range ds {
		if ds[i].Allowed {
			allowed = append(allowed, &ds[i])
		}
	}
	sort.SliceStable(allowed, func(i, j int) bool { return allowed[i].Stamp.Time.Before(allowed[j].Stamp.Time) })
	type key struct{ dep, asset string }
	rolledBack := map[key]bool{}
	for _, d := range allowed {
		if d.Kind == core.KindRollback {
			for _, t := range d.Targets {
				rolledBack[key{d.Replaces, t}] = true
			}
		}
	}
	out := map[string][]detect.Approval{}
	for _, d := range allowed {
		if d.Paused != nil {
			continue
		}
		for _, t := range d.Targets {
			if rolledBack[key{d.ID, t}] {
				continue
			}
			a := detect.Approval{Deployment: d.ID, Model: d.Model, Artifact: d.ModelHash, Container: d.ContainerHash}
			for _, e := range d.Environment.Assets {
				if e.Asset == t {
					a.VBIOS, a.Driver = e.VBIOS, e.Driver
				}
			}
			out[t] = append(out[t], a)
		}
	}
	return out
}

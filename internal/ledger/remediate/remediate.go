// Package remediate proposes the remediation of tainted models: a model in
// force somewhere whose training hardware has evidence of a refused kind
// (its deployments' policies' refuse_training_evidence, else swap, xid and
// ecc_dbe) within its training run gets a remediation proposed on the
// ledger: re-validate the model, and roll each of its deployments in force
// back to the deployment of another model it followed on a shared target,
// or pause it when there is none. The sign-off roles decide and execute it
// (core.ProposeRemediation); nothing here approves anything.
package remediate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
)

// Ledger is what the proposer reads and writes.
type Ledger interface {
	ModelLineage(ctx context.Context, model string) (core.Lineage, error)
	GetPolicy(ctx context.Context, id string) (core.Policy, error)
	GetRemediation(ctx context.Context, id string) (core.Remediation, error)
	ProposeRemediation(ctx context.Context, in core.RemediationInput) (core.Remediation, error)
}

// Deployments are the gate decisions as last read (*approvals.Cache).
type Deployments interface {
	Deployments() []core.Deployment
}

// DefaultKinds are the evidence kinds that taint a model when its
// policies name none.
var DefaultKinds = []core.EvidenceKind{core.EvidenceSwap, core.EvidenceXID, core.EvidenceECCDBE}

// Proposer proposes remediations; safe for concurrent use of its counters.
type Proposer struct {
	l      Ledger
	deps   Deployments
	caller core.Caller
	every  time.Duration
	log    *slog.Logger

	// Proposed counts remediations proposed, Errors failed steps.
	Proposed, Errors atomic.Uint64
}

// New returns a proposer acting as caller every every; it starts nothing.
func New(l Ledger, deps Deployments, caller core.Caller, every time.Duration, log *slog.Logger) *Proposer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proposer{l: l, deps: deps, caller: caller, every: every, log: log}
}

// Run checks every Every until ctx ends; a failed check is logged once
// until one succeeds.
func (p *Proposer) Run(ctx context.Context) error {
	return every(ctx, p.every, func(ctx context.Context) error { _, err := p.Step(ctx); return err }, &p.Errors, p.log,
		"checking models in force for tainted training hardware failed; retrying (logged once until it recovers)")
}

// every runs step every d until ctx ends, counting failed steps in errs;
// a failure is logged (msg) once until a step succeeds.
func every(ctx context.Context, d time.Duration, step func(context.Context) error, errs *atomic.Uint64, log *slog.Logger, msg string) error {
	t := time.NewTicker(d)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := step(ctx); err != nil && ctx.Err() == nil {
			errs.Add(1)
			if !failing {
				log.Warn(msg, "err", err)
			}
			failing = true
		} else {
			failing = false
		}
	}
}

// Step proposes a remediation for every tainted model in force that has
// none for the same evidence yet, and returns the ids it
// proposed.
func (p *Proposer) Step(ctx context.Context) ([]string, error) {
	ctx = ledger.WithCaller(ctx, p.caller)
	all := p.deps.Deployments()
	inForce := map[string][]core.Deployment{} // model -> its deployments in force
	for _, d := range all {
		if d.Allowed && d.Paused == nil && !rolledBackEverywhere(&d, all) {
			inForce[d.Model] = append(inForce[d.Model], d)
		}
	}
	models := make([]string, 0, len(inForce))
	for m := range inForce {
		models = append(models, m)
	}
	sort.Strings(models)
	var out []string
	var errs []error
	for _, m := range models {
		id, err := p.check(ctx, m, inForce[m], all)
		if err != nil {
			errs = append(errs, fmt.Errorf("model %s: %w", m, err))
		} else if id != "" {
			out = append(out, id)
		}
	}
	return out, errors.Join(errs...)
}

// check proposes the remediation of model if its training evidence taints it.
func (p *Proposer) check(ctx context.Context, model string, deps []core.Deployment, all []core.Deployment) (string, error) {
	var kinds []core.EvidenceKind
	for _, d := range deps {
		pol, err := p.l.GetPolicy(ctx, d.Policy)
		if err != nil {
			return "", err
		}
		for _, k := range pol.RefuseTrainingEvidence {
			if !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
		}
	}
	if len(kinds) == 0 {
		kinds = DefaultKinds
	}
	lin, err := p.l.ModelLineage(ctx, model)
	if err != nil {
		return "", err
	}
	var keys, why []string
	for _, hw := range lin.Hardware {
		for _, e := range hw.Evidence {
			if slices.Contains(kinds, e.Kind) {
				keys = append(keys, fmt.Sprintf("%s/%s/%d/%s", e.Asset, e.Gateway, e.Seq, e.Kind))
				why = append(why, fmt.Sprintf("%s on %s (gateway %s seq %d)", e.Kind, e.Asset, e.Gateway, e.Seq))
			}
		}
	}
	if len(keys) == 0 {
		return "", nil
	}
	sort.Strings(keys)
	steps := []core.RemediationStep{{Action: core.ActionRevalidate}}
	for _, d := range deps {
		if to := previous(&d, all); to != "" {
			steps = append(steps, core.RemediationStep{Action: core.ActionRollback, Deployment: d.ID, To: to})
		} else {
			steps = append(steps, core.RemediationStep{Action: core.ActionPause, Deployment: d.ID})
		}
	}
	// One remediation per model and evidence: a deployment recorded later
	// (or a rollback to the model) does not propose it again.
	sum := sha256.Sum256([]byte(model + "\x00" + strings.Join(keys, "\x00")))
	id := "rem-" + hex.EncodeToString(sum[:8])
	if _, err := p.l.GetRemediation(ctx, id); err == nil {
		return "", nil // proposed already (executed, rejected or waiting)
	} else if !errors.Is(err, ledger.ErrNotFound) {
		return "", err
	}
	if len(keys) > 64 {
		keys = keys[:64]
	}
	reason := fmt.Sprintf("training hardware of %s has evidence within its run: %s", model, strings.Join(why, "; "))
	if len(reason) > 1024 {
		reason = reason[:1000] + " …"
	}
	if _, err := p.l.ProposeRemediation(ctx, core.RemediationInput{ID: id, Model: model, Reason: reason, Steps: steps, Evidence: keys}); err != nil {
		return "", err
	}
	p.Proposed.Add(1)
	p.log.Warn("remediation proposed: a model in force was trained on hardware with evidence; the sign-off roles decide", "remediation", id, "model", model, "reason", reason)
	return id, nil
}

// rolledBackEverywhere reports whether allowed rollbacks replace d on
// every one of its targets.
func rolledBackEverywhere(d *core.Deployment, all []core.Deployment) bool {
	for _, t := range d.Targets {
		if !slices.ContainsFunc(all, func(r core.Deployment) bool {
			return r.Allowed && r.Kind == core.KindRollback && r.Replaces == d.ID && slices.Contains(r.Targets, t)
		}) {
			return false
		}
	}
	return true
}

// previous is the newest allowed, unpaused deployment of another model,
// recorded before d, sharing a target with it: what a rollback returns to.
func previous(d *core.Deployment, all []core.Deployment) string {
	best := -1
	for i := range all {
		o := &all[i]
		if !o.Allowed || o.Paused != nil || o.Model == d.Model || !o.Stamp.Time.Before(d.Stamp.Time) ||
			!slices.ContainsFunc(o.Targets, func(t string) bool { return slices.Contains(d.Targets, t) }) {
			continue
		}
		if best < 0 || o.Stamp.Time.After(all[best].Stamp.Time) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return all[best].ID
}

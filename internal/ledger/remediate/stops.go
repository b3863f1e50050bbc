package remediate

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// twinchain does not command agents to stop a model: an operator stops
// it. The stop watcher verifies it: for each executed remediation that
// paused deployments on GPUs, it watches the twin's newest workloads report
// of each such GPU and, once a report no longer shows the paused model,
// records the stop on the ledger with that gateway-signed message as its
// evidence (core.RecordRemediationStop).

// StopLedger is what the stop watcher reads and writes.
type StopLedger interface {
	GetRemediation(ctx context.Context, id string) (core.Remediation, error)
	RecordRemediationStop(ctx context.Context, in core.RemediationStopInput) (core.Remediation, error)
	GetAsset(ctx context.Context, id string) (core.Asset, error)
	RegisterAsset(ctx context.Context, in core.AssetRegistration) (core.Asset, error)
}

// Twins are the twins and the message log (*twinstore.Store).
type Twins interface {
	Asset(id string) (twin.Asset, error)
	MessagesAfter(pos uint64, limit int) ([]twinstore.Message, error)
}

// GatewayKeys looks up a gateway's public key (*registry.Registry), to
// register a gateway on the ledger that is not there yet.
type GatewayKeys interface {
	Lookup(id string) (pub ed25519.PublicKey, site string, ok bool)
}

// MaxStopsPerStep bounds the ledger writes of one step.
const MaxStopsPerStep = 64

// DefaultStopsEvery is how often twin-service looks for stops: a step
// reads the twins from memory and the ledger only for a new remediation
// or a stop to record, so it can run often.
const DefaultStopsEvery = 2 * time.Second

// StopWatcher records remediation stops; safe for concurrent use of its
// counters. Step runs in one goroutine (Run's).
type StopWatcher struct {
	l        StopLedger
	deps     Deployments
	twins    Twins
	gateways GatewayKeys
	caller   core.Caller
	every    time.Duration
	log      *slog.Logger

	rems     map[string]*watched // remediation id -> what is known of it
	gwOnLdgr map[string]bool     // gateways known to be on the ledger

	// Recorded counts stops recorded, Refused stops the ledger refused,
	// Errors failed steps; Pending is the GPUs whose paused model has not
	// been reported stopped, as of the last step.
	Recorded, Refused, Errors atomic.Uint64
	Pending                   atomic.Int64
}

// watched is an executed remediation as the watcher knows it.
type watched struct {
	executed time.Time
	stopped  map[string]bool   // GPUs with a stop on the ledger
	tried    map[string]uint64 // GPU -> message position the ledger refused (not tried again)
}

// NewStopWatcher returns a watcher acting as caller every every; it starts
// nothing. gateways may be nil (a gateway not on the ledger is then not
// registered, and its stops wait).
func NewStopWatcher(l StopLedger, deps Deployments, twins Twins, gateways GatewayKeys, caller core.Caller, every time.Duration, log *slog.Logger) *StopWatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &StopWatcher{l: l, deps: deps, twins: twins, gateways: gateways, caller: caller, every: every, log: log,
		rems: map[string]*watched{}, gwOnLdgr: map[string]bool{}}
}

// Run steps every Every until ctx ends; a failed step is logged once until
// one succeeds.
func (w *StopWatcher) Run(ctx context.Context) error {
	return every(ctx, w.every, func(ctx context.Context) error { _, err := w.Step(ctx); return err }, &w.Errors, w.log,
		"recording remediation stops failed; retrying (logged once until it recovers)")
}

// target is one GPU a remediation's paused deployments target.
type target struct {
	rem, asset, hash string
}

// Step records the stop of every GPU whose newest workloads report no
// longer shows the model a remediation paused there, at most
// MaxStopsPerStep, and returns them as "remediation/asset". The ledger is
// read once per remediation (when first seen) and per gateway; the twins
// are read from memory.
func (w *StopWatcher) Step(ctx context.Context) ([]string, error) {
	ctx = ledger.WithCaller(ctx, w.caller)
	var targets []target
	seen := map[[2]string]bool{}
	for _, d := range w.deps.Deployments() {
		if d.Paused == nil {
			continue
		}
		for _, a := range d.Targets {
			if k := [2]string{d.Paused.Remediation, a}; !seen[k] {
				seen[k] = true
				targets = append(targets, target{rem: d.Paused.Remediation, asset: a, hash: d.ModelHash})
			}
		}
	}
	sort.Slice(targets, func(i, j int) bool {
		return targets[i].rem < targets[j].rem || targets[i].rem == targets[j].rem && targets[i].asset < targets[j].asset
	})
	var out []string
	var errs []error
	pending := int64(0)
	for _, tg := range targets {
		rw, err := w.remediation(ctx, tg.rem)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rw.stopped[tg.asset] {
			continue
		}
		tw, err := w.twins.Asset(tg.asset)
		if err != nil || tw.Kind != twin.KindGPU {
			continue // not a GPU twinchain watches
		}
		pending++
		wl := tw.Workload
		if wl == nil || wl.Pos == 0 || wl.At.Before(rw.executed) || rw.tried[tg.asset] == wl.Pos || stillRuns(wl.Processes, tg.hash) || len(out) >= MaxStopsPerStep {
			continue
		}
		ok, err := w.record(ctx, tg, wl, rw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			pending--
			out = append(out, tg.rem+"/"+tg.asset)
		}
	}
	w.Pending.Store(pending)
	return out, errors.Join(errs...)
}

// stillRuns reports whether a process serves the model with artifact hash
// hash, or a configured model whose artifact could not be read (the core
// refuses those as stops).
func stillRuns(procs []wire.Process, hash string) bool {
	for _, p := range procs {
		if art, _ := strings.CutPrefix(p.Artifact, "sha256:"); art == hash || p.Model != "" && p.Artifact == "" {
			return true
		}
	}
	return false
}

// remediation is what the watcher knows of an executed remediation,
// read from the ledger when first seen.
func (w *StopWatcher) remediation(ctx context.Context, id string) (*watched, error) {
	if rw, ok := w.rems[id]; ok {
		return rw, nil
	}
	r, err := w.l.GetRemediation(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("remediation %s: %w", id, err)
	}
	if r.Executed == nil {
		return nil, fmt.Errorf("remediation %s paused deployments but is %s: %w", id, r.State, ledger.ErrConflict)
	}
	rw := &watched{executed: r.Executed.Time, stopped: map[string]bool{}, tried: map[string]uint64{}}
	for _, s := range r.Stops {
		rw.stopped[s.Asset] = true
	}
	w.rems[id] = rw
	return rw, nil
}

// record records the stop of tg shown by the stored message behind wl; ok
// is false when the ledger refused it (that message is not tried again).
func (w *StopWatcher) record(ctx context.Context, tg target, wl *twin.Workload, rw *watched) (bool, error) {
	msgs, err := w.twins.MessagesAfter(wl.Pos-1, 1)
	if err != nil {
		return false, err
	}
	if len(msgs) == 0 || msgs[0].Pos != wl.Pos || msgs[0].Gateway != wl.Gateway || msgs[0].Seq != wl.Seq {
		rw.tried[tg.asset] = wl.Pos
		w.log.Warn("the workloads message behind a GPU's report is not in the message log; waiting for the next report", "asset", tg.asset, "gateway", wl.Gateway, "seq", wl.Seq)
		return false, nil
	}
	if err := w.ensureGateway(ctx, wl.Gateway); err != nil {
		return false, err
	}
	r, err := w.l.RecordRemediationStop(ctx, core.RemediationStopInput{Remediation: tg.rem, Asset: tg.asset, Envelope: msgs[0].Raw})
	switch {
	case err == nil:
		w.Recorded.Add(1)
		for _, s := range r.Stops {
			rw.stopped[s.Asset] = true
		}
		w.log.Info("remediation stop recorded: the paused model no longer runs on the GPU", "remediation", tg.rem, "asset", tg.asset, "gateway", wl.Gateway, "seq", wl.Seq)
		return true, nil
	case errors.Is(err, ledger.ErrInvalid) || errors.Is(err, ledger.ErrConflict) || errors.Is(err, ledger.ErrNotFound) || errors.Is(err, ledger.ErrForbidden):
		w.Refused.Add(1)
		rw.tried[tg.asset] = wl.Pos
		w.log.Error("remediation stop refused by the ledger", "remediation", tg.rem, "asset", tg.asset, "gateway", wl.Gateway, "seq", wl.Seq, "err", err)
		return false, nil
	}
	return false, fmt.Errorf("record stop of %s on %s: %w", tg.rem, tg.asset, err)
}

// ensureGateway registers gw on the ledger, with its key from the
// registry, unless it is known to be there.
func (w *StopWatcher) ensureGateway(ctx context.Context, gw string) error {
	if w.gwOnLdgr[gw] {
		return nil
	}
	_, err := w.l.GetAsset(ctx, gw)
	if errors.Is(err, ledger.ErrNotFound) && w.gateways != nil {
		pub, _, ok := w.gateways.Lookup(gw)
		if !ok {
			return nil // the ledger says so when the stop is recorded
		}
		sum := sha256.Sum256(pub)
		_, err = w.l.RegisterAsset(ctx, core.AssetRegistration{ID: gw, Kind: core.AssetKindGateway,
			FingerprintHash: hex.EncodeToString(sum[:]), PublicKey: hex.EncodeToString(pub)})
		if errors.Is(err, ledger.ErrConflict) {
			err = nil // registered meanwhile
		}
	}
	if err != nil {
		return fmt.Errorf("gateway %s on the ledger: %w", gw, err)
	}
	w.gwOnLdgr[gw] = true
	return nil
}

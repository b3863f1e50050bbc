package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"twinchain/internal/sim/fleet"
)

// demoRecords is the demo's API side (firmware-sim fleet -demo-api): a
// small ML pipeline on the ledger and a work order, so the Provenance and
// Work orders views have content. With an ML pipeline's token it records
// datasets and a federated training run on the first host's GPUs, during
// which the fleet swaps one of them (the host's own gateway reports it);
// then an evaluation, the ML lead's and compliance's sign-offs (their
// tokens), a policy that refuses models trained on swapped hardware, and a
// deployment request the gate refuses for that swap. With a maintenance
// token it opens a work order to replace the GPU the first XID hits. Every
// record is named "demo" and says it is simulated.
type demoRecords struct {
	api                      string
	mlToken, maintToken      string
	leadToken, complianceTok string
	// swapAfter is how long the training run goes before the swap (0: 15 s).
	swapAfter time.Duration
	client    *http.Client
	log       *slog.Logger
}

// The demo's record ids.
const (
	demoModel      = "demo-thermal-forecaster"
	demoPolicy     = "demo-production"
	demoDeployment = "demo-rollout-1"
)

func (d demoRecords) post(ctx context.Context, token, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(d.api, "/")+"/api/v1"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusConflict { // recorded by an earlier run
		return nil
	}
	if resp.StatusCode/100 != 2 {
		return &refused{code: resp.StatusCode, err: fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))}
	}
	return nil
}

// refused is an API answer other than 2xx or 409.
type refused struct {
	code int
	err  error
}

func (r *refused) Error() string { return r.err.Error() }

// final reports whether retrying cannot help: the request itself is wrong
// (400) or the token may not make it (401, 403). A 404 (the GPUs are not on
// the ledger yet) or 5xx may pass later.
func final(err error) bool {
	var r *refused
	return errors.As(err, &r) && (r.code == http.StatusBadRequest || r.code == http.StatusUnauthorized || r.code == http.StatusForbidden)
}

// hasOrder reports whether an earlier run's demo work order for asset is
// there (a restarted make run opens no second one).
func (d demoRecords) hasOrder(ctx context.Context, asset string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(d.api, "/")+"/api/v1/workorders?asset="+url.QueryEscape(asset), nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+d.maintToken)
	resp, err := d.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var page struct {
		Items []struct {
			Reason string `json:"reason"`
		} `json:"items"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil {
		return false
	}
	for _, o := range page.Items {
		if strings.HasPrefix(o.Reason, "demo (simulated)") {
			return true
		}
	}
	return false
}

// until retries a POST every 5 s (the GPUs reach the ledger a little after
// their first reading) until it succeeds or ctx ends.
func (d demoRecords) until(ctx context.Context, token, path string, body any) bool {
	for {
		err := d.post(ctx, token, path, body)
		if err == nil {
			d.log.Info("demo: recorded", "path", path)
			return true
		}
		if final(err) {
			d.log.Error("demo: not recorded", "path", path, "err", err)
			return false
		}
		d.log.Info("demo: not yet recorded, retrying in 5s", "path", path, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Second):
		}
	}
}

// readTokens reads the -demo-tokens file: lines ml=TOKEN, maint=TOKEN,
// lead=TOKEN and compliance=TOKEN (each optional).
func (d *demoRecords) readTokens(path string) error {
	tokens, err := readTokens(path)
	if err != nil {
		return err
	}
	d.mlToken, d.maintToken = tokens["ml"], tokens["maint"]
	d.leadToken, d.complianceTok = tokens["lead"], tokens["compliance"]
	if d.mlToken == "" && d.maintToken == "" {
		return fmt.Errorf("demo tokens %s: no ml= or maint= line", path)
	}
	return nil
}

func demoHash(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// get reads an API path into v; it returns the status (0 when the call
// failed).
func (d demoRecords) get(ctx context.Context, token, path string, v any) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(d.api, "/")+"/api/v1"+path, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && v != nil && json.NewDecoder(resp.Body).Decode(v) != nil {
		return 0
	}
	return resp.StatusCode
}

// demoHost is the host the demo's pipeline trains on (the first with GPUs)
// and the GPU the fleet swaps during the run (its last).
func demoHost(f *fleet.Fleet) (host *fleet.Gateway, swapped string) {
	for _, g := range f.Gateways {
		if g.Host != nil && len(g.Host.GPUs) > 0 {
			return g, g.Host.GPUs[len(g.Host.GPUs)-1].Ident.Asset
		}
	}
	return nil, ""
}

// restoreSwap puts the demo's replacement card back into its slot when the
// twin already has it (an earlier run swapped it): called before the fleet
// publishes, so that a restarted fleet reports no second swap.
func (d demoRecords) restoreSwap(ctx context.Context, f *fleet.Fleet) {
	_, gpu := demoHost(f)
	if gpu == "" || d.mlToken == "" {
		return
	}
	var twin struct {
		Identity struct {
			Serial string `json:"serial"`
		} `json:"identity"`
	}
	if d.get(ctx, d.mlToken, "/assets/"+url.PathEscape(gpu), &twin) != http.StatusOK {
		return
	}
	if serial, _ := fleet.DemoReplacement(gpu); twin.Identity.Serial == serial {
		if _, err := f.SwapGPU(gpu); err == nil {
			d.log.Info("demo: the replacement card an earlier run swapped in is back in its slot", "gpu", gpu)
		}
	}
}

// run records the demo's work order and ML pipeline for fleet f.
func (d demoRecords) run(ctx context.Context, f *fleet.Fleet) {
	host, swapped := demoHost(f)
	if host == nil {
		return
	}
	gpu := host.Host.GPUs[0].Ident.Asset
	if d.maintToken != "" && !d.hasOrder(ctx, gpu) {
		now := time.Now().UTC()
		d.until(ctx, d.maintToken, "/workorders", map[string]any{"asset": gpu,
			"reason": "demo (simulated): replace " + gpu + " after its XID 79", "changes": []map[string]string{{"field": "identity.serial"}},
			"start": now.Format(time.RFC3339), "end": now.Add(24 * time.Hour).Format(time.RFC3339)})
	}
	if d.mlToken == "" || d.get(ctx, d.mlToken, "/ledger/deployments/"+demoDeployment, nil) == http.StatusOK {
		return // no pipeline, or an earlier run recorded it all
	}
	if !d.datasets(ctx, f) {
		return
	}
	if d.get(ctx, d.mlToken, "/ledger/models/"+demoModel, nil) != http.StatusOK && !d.train(ctx, f, host, swapped) {
		return
	}
	d.release(ctx, f, host)
}

// datasets records the pipeline's data: the fleet's telemetry (sources: its
// hosts), a cleaned copy derived from it (the training set, with passing
// quality checks) and a holdout set for the evaluation.
func (d demoRecords) datasets(ctx context.Context, f *fleet.Fleet) bool {
	var sources []map[string]string
	for _, g := range f.Gateways {
		if g.Host != nil {
			sources = append(sources, map[string]string{"kind": "asset", "ref": g.Host.Info.Asset})
		}
	}
	consent := func(scope ...string) map[string]any {
		return map[string]any{"policy_ref": "demo/policy", "licence": "CC-BY-4.0", "use_scope": scope, "retention_days": 365}
	}
	for _, ds := range []map[string]any{
		{"id": "demo-telemetry", "name": "demo (simulated): fleet telemetry corpus", "content_hash": demoHash("demo-telemetry"),
			"sources": sources, "consent": consent("training", "evaluation")},
		{"id": "demo-telemetry-clean", "name": "demo (simulated): telemetry corpus, deduplicated", "content_hash": demoHash("demo-telemetry-clean"),
			"consent": consent("training"), "transform": map[string]any{"step": "dedupe", "parents": []string{"demo-telemetry"}, "code_ref": "demo://clean@v1", "output_hash": demoHash("demo-telemetry-clean")}},
		{"id": "demo-holdout", "name": "demo (simulated): holdout week", "content_hash": demoHash("demo-holdout"),
			"sources": []map[string]string{{"kind": "system", "ref": "demo://holdout"}}, "consent": consent("evaluation")},
	} {
		if !d.until(ctx, d.mlToken, "/ledger/datasets", ds) {
			return false
		}
	}
	var clean struct {
		Checks []json.RawMessage `json:"checks"`
	}
	if d.get(ctx, d.mlToken, "/ledger/datasets/demo-telemetry-clean", &clean) == http.StatusOK && len(clean.Checks) > 0 {
		return true
	}
	return d.until(ctx, d.mlToken, "/ledger/datasets/demo-telemetry-clean/checks", map[string]any{"checks": []map[string]any{
		{"name": "completeness", "value": 0.995, "threshold": 0.98, "compare": "min"},
		{"name": "duplicate_rate", "value": 0.002, "threshold": 0.01, "compare": "max"}}})
}

// hasSwapEvidence reports whether the ledger holds swap evidence for asset.
func (d demoRecords) hasSwapEvidence(ctx context.Context, asset string) bool {
	var ev []struct {
		Kind string `json:"kind"`
	}
	if d.get(ctx, d.mlToken, "/ledger/assets/"+url.PathEscape(asset)+"/evidence", &ev) != http.StatusOK {
		return false
	}
	for _, e := range ev {
		if e.Kind == "swap" {
			return true
		}
	}
	return false
}

// revision is the twin's revision of asset now (0 when unknown).
func (d demoRecords) revision(ctx context.Context, asset string) uint64 {
	var twin struct {
		Revision uint64 `json:"revision"`
	}
	d.get(ctx, d.mlToken, "/assets/"+url.PathEscape(asset), &twin)
	return twin.Revision
}

// train plays a federated training run over the host's GPUs (one node
// each) and records the model: the fleet swaps the host's last GPU
// swapAfter into the run, and the run ends once the ledger holds the
// gateway's swap evidence, so the model's training window covers it.
func (d demoRecords) train(ctx context.Context, f *fleet.Fleet, host *fleet.Gateway, swapped string) bool {
	gpus := host.Host.GPUs
	start := time.Now().UTC().Truncate(time.Second)
	revStart := make([]uint64, len(gpus))
	for i, g := range gpus {
		if revStart[i] = d.revision(ctx, g.Ident.Asset); revStart[i] == 0 {
			revStart[i] = 1
		}
	}
	d.log.Info("demo: simulated federated training started", "host", host.Host.Info.Asset, "nodes", len(gpus))
	after := d.swapAfter
	if after <= 0 {
		after = 15 * time.Second
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(after):
	}
	if _, err := f.SwapGPU(swapped); err != nil {
		d.log.Error("demo", "err", err)
		return false
	}
	d.log.Info("demo: simulated GPU swap during the training run", "gpu", swapped)
	for !d.hasSwapEvidence(ctx, swapped) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(2 * time.Second):
		}
	}
	var hw []map[string]any
	var rounds []map[string]any
	for i, g := range gpus {
		hw = append(hw, map[string]any{"asset": g.Ident.Asset, "revision_start": revStart[i], "revision_end": max(revStart[i], d.revision(ctx, g.Ident.Asset))})
	}
	for r := 1; r <= 3; r++ {
		var ups []map[string]string
		for _, g := range gpus {
			ups = append(ups, map[string]string{"node": g.Ident.Asset, "update_hash": demoHash(fmt.Sprintf("update %d %s", r, g.Ident.Asset))})
		}
		rounds = append(rounds, map[string]any{"round": r, "updates": ups, "aggregate_hash": demoHash(fmt.Sprintf("aggregate %d", r))})
	}
	end := time.Now().UTC()
	if !d.until(ctx, d.mlToken, "/ledger/models", map[string]any{"id": demoModel, "name": "demo (simulated): thermal forecaster",
		"artifact_hash": demoHash(demoModel), "datasets": []string{"demo-telemetry-clean"},
		"training": map[string]any{"code_ref": "demo://train@v1", "config_hash": demoHash("demo config"),
			"start": start.Format(time.RFC3339Nano), "end": end.Format(time.RFC3339Nano), "hardware": hw, "federated": rounds}}) {
		return false
	}
	return d.until(ctx, d.mlToken, "/ledger/models/"+demoModel+"/evaluations", map[string]any{"name": "holdout", "dataset": "demo-holdout",
		"metrics": []map[string]any{{"name": "mae_c", "value": 1.4}, {"name": "r2", "value": 0.94}}})
}

// release signs the model off (ML lead and compliance), sets the policy
// (compliance: both sign-offs, a mean absolute error of at most 2 °C, no
// GPU swap during training) and asks the gate to deploy the model on the
// fleet's other GPUs: refused, for the swap.
func (d demoRecords) release(ctx context.Context, f *fleet.Fleet, host *fleet.Gateway) {
	for _, tok := range []string{d.leadToken, d.complianceTok} {
		if tok != "" && !d.until(ctx, tok, "/ledger/attestations", map[string]any{"subject_kind": "model", "subject": demoModel,
			"subject_hash": demoHash(demoModel), "decision": "approve", "statement": "demo (simulated): holdout MAE 1.4 °C reviewed"}) {
			return
		}
	}
	if d.complianceTok != "" && !d.until(ctx, d.complianceTok, "/ledger/policies", map[string]any{"id": demoPolicy,
		"required_roles": []string{"ml_lead", "compliance"}, "thresholds": []map[string]any{{"metric": "mae_c", "compare": "max", "value": 2}},
		"refuse_training_evidence": []string{"swap"}}) {
		return
	}
	var targets []string
	driver := ""
	for _, g := range f.Gateways {
		if g != host && g.Host != nil {
			for _, gpu := range g.Host.GPUs {
				targets = append(targets, gpu.Ident.Asset)
				driver = gpu.Ident.Driver
			}
		}
	}
	if len(targets) == 0 {
		targets, driver = []string{host.Host.GPUs[0].Ident.Asset}, host.Host.GPUs[0].Ident.Driver
	}
	if !d.until(ctx, d.mlToken, "/ledger/deployments", map[string]any{"id": demoDeployment, "model": demoModel, "policy": demoPolicy,
		"targets": targets, "binary_hash": demoHash("demo binary"), "container_hash": demoHash("demo container"), "config_hash": demoHash("demo serving config"),
		"environment": map[string]any{"hardware_class": "demo-gpu", "drivers": []map[string]string{{"name": "nvidia", "version": driver}}}}) {
		return
	}
	var dep struct {
		Allowed bool `json:"allowed"`
		Reasons []struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		} `json:"reasons"`
	}
	d.get(ctx, d.mlToken, "/ledger/deployments/"+demoDeployment, &dep)
	d.log.Info("demo: the deployment gate decided", "deployment", demoDeployment, "allowed", dep.Allowed, "reasons", fmt.Sprint(dep.Reasons))
}

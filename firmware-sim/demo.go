package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"twinchain/internal/sim/fleet"
)

// demoRecords is the demo's API side (firmware-sim fleet -demo-api): with
// an ML pipeline's token it records a dataset of the fleet's telemetry and a
// model trained on the first host's GPUs on the ledger, and with a
// maintenance token it opens a work order to replace the GPU the first XID
// hits, so the Provenance and Work orders views have content. Every record
// is named "demo" and says it is simulated.
type demoRecords struct {
	api, mlToken, maintToken string
	client                   *http.Client
	log                      *slog.Logger
}

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
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
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
		d.log.Info("demo: not yet recorded, retrying in 5s", "path", path, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Second):
		}
	}
}

// readTokens reads the -demo-tokens file: lines ml=TOKEN and maint=TOKEN.
func (d *demoRecords) readTokens(path string) error {
	tokens, err := readTokens(path)
	if err != nil {
		return err
	}
	d.mlToken, d.maintToken = tokens["ml"], tokens["maint"]
	if d.mlToken == "" && d.maintToken == "" {
		return fmt.Errorf("demo tokens %s: no ml= or maint= line", path)
	}
	return nil
}

func demoHash(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// run records the demo's dataset, model and work order for fleet f.
func (d demoRecords) run(ctx context.Context, f *fleet.Fleet) {
	var host *fleet.Gateway
	var sources []map[string]string
	for _, g := range f.Gateways {
		if g.Host == nil {
			continue
		}
		if host == nil && len(g.Host.GPUs) > 0 {
			host = g
		}
		sources = append(sources, map[string]string{"kind": "asset", "ref": g.Host.Info.Asset})
	}
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
	if d.mlToken == "" {
		return
	}
	ds := map[string]any{"id": "demo-telemetry", "name": "demo (simulated): fleet telemetry corpus", "content_hash": demoHash("demo-telemetry"),
		"sources": sources, "consent": map[string]any{"policy_ref": "demo/policy", "licence": "CC-BY-4.0", "use_scope": []string{"training", "evaluation"}, "retention_days": 365}}
	if !d.until(ctx, d.mlToken, "/ledger/datasets", ds) {
		return
	}
	var hw []map[string]any
	for _, g := range host.Host.GPUs {
		hw = append(hw, map[string]any{"asset": g.Ident.Asset, "revision_start": 1, "revision_end": 1})
	}
	end := time.Now().UTC()
	d.until(ctx, d.mlToken, "/ledger/models", map[string]any{"id": "demo-thermal-forecaster", "name": "demo (simulated): thermal forecaster",
		"artifact_hash": demoHash("demo-thermal-forecaster"), "datasets": []string{"demo-telemetry"},
		"training": map[string]any{"code_ref": "demo://train@v1", "config_hash": demoHash("demo config"),
			"start": end.Add(-time.Hour).Format(time.RFC3339), "end": end.Format(time.RFC3339), "hardware": hw}})
}

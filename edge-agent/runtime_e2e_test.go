package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/edge/enroll"
	"twinchain/internal/edge/workload"
	"twinchain/internal/httpapi"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/testsvc"
)

// runtimeRoles are the API tokens of TestRuntimeApprovalsEndToEnd: the ML
// pipeline, its sign-off and compliance.
var runtimeRoles = []testsvc.Token{
	{Name: "pipeline", Role: "ml_engineer", Secret: "rt-pipeline-secret"},
	{Name: "lead", Role: "ml_lead", Secret: "rt-lead-secret"},
	{Name: "compliance", Role: "compliance", Secret: "rt-compliance-secret"},
}

// apiPost posts body as JSON with token and decodes a 2xx answer into out;
// it returns the status code (0 when the request failed).
func apiPost(t *testing.T, base, token, path string, body, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Logf("POST %s: %v", path, err)
		return 0
	}
	defer res.Body.Close()
	if res.StatusCode/100 == 2 && out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Errorf("POST %s: decode: %v", path, err)
		}
	}
	return res.StatusCode
}

// runtimeAlert is the part of an alert the run-time test reads.
type runtimeAlert struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Asset    string `json:"asset"`
	Summary  string `json:"summary"`
	Evidence []struct {
		Summary  string `json:"summary"`
		Evidence struct {
			Messages []struct {
				Gateway string `json:"gateway"`
				Seq     uint64 `json:"seq"`
			} `json:"messages"`
		} `json:"evidence"`
	} `json:"evidence"`
}

// TestRuntimeApprovalsEndToEnd runs the real programs on the embedded
// ledger: firmware-sim's GPU host runs vllm on GPU 0 and triton on GPU 1;
// the ML pipeline registers llama-7b and deploys it, signed off, to GPU 0
// through the API; then the model files appear. GPU 0 runs the approved
// artifact (no alert; the Asset view says approved, the model's runs list
// GPU 0), GPU 1 a model nobody approved there (unapproved_model, its
// gateway-signed workloads report recorded on the ledger as evidence, the
// alert provable); then llama's weights are tampered with and GPU 0 raises
// unapproved_model naming the deployment that approves other bytes. A
// remediation pauses dep-llama; the operator stops llama, the agent reports
// GPU 0 idle, and the stop is on the ledger, proven by the remediation's
// record bundle (which fails once the stop is edited).
func TestRuntimeApprovalsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three programs")
	}
	agentBin, simBin := binaries(t)
	dir := t.TempDir()
	ts := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Tokens: runtimeRoles, Args: []string{"-log-level", "info"},
		Config: "ledger:\n  anchor: {interval: 100ms}\n"})
	base, admin := ts.URL, ts.AdminToken
	ml, lead, comp := runtimeRoles[0].Secret, runtimeRoles[1].Secret, runtimeRoles[2].Secret

	// The model files are put in place only once the deployment is
	// recorded: until then the agent reports the processes unread
	// (model_unread), with no artifact to judge.
	llama, bert := filepath.Join(dir, "models", "llama-7b"), filepath.Join(dir, "models", "bert.onnx")
	staging := filepath.Join(dir, "staging", "llama-7b")
	for path, content := range map[string]string{
		filepath.Join(staging, "config.json"): `{"layers":32}`, filepath.Join(staging, "model.safetensors"): "llama weights v1",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(llama), 0o755); err != nil {
		t.Fatal(err)
	}
	llamaV1, err := workload.NewHasher().Digest(staging)
	if err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "gpus.sock")
	sim := testsvc.StartProcess(t, simBin, "serial", "--gpu-socket", sock, "--gpus", "4", "--seed", "7", "--gpu-processes", "0:vllm,1:tritonserver")
	agent := startWorkloadAgent(t, agentBin, dir, ts, "gw-rt", "srv-rt-001", sock, fmt.Sprintf(
		"    - {name: llama-7b, path: %s, process: vllm}\n    - {name: bert, path: %s, process: tritonserver}\n", llama, bert))

	runtime := func(gpu int) httpapi.AssetRuntime {
		var rt httpapi.AssetRuntime
		apiGet(base, admin, fmt.Sprintf("/api/v1/assets/srv-rt-001.gpu%d/runtime", gpu), &rt)
		return rt
	}
	var la core.Asset
	testsvc.Eventually(t, 60*time.Second, "both GPUs' workloads reported and the GPUs on the ledger", func() bool {
		return len(runtime(0).Processes) == 1 && len(runtime(1).Processes) == 1 && runtime(0).Known &&
			apiGet(base, admin, "/api/v1/ledger/assets/srv-rt-001.gpu3", &la)
	})

	// The pipeline registers llama-7b (trained on gpu3), compliance sets a
	// policy, the ML lead signs off, the pipeline deploys it to gpu0.
	h := func(s string) string { return strings.Repeat(s[:1], 64) }
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		token, path string
		body        any
	}{
		{ml, "/api/v1/ledger/datasets", core.DatasetInput{ID: "ds-chat", ContentHash: h("d"), Sources: []core.Source{{Kind: core.SourceSystem, Ref: "s3://chat"}},
			Consent: core.Consent{PolicyRef: "c", Licence: "CC0-1.0", UseScope: []string{"training"}, RetentionDays: 30}}},
		{ml, "/api/v1/ledger/datasets/ds-chat/checks", core.QualityChecksInput{Checks: []core.QualityCheckInput{{Name: "dup", Value: 0, Threshold: 1, Compare: core.AtMost}}}},
		{ml, "/api/v1/ledger/models", core.ModelInput{ID: "llama-7b", ArtifactHash: strings.TrimPrefix(llamaV1, "sha256:"), Datasets: []string{"ds-chat"},
			Training: core.TrainingRun{Hardware: []core.HardwareUse{{Asset: "srv-rt-001.gpu3", RevisionStart: 1, RevisionEnd: 1}},
				CodeRef: "git@x/train@1", ConfigHash: h("c"), Start: t0, End: t0.Add(time.Hour)}}},
		{comp, "/api/v1/ledger/policies", core.PolicyInput{ID: "prod", RequiredRoles: []core.Role{core.RoleMLLead}}},
		{lead, "/api/v1/ledger/attestations", core.AttestationInput{SubjectKind: core.SubjectModel, Subject: "llama-7b",
			SubjectHash: strings.TrimPrefix(llamaV1, "sha256:"), Decision: core.Approve}},
	}
	for _, s := range steps {
		if code := apiPost(t, base, s.token, s.path, s.body, nil); code != http.StatusCreated {
			t.Fatalf("POST %s = %d, want 201", s.path, code)
		}
	}
	var dep core.Deployment
	if code := apiPost(t, base, ml, "/api/v1/ledger/deployments", core.DeploymentInput{ID: "dep-llama", Model: "llama-7b", Policy: "prod",
		Targets: []string{"srv-rt-001.gpu0"}, BinaryHash: h("b"), ContainerHash: h("e"), ConfigHash: h("f"),
		Environment: core.Environment{HardwareClass: "h100-sxm-80g", Drivers: []core.ToolVersion{{Name: "nvidia", Version: "550.54.15"}}}}, &dep); code != http.StatusCreated || !dep.Allowed {
		t.Fatalf("deployment = %d allowed %v reasons %+v, want 201 and allowed", code, dep.Allowed, dep.Reasons)
	}
	testsvc.Eventually(t, 30*time.Second, "dep-llama in force on gpu0", func() bool {
		f := runtime(0).InForce
		return len(f) == 1 && f[0].Deployment == "dep-llama" && f[0].Artifact == llamaV1 && f[0].Drift == ""
	})

	// The files appear: the approved llama on gpu0, bert (approved nowhere) on gpu1.
	if err := os.Rename(staging, llama); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bert, []byte("bert weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	bertSum, _ := workload.NewHasher().Digest(bert)
	testsvc.Eventually(t, 30*time.Second, "gpu0 approved, gpu1 not", func() bool {
		p0, p1 := runtime(0).Processes, runtime(1).Processes
		return len(p0) == 1 && p0[0].Artifact == llamaV1 && p0[0].Approved && p0[0].Deployment == "dep-llama" &&
			len(p1) == 1 && p1[0].Artifact == bertSum && !p1[0].Approved
	})
	alertsOf := func(asset string) []runtimeAlert {
		var page struct{ Items []runtimeAlert }
		apiGet(base, admin, "/api/v1/alerts?type=unapproved_model&asset="+asset, &page)
		return page.Items
	}
	testsvc.Eventually(t, 30*time.Second, "unapproved_model on gpu1", func() bool { return len(alertsOf("srv-rt-001.gpu1")) == 1 })
	a := alertsOf("srv-rt-001.gpu1")[0]
	if !strings.Contains(a.Summary, "model bert as "+bertSum) || len(a.Evidence) == 0 || len(a.Evidence[0].Evidence.Messages) == 0 ||
		a.Evidence[0].Evidence.Messages[0].Gateway != "gw-rt" {
		t.Fatalf("gpu1's alert = %+v, want bert's artifact named and gw-rt's workloads report as evidence", a)
	}
	if got := alertsOf("srv-rt-001.gpu0"); len(got) != 0 {
		t.Errorf("gpu0 runs the approved artifact, yet alerts %+v", got)
	}
	// The signed workloads report is on the ledger as evidence about gpu1,
	// and the alert's bundle proves its raised step.
	seq := a.Evidence[0].Evidence.Messages[0].Seq
	testsvc.Eventually(t, 30*time.Second, "the workloads report on the ledger as gpu1's alert evidence", func() bool {
		var ev []core.Evidence
		apiGet(base, admin, "/api/v1/ledger/assets/srv-rt-001.gpu1/evidence", &ev)
		for _, e := range ev {
			if e.Kind == core.EvidenceAlert && e.Gateway == "gw-rt" && e.Seq == seq {
				return true
			}
		}
		return false
	})
	var bundle struct {
		Kind  string `json:"kind"`
		Alert struct {
			Events []struct {
				EventID uint64 `json:"event_id"`
			} `json:"events"`
		} `json:"alert"`
	}
	testsvc.Eventually(t, 30*time.Second, "alert "+a.ID+"'s proof", func() bool {
		return apiGet(base, admin, "/api/v1/ledger/alerts/"+a.ID+"/proof", &bundle) && len(bundle.Alert.Events) > 0
	})
	var runs httpapi.ModelRuns
	if !apiGet(base, admin, "/api/v1/ledger/models/llama-7b/runs", &runs) || len(runs.Items) != 1 || runs.Items[0].Asset != "srv-rt-001.gpu0" ||
		!runs.Items[0].Registered || !runs.Items[0].Approved {
		t.Errorf("llama-7b runs = %+v, want gpu0, registered and approved", runs)
	}

	// Tamper with llama's weights: gpu0 now runs bytes nobody approved.
	if err := os.WriteFile(filepath.Join(llama, "model.safetensors"), []byte("llama weights v1, patched"), 0o644); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 30*time.Second, "unapproved_model on gpu0 after the tampering", func() bool { return len(alertsOf("srv-rt-001.gpu0")) == 1 })
	if a := alertsOf("srv-rt-001.gpu0")[0]; !strings.Contains(a.Summary, "deployment dep-llama approves "+llamaV1) {
		t.Errorf("gpu0's alert = %q, want it to name the approved artifact", a.Summary)
	}
	if !apiGet(base, admin, "/api/v1/ledger/models/llama-7b/runs", &runs) || len(runs.Items) != 1 || runs.Items[0].Registered || runs.Items[0].Approved {
		t.Errorf("llama-7b runs after tampering = %+v, want gpu0 running other bytes, not approved", runs)
	}

	// Remediation: the weights are put back (gpu0 approved again) and the
	// tampering alert resolved; a remediation pausing dep-llama is
	// proposed, refused without the ML lead's approval, approved, executed:
	// dep-llama leaves force, llama still running on gpu0 raises
	// unapproved_model again, then the agent reports it stopped.
	if err := os.WriteFile(filepath.Join(llama, "model.safetensors"), []byte("llama weights v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 30*time.Second, "gpu0 approved again", func() bool {
		p := runtime(0).Processes
		return len(p) == 1 && p[0].Artifact == llamaV1 && p[0].Approved
	})
	tampered := alertsOf("srv-rt-001.gpu0")[0]
	if code := apiPost(t, base, admin, "/api/v1/alerts/"+tampered.ID+"/resolve", map[string]string{"comment": "weights restored"}, nil); code/100 != 2 {
		t.Fatalf("resolve %s = %d", tampered.ID, code)
	}
	var rem core.Remediation
	if code := apiPost(t, base, ml, "/api/v1/ledger/remediations", core.RemediationInput{ID: "rem-llama", Model: "llama-7b",
		Reason: "weights were tampered with on srv-rt-001.gpu0", Steps: []core.RemediationStep{{Action: core.ActionRevalidate}, {Action: core.ActionPause, Deployment: "dep-llama"}}}, &rem); code != http.StatusCreated || fmt.Sprint(rem.Required) != "[ml_lead]" {
		t.Fatalf("propose = %d %+v, want 201 needing ml_lead", code, rem)
	}
	if code := apiPost(t, base, ml, "/api/v1/ledger/remediations/rem-llama/execute", struct{}{}, nil); code != http.StatusConflict {
		t.Errorf("execute without approval = %d, want 409", code)
	}
	if code := apiPost(t, base, ml, "/api/v1/ledger/remediations/rem-llama/decisions", core.RemediationApproval{Decision: core.Approve}, nil); code != http.StatusForbidden {
		t.Errorf("ml_engineer approving = %d, want 403", code)
	}
	if code := apiPost(t, base, lead, "/api/v1/ledger/remediations/rem-llama/decisions", core.RemediationApproval{Decision: core.Approve, Statement: "pause until re-validated"}, nil); code != http.StatusCreated {
		t.Fatalf("ml_lead approving = %d, want 201", code)
	}
	if code := apiPost(t, base, ml, "/api/v1/ledger/remediations/rem-llama/execute", struct{}{}, &rem); code != http.StatusCreated || rem.State != core.RemediationExecuted {
		t.Fatalf("execute = %d %+v, want 201 executed", code, rem)
	}
	testsvc.Eventually(t, 30*time.Second, "dep-llama out of force, llama on gpu0 unapproved", func() bool {
		rt := runtime(0)
		return len(rt.InForce) == 0 && len(rt.Processes) == 1 && !rt.Processes[0].Approved
	})
	testsvc.Eventually(t, 30*time.Second, "a new unapproved_model alert on gpu0 after the pause", func() bool {
		var page struct{ Items []runtimeAlert }
		apiGet(base, admin, "/api/v1/alerts?state=open&type=unapproved_model&asset=srv-rt-001.gpu0", &page)
		return len(page.Items) == 1 && page.Items[0].ID != tampered.ID
	})
	var paused core.Deployment
	if !apiGet(base, admin, "/api/v1/ledger/deployments/dep-llama", &paused) || paused.Paused == nil || paused.Paused.Remediation != "rem-llama" {
		t.Errorf("dep-llama = %+v, want paused by rem-llama", paused.Paused)
	}
	// The chain is provable: the remediation's and the deployment's record bundles.
	for _, rec := range []string{"remediation/rem-llama", "deployment/dep-llama"} {
		var b struct {
			Kind   string `json:"kind"`
			Record struct {
				Type string `json:"type"`
			} `json:"record"`
		}
		if !apiGet(base, admin, "/api/v1/ledger/proofs/"+rec, &b) || b.Record.Type == "" {
			t.Errorf("record bundle of %s = %+v, want one", rec, b)
		}
	}
	// The operator stops vllm: the agent reports gpu0 idle.
	if err := sim.Stop(); err != nil {
		t.Fatalf("firmware-sim stop: %v", err)
	}
	testsvc.StartProcess(t, simBin, "serial", "--gpu-socket", sock, "--gpus", "4", "--seed", "7", "--gpu-processes", "1:tritonserver")
	testsvc.Eventually(t, 30*time.Second, "gpu0 reported idle", func() bool {
		rt := runtime(0)
		return rt.At != nil && len(rt.Processes) == 0
	})
	if !apiGet(base, admin, "/api/v1/ledger/models/llama-7b/runs", &runs) || len(runs.Items) != 0 {
		t.Errorf("llama-7b runs after it stopped = %+v, want none", runs.Items)
	}
	// twin-service records the stop on the ledger, with the agent's signed
	// report as its evidence, and the remediation's record bundle proves it.
	testsvc.Eventually(t, 30*time.Second, "gpu0's stop on rem-llama", func() bool {
		return apiGet(base, admin, "/api/v1/ledger/remediations/rem-llama", &rem) && len(rem.Stops) == 1
	})
	if s := rem.Stops[0]; s.Asset != "srv-rt-001.gpu0" || s.Gateway != "gw-rt" || s.ModelHash != strings.TrimPrefix(llamaV1, "sha256:") || fmt.Sprint(s.Deployments) != "[dep-llama]" {
		t.Errorf("rem-llama's stop = %+v, want gpu0 by gw-rt, dep-llama's llama", s)
	}
	checkStopBundle(t, base, admin)
	stop(t, agent)
}

// checkStopBundle verifies rem-llama's record bundle under the service's
// key, its stop check included, and again with the stop's sequence number
// edited: the bundle must fail.
func checkStopBundle(t *testing.T, base, admin string) {
	t.Helper()
	var st struct {
		ServiceKey string `json:"service_key"`
	}
	if !apiGet(base, admin, "/api/v1/ledger/status", &st) {
		t.Fatal("GET /api/v1/ledger/status failed")
	}
	key, err := proofbundle.ParseKey(st.ServiceKey)
	if err != nil {
		t.Fatal(err)
	}
	var raw json.RawMessage
	if !apiGet(base, admin, "/api/v1/ledger/proofs/remediation/rem-llama", &raw) {
		t.Fatal("no record bundle of rem-llama")
	}
	rep := proofbundle.VerifyJSON(raw, key)
	if !rep.Verified() || !slices.ContainsFunc(rep.Checks, func(c proofbundle.Check) bool { return c.Name == "remediation stop srv-rt-001.gpu0" && c.OK }) {
		t.Fatalf("rem-llama's bundle = verified %v, checks %+v; want verified with gpu0's stop", rep.Verified(), rep.Checks)
	}
	b, err := proofbundle.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var rem core.Remediation
	if err := json.Unmarshal(b.Record.Value, &rem); err != nil {
		t.Fatal(err)
	}
	rem.Stops[0].Seq++
	b.Record.Value, _ = json.Marshal(rem)
	if rep := proofbundle.Verify(b, key); rep.OK() || !slices.ContainsFunc(rep.Failed(), func(c proofbundle.Check) bool { return c.Name == "remediation stop srv-rt-001.gpu0" }) {
		t.Errorf("rem-llama's bundle with the stop edited: failed checks %+v, want the stop's", rep.Failed())
	}
}

// startWorkloadAgent enrolls an edge-agent as gateway gw of host with
// twin-service ts (reading simulated GPUs from the unix socket sock, and
// reporting workloads every 200ms with the workloads.models entries
// models, YAML list items), then starts it.
func startWorkloadAgent(t *testing.T, agentBin, dir string, ts *testsvc.TwinService, gw, host, sock, models string) *testsvc.Process {
	t.Helper()
	conf, state := filepath.Join(dir, "agent.yaml"), filepath.Join(dir, "agent")
	agentConf := fmt.Sprintf(`gateway_id: %s
site: s1
state_dir: %s
host: {asset: %s}
mqtt: {broker: "tcp://%s", backoff_min: 200ms, backoff_max: 2s}
gpu: {source: sim, sim: "unix:%s", interval: 200ms}
workloads:
  interval: 200ms
  models:
%s`, gw, state, host, ts.MQTTAddr, sock, models)
	if err := os.WriteFile(conf, []byte(agentConf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := enroll.IssueToken(ctx, http.DefaultClient, ts.URL, ts.AdminToken, enroll.TokenRequest{Site: "s1", GatewayID: gw})
	if err != nil {
		t.Fatalf("issue token: %v", err)
	}
	if en := testsvc.StartProcess(t, agentBin, "enroll", "--config", conf, "--server", ts.URL, "--token", tok.Token); en.Wait() != nil {
		t.Fatalf("edge-agent enroll failed:\n%s", en.Output)
	}
	return testsvc.StartProcess(t, agentBin, "run", "--config", conf)
}

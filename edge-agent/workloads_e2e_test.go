package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/workload"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestWorkloadsEndToEnd runs the real programs: firmware-sim's GPU host runs
// vllm on GPU 0 (serving a model directory), triton on GPU 1 (a model file)
// and a process no model matches on GPU 2; the enrolled edge-agent reports
// them through twin-service's embedded broker, signed and sequenced; each
// GPU twin shows its processes with the artifact's content hash. Then a
// weight file of the model is tampered with and the new hash reaches the
// twin; every message is accepted.
func TestWorkloadsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three programs")
	}
	agentBin, simBin := binaries(t)
	dir := t.TempDir()
	ts := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Args: []string{"-log-level", "info"}})
	base, admin := ts.URL, ts.AdminToken

	llama, bert := filepath.Join(dir, "models", "llama-7b"), filepath.Join(dir, "models", "bert.onnx")
	for path, content := range map[string]string{
		filepath.Join(llama, "config.json"): `{"layers":32}`, filepath.Join(llama, "model.safetensors"): "llama weights v1", bert: "bert",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "gpus.sock")
	testsvc.StartProcess(t, simBin, "serial", "--gpu-socket", sock, "--gpus", "4", "--seed", "7",
		"--gpu-processes", "0:vllm,1:tritonserver,2:miner")
	agent := startWorkloadAgent(t, agentBin, dir, ts, "gw-wl", "srv-wl-001", sock, fmt.Sprintf(
		"    - {name: llama-7b, path: %s, process: vllm}\n    - {name: bert, path: %s, process: tritonserver}\n", llama, bert))

	h := workload.NewHasher()
	llamaV1, _ := h.Digest(llama)
	bertSum, _ := h.Digest(bert)
	procs := func(i int) []wire.Process {
		var a twin.Asset
		if !apiGet(base, admin, fmt.Sprintf("/api/v1/assets/srv-wl-001.gpu%d", i), &a) || a.Workload == nil {
			return nil
		}
		return a.Workload.Processes
	}
	running := func(i int, name, model, artifact string) bool {
		p := procs(i)
		return len(p) == 1 && p[0].Name == name && p[0].Model == model && p[0].Artifact == artifact && p[0].PID > 4_000_000 && p[0].MemBytes == 20<<30
	}
	testsvc.Eventually(t, 60*time.Second, "the GPU twins' workloads", func() bool {
		return running(0, "vllm", "llama-7b", llamaV1) && running(1, "tritonserver", "bert", bertSum) &&
			running(2, "miner", "", "") && procs(3) != nil && len(procs(3)) == 0
	})
	if p := procs(2)[0]; p.Skip != wire.SkipNoModel {
		t.Errorf("gpu2's unmatched process: skip %q, want %q", p.Skip, wire.SkipNoModel)
	}

	// Tamper with the weights: the agent re-hashes the changed file and the new hash reaches the twin.
	if err := os.WriteFile(filepath.Join(llama, "model.safetensors"), []byte("llama weights v1, patched"), 0o644); err != nil {
		t.Fatal(err)
	}
	llamaV2, _ := workload.NewHasher().Digest(llama)
	if llamaV2 == llamaV1 {
		t.Fatal("tampered weights hash the same")
	}
	testsvc.Eventually(t, 30*time.Second, "the tampered artifact's hash on gpu0", func() bool {
		return running(0, "vllm", "llama-7b", llamaV2)
	})
	var stats struct {
		Accepted uint64            `json:"accepted"`
		Rejected map[string]uint64 `json:"rejected"`
	}
	if !apiGet(base, admin, "/api/v1/stats/ingest", &stats) {
		t.Fatal("GET /api/v1/stats/ingest failed")
	}
	for reason, n := range stats.Rejected {
		if n > 0 {
			t.Errorf("ingest rejected %d messages as %s; want all accepted", n, reason)
		}
	}
	stop(t, agent)
	// The skip reasons are counted: the unmatched process on gpu2 as no_model.
	if out := agent.Output.String(); strings.Contains(out, "level=ERROR") || !strings.Contains(out, "no_model:") {
		t.Errorf("agent logged errors, or no counted skip reasons at stop:\n%s", tail(out, 20))
	}
}

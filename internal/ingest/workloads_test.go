package ingest

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestWorkloads: a workloads message is accepted, handed to the log's
// consumers decoded and places the host and GPUs it names; one out of its
// bounds (a bad artifact digest) is refused as malformed and counted,
// and nothing of it reaches the twins.
func TestWorkloads(t *testing.T) {
	r := newRig(t, Config{}, "gw-w")
	wl := wire.Workloads{Host: "srv-w", GPUs: []wire.GPUWorkload{
		{Asset: "srv-w.gpu0", Processes: []wire.Process{{PID: 11, Name: "vllm", MemBytes: 1 << 30, Model: "m",
			Artifact: "sha256:" + strings.Repeat("1a", 32), Skip: wire.SkipNoContainer}}},
		{Asset: "srv-w.gpu1"},
	}}
	out := r.submit("gw-w", wire.KindWorkloads, seal(t, "gw-w", 1, t0, wire.KindWorkloads, wl))
	if !out.Accepted() {
		t.Fatalf("workloads: %s %v", out.Reason, out.Err)
	}
	d, ok := r.in.Decoded(out.Pos)
	if !ok || d.Workloads == nil || !reflect.DeepEqual(*d.Workloads, wl) {
		t.Fatalf("Decoded(%d) = %+v, %v, want the workloads %+v", out.Pos, d, ok, wl)
	}
	for i, id := range []string{"srv-w.gpu0", "srv-w.gpu1"} {
		a := r.in.w.twins[id]
		if a == nil || a.Kind != twin.KindGPU || a.Parent != "srv-w" || a.Workload == nil || !a.Workload.At.Equal(t0) ||
			a.Workload.Gateway != "gw-w" || a.Workload.Seq != 1 || a.Workload.Pos != out.Pos ||
			!reflect.DeepEqual(a.Workload.Processes, wl.GPUs[i].Processes) {
			t.Errorf("twin %s = %+v, want a GPU of srv-w running %+v", id, a, wl.GPUs[i].Processes)
		}
	}
	// An older report (a redelivered backlog) does not replace the newer one.
	older := wire.Workloads{Host: "srv-w", GPUs: []wire.GPUWorkload{{Asset: "srv-w.gpu1", Processes: []wire.Process{{PID: 9, Name: "old"}}}}}
	if out := r.submit("gw-w", wire.KindWorkloads, seal(t, "gw-w", 3, t0.Add(-time.Minute), wire.KindWorkloads, older)); !out.Accepted() {
		t.Fatalf("older workloads: %s %v", out.Reason, out.Err)
	}
	if a := r.in.w.twins["srv-w.gpu1"]; len(a.Workload.Processes) != 0 {
		t.Errorf("an older report replaced gpu1's workload: %+v", a.Workload)
	}
	bad := wl
	bad.GPUs = []wire.GPUWorkload{{Asset: "srv-w.gpu2", Processes: []wire.Process{{PID: 12, Name: "x", Artifact: "sha256:short"}}}}
	out = r.submit("gw-w", wire.KindWorkloads, seal(t, "gw-w", 2, t0.Add(time.Second), wire.KindWorkloads, bad))
	if out.Reason != ReasonMalformed || !strings.Contains(out.Err.Error(), "artifact") {
		t.Fatalf("bad artifact digest: %s %v, want malformed naming the artifact", out.Reason, out.Err)
	}
	bad.GPUs[0].Processes[0] = wire.Process{PID: 12, Name: "x", Image: "sha256:" + strings.Repeat("0f", 32), RepoDigest: "docker.io/x@sha256:0f"}
	out = r.submit("gw-w", wire.KindWorkloads, seal(t, "gw-w", 4, t0.Add(2*time.Second), wire.KindWorkloads, bad))
	if out.Reason != ReasonMalformed || !strings.Contains(out.Err.Error(), "repo digest") {
		t.Fatalf("bad repo digest: %s %v, want malformed naming the repo digest", out.Reason, out.Err)
	}
	if a := r.in.w.twins["srv-w.gpu2"]; a != nil {
		t.Errorf("a refused message placed %+v", a)
	}
}

package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestWorkloadsCheck(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0f", 32)
	good := func() Workloads {
		return Workloads{Host: "srv-1", GPUs: []GPUWorkload{{Asset: "srv-1.gpu0", Processes: []Process{
			{PID: 7, Name: "python3", MemBytes: 1 << 30, Model: "m", Artifact: digest, Image: digest, RepoDigest: digest},
		}}}}
	}
	w := good()
	if err := w.Check(); err != nil {
		t.Fatalf("good workloads: %v", err)
	}
	for name, mutate := range map[string]func(w *Workloads){
		"no host":                   func(w *Workloads) { w.Host = "" },
		"no gpu asset":              func(w *Workloads) { w.GPUs[0].Asset = "" },
		"pid 0":                     func(w *Workloads) { w.GPUs[0].Processes[0].PID = 0 },
		"long name":                 func(w *Workloads) { w.GPUs[0].Processes[0].Name = strings.Repeat("x", MaxWorkloadString+1) },
		"artifact shape":            func(w *Workloads) { w.GPUs[0].Processes[0].Artifact = "md5:abc" },
		"image upper":               func(w *Workloads) { w.GPUs[0].Processes[0].Image = strings.ToUpper(digest) },
		"skip reason":               func(w *Workloads) { w.GPUs[0].Processes[0].Skip = "because" },
		"repo digest shape":         func(w *Workloads) { w.GPUs[0].Processes[0].RepoDigest = "registry.example/x@sha256:0f" },
		"repo digest without image": func(w *Workloads) { w.GPUs[0].Processes[0].Image = "" },
		"too many gpus":             func(w *Workloads) { w.GPUs = make([]GPUWorkload, MaxWorkloadGPUs+1) },
		"too many procs":            func(w *Workloads) { w.GPUs[0].Processes = make([]Process, MaxGPUProcesses+1) },
	} {
		w := good()
		mutate(&w)
		if err := w.Check(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Check = %v, want ErrMalformed", name, err)
		}
	}
}

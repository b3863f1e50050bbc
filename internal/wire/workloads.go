package wire

import (
	"fmt"
	"strings"
)

// Workloads is what runs on a host's GPUs: per GPU, the processes using it
// and, for each, the artifact it serves. The agent sends it at start, on
// every change and periodically.
type Workloads struct {
	Host string        `json:"host"` // asset id of the host
	GPUs []GPUWorkload `json:"gpus"`
}

// GPUWorkload is the processes on one GPU. A GPU with no process is listed
// with none, so "nothing runs here" is reported too.
type GPUWorkload struct {
	Asset     string    `json:"asset"` // asset id of the GPU, e.g. "srv-s1-001.gpu3"
	UUID      string    `json:"uuid,omitempty"`
	Processes []Process `json:"processes"`
}

// Process is one process using a GPU (NVML's running compute processes)
// and the artifact it serves.
type Process struct {
	PID      uint32 `json:"pid"`
	Name     string `json:"name"`      // the executable's name (/proc/PID/comm)
	MemBytes uint64 `json:"mem_bytes"` // GPU memory the process uses
	// Model is the operator's name for the configured model the process
	// serves (the agent's workloads.models entry it matched), or "".
	Model string `json:"model,omitempty"`
	// Artifact is the content hash of the model's directory or file,
	// "sha256:" and 64 hex digits, or "".
	Artifact string `json:"artifact,omitempty"`
	// Image is the digest of the container image the process runs in,
	// "sha256:" and 64 hex digits, or "".
	Image string `json:"image,omitempty"`
	// RepoDigest is the registry digest of that image (the sha256 part of
	// the first of its RepoDigests, "sha256:" and 64 hex digits): what a
	// pipeline records as a deployment's container_hash. "" for an image
	// with none (built locally, never pushed or pulled by digest).
	RepoDigest string `json:"repo_digest,omitempty"`
	// Skip says why Artifact or Image is missing where one was looked for
	// (one of the Skip* reasons), or "".
	Skip string `json:"skip,omitempty"`
}

// Reasons an artifact or image digest is missing (Process.Skip).
const (
	SkipNoModel      = "no_model"      // no configured model matches the process
	SkipModelUnread  = "model_unread"  // the model's path could not be read
	SkipNoProc       = "no_proc"       // /proc/PID is not readable (another pid namespace, gone)
	SkipNoContainer  = "no_container"  // the process runs in no container
	SkipNoRuntime    = "no_runtime"    // the container runtime's socket is not reachable
	SkipImageUnknown = "image_unknown" // the runtime does not know the container or its image
)

// Bounds of a Workloads body, checked on ingest.
const (
	MaxWorkloadGPUs   = 64  // GPUs per host, as a snapshot
	MaxGPUProcesses   = 64  // processes per GPU
	MaxWorkloadString = 128 // bytes in a name, model or asset id
)

// ValidDigest reports whether d is "sha256:" and 64 lower-case hex digits.
func ValidDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func validSkip(s string) bool {
	switch s {
	case "", SkipNoModel, SkipModelUnread, SkipNoProc, SkipNoContainer, SkipNoRuntime, SkipImageUnknown:
		return true
	}
	return false
}

// Check reports the first value of w outside its bounds (ErrMalformed).
func (w *Workloads) Check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: workloads: %s", ErrMalformed, fmt.Sprintf(format, a...))
	}
	if w.Host == "" || len(w.Host) > MaxWorkloadString {
		return bad("host %q", w.Host)
	}
	if len(w.GPUs) > MaxWorkloadGPUs {
		return bad("%d gpus, at most %d", len(w.GPUs), MaxWorkloadGPUs)
	}
	for i := range w.GPUs {
		g := &w.GPUs[i]
		if g.Asset == "" || len(g.Asset) > MaxWorkloadString || len(g.UUID) > MaxWorkloadString {
			return bad("gpus[%d] asset %q", i, g.Asset)
		}
		if len(g.Processes) > MaxGPUProcesses {
			return bad("gpus[%d]: %d processes, at most %d", i, len(g.Processes), MaxGPUProcesses)
		}
		for j := range g.Processes {
			p := &g.Processes[j]
			switch {
			case p.PID == 0:
				return bad("gpus[%d].processes[%d]: pid 0", i, j)
			case len(p.Name) > MaxWorkloadString || len(p.Model) > MaxWorkloadString:
				return bad("gpus[%d].processes[%d]: name or model longer than %d bytes", i, j, MaxWorkloadString)
			case p.Artifact != "" && !ValidDigest(p.Artifact):
				return bad("gpus[%d].processes[%d]: artifact %q is not sha256:HEX", i, j, p.Artifact)
			case p.Image != "" && !ValidDigest(p.Image):
				return bad("gpus[%d].processes[%d]: image %q is not sha256:HEX", i, j, p.Image)
			case p.RepoDigest != "" && (!ValidDigest(p.RepoDigest) || p.Image == ""):
				return bad("gpus[%d].processes[%d]: repo digest %q is not sha256:HEX of a reported image", i, j, p.RepoDigest)
			case !validSkip(p.Skip):
				return bad("gpus[%d].processes[%d]: skip reason %q", i, j, p.Skip)
			}
		}
	}
	return nil
}

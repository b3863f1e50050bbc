package httpapi

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/detect"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// Approvals are the ledger's deployments in force per asset, from memory
// (*approvals.Cache): what the run-time views judge each process against.
type Approvals interface {
	InForce(asset string) ([]detect.Approval, bool)
	// Kick asks for the ledger to be read again soon (after a deployment
	// was recorded); it never blocks.
	Kick()
}

// RunningProcess is one process on a GPU and whether a deployment in force
// approves its artifact there.
type RunningProcess struct {
	wire.Process
	Approved   bool   `json:"approved"`
	Deployment string `json:"deployment,omitempty"` // the deployment that approves it
	// Reason says why it is not approved (detect.Judge).
	Reason string `json:"reason,omitempty"`
	// ImageCheck is how its container image's registry digest compared
	// with the deployment's container hash: match, mismatch, local_only
	// (an image built locally has none: not compared); absent when not
	// compared.
	ImageCheck string `json:"image_check,omitempty"`
}

// InForce is one deployment in force on a GPU and how the GPU's firmware
// differs from what it was approved on ("" : it does not).
type InForce struct {
	Deployment string `json:"deployment"`
	Model      string `json:"model"`
	Artifact   string `json:"artifact"`
	VBIOS      string `json:"vbios,omitempty"`
	Driver     string `json:"driver,omitempty"`
	Drift      string `json:"drift,omitempty"`
}

// AssetRuntime is GET /api/v1/assets/:id/runtime: what runs on a GPU (its
// newest workloads report) judged against the deployments in force.
// Known is false while the deployments were not read from the ledger yet
// (or the ledger is off): then nothing is approved.
type AssetRuntime struct {
	Asset     string           `json:"asset"`
	At        *time.Time       `json:"at,omitempty"` // the report's reading time; absent: none yet
	Known     bool             `json:"known"`
	Processes []RunningProcess `json:"processes"`
	InForce   []InForce        `json:"in_force"`
}

// runtimeOf judges a's newest workloads report.
func (s *Server) runtimeOf(a *twin.Asset) AssetRuntime {
	out := AssetRuntime{Asset: a.ID, Processes: []RunningProcess{}, InForce: []InForce{}}
	var as []detect.Approval
	if s.opts.Approvals != nil {
		as, out.Known = s.opts.Approvals.InForce(a.ID)
	}
	for _, ap := range as {
		out.InForce = append(out.InForce, InForce{Deployment: ap.Deployment, Model: ap.Model, Artifact: "sha256:" + ap.Artifact,
			VBIOS: ap.VBIOS, Driver: ap.Driver, Drift: detect.Drift(ap, a.Firmware)})
	}
	if a.Workload == nil {
		return out
	}
	at := a.Workload.At
	out.At = &at
	for _, p := range a.Workload.Processes {
		j := detect.Judge(as, p)
		rp := RunningProcess{Process: p, Approved: j.Approved, Deployment: j.Deployment, Reason: j.Reason, ImageCheck: j.ImageCheck}
		out.Processes = append(out.Processes, rp)
	}
	return out
}

// ModelRun is one process serving a model now: on which GPU, with which
// artifact, and whether that is the model's registered artifact and
// approved there.
type ModelRun struct {
	Asset string    `json:"asset"`
	Site  string    `json:"site,omitempty"`
	Host  string    `json:"host,omitempty"`
	At    time.Time `json:"at"` // the workloads report's reading time
	RunningProcess
	// Registered says the artifact is the model's registered one; false
	// for a process that names the model with other bytes (tampered, or
	// an unregistered build).
	Registered bool `json:"registered"`
}

// ModelRuns is GET /api/v1/ledger/models/:id/runs.
type ModelRuns struct {
	Model    string     `json:"model"`
	Artifact string     `json:"artifact"`
	Items    []ModelRun `json:"items"`
}

// modelRuns finds where a model runs now: every GPU twin whose newest
// workloads report has a process serving the model's artifact, or naming
// the model. It reads the twins, not the ledger (one ledger read: the
// model), a page of GPUs at a time.
func (s *Server) modelRuns(ctx context.Context, c *fiber.Ctx) (any, error) {
	m, err := s.opts.Ledger.Ledger.GetModel(ctx, param(c, "id"))
	if err != nil {
		return nil, err
	}
	out := ModelRuns{Model: m.ID, Artifact: "sha256:" + m.ArtifactHash, Items: []ModelRun{}}
	if s.opts.Assets == nil {
		return out, nil
	}
	f := twinstore.AssetFilter{Kind: twin.KindGPU, Limit: 1000}
	for {
		items, next, err := s.opts.Assets.Assets(f)
		if err != nil {
			return nil, err
		}
		for i := range items {
			a := &items[i]
			if a.Workload == nil {
				continue
			}
			rt := s.runtimeOf(a)
			for _, p := range rt.Processes {
				if p.Artifact != out.Artifact && p.Model != m.ID {
					continue
				}
				out.Items = append(out.Items, ModelRun{Asset: a.ID, Site: a.Site, Host: a.Parent, At: a.Workload.At,
					RunningProcess: p, Registered: p.Artifact == out.Artifact})
			}
		}
		if next == "" {
			return out, nil
		}
		f.Cursor = next
	}
}

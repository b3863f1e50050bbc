package detect

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// Approval is one deployment in force on one asset, as the ledger recorded
// it: the model it approves, that model's artifact hash, and the asset's
// firmware when it was approved.
type Approval struct {
	Deployment string
	Model      string
	Artifact   string // lower-case hex SHA-256 of the model artifact (no "sha256:")
	// Container is the deployment's container_hash: the registry digest
	// of the image it approves (lower-case hex, no "sha256:"; empty: none
	// named, the image is not compared).
	Container string
	// VBIOS and Driver are the target's versions the deployment recorded
	// (empty: not recorded, not compared).
	VBIOS  string
	Driver string
}

// Approvals answers which deployments are in force on an asset: allowed by
// the gate, not rolled back, not paused. It answers from memory (the ledger
// is read in the background), safe for concurrent use.
type Approvals interface {
	// InForce returns the asset's approvals; ok is false until the
	// approvals were read once (nothing is judged before).
	InForce(asset string) (as []Approval, ok bool)
	// Version moves whenever what InForce answers may have changed.
	Version() uint64
}

// runtimeDetector compares what runs on each GPU (workloads reports) with
// what the ledger approved there: unapproved_model and environment_drift.
type runtimeDetector struct {
	view      *View
	approvals Approvals // nil: off
	version   uint64    // the approvals' version the newest reports were judged against
	// newest is each GPU's newest workloads report, judged again when
	// the approvals change (read at last, a rollback, a pause).
	newest map[string]gpuReport
	// notCompared counts processes judged whose image has no registry
	// digest to compare (nil: not counted).
	notCompared *atomic.Uint64
}

type gpuReport struct {
	ref   MessageRef
	host  string
	procs []wire.Process // shared with the decoded message: read only
}

func newRuntimeDetector(view *View) *runtimeDetector {
	return &runtimeDetector{view: view, newest: map[string]gpuReport{}}
}

// workloads judges each GPU of a workloads report.
func (d *runtimeDetector) workloads(m *Message) []Finding {
	if d.approvals == nil {
		return nil
	}
	var out []Finding
	for _, g := range m.Workloads.GPUs {
		if prev, ok := d.newest[g.Asset]; ok && prev.ref.Time.After(m.Ref.Time) {
			continue // a late report never replaces a newer one
		}
		r := gpuReport{ref: m.Ref, host: m.Workloads.Host, procs: g.Processes}
		d.newest[g.Asset] = r
		out = append(out, d.judge(g.Asset, r)...)
	}
	return out
}

// tick judges every GPU's newest report again when the approvals changed.
func (d *runtimeDetector) tick() []Finding {
	if d.approvals == nil {
		return nil
	}
	v := d.approvals.Version()
	if v == d.version {
		return nil
	}
	d.version = v
	var out []Finding
	for asset, r := range d.newest {
		out = append(out, d.judge(asset, r)...)
	}
	sortFindings(out)
	return out
}

// judge finds the processes on a GPU that the deployments in force there
// do not approve (Judge: the artifact, and the image where it can be
// compared), and the deployments in force whose recorded firmware is
// not the GPU's now.
func (d *runtimeDetector) judge(asset string, r gpuReport) []Finding {
	as, ok := d.approvals.InForce(asset)
	if !ok {
		return nil
	}
	var out []Finding
	var bad []string
	vals := values("host", r.host)
	for _, p := range r.procs {
		j := Judge(as, p)
		if j.ImageCheck == ImageLocalOnly && d.notCompared != nil {
			d.notCompared.Add(1)
		}
		if !j.Judged || j.Approved {
			continue
		}
		what := fmt.Sprintf("pid %d %s serves %s", p.PID, p.Name, p.Artifact)
		switch {
		case j.ImageCheck == ImageMismatch:
			what += ": " + j.Reason
			vals[fmt.Sprintf("pid.%d.repo_digest", p.PID)] = p.RepoDigest
		case p.Model != "":
			what = fmt.Sprintf("pid %d %s serves model %s as %s", p.PID, p.Name, p.Model, p.Artifact)
			// The model is approved here, with other bytes: a tampered or
			// unregistered build of it.
			for _, a := range as {
				if a.Model == p.Model {
					what += fmt.Sprintf(" (deployment %s approves sha256:%s)", a.Deployment, a.Artifact)
					break
				}
			}
		}
		bad = append(bad, what)
		vals[fmt.Sprintf("pid.%d", p.PID)] = p.Artifact
	}
	if len(bad) > 0 {
		deps := make([]string, len(as))
		for i, a := range as {
			deps[i] = a.Deployment + "=" + a.Model
		}
		sort.Strings(deps)
		vals["in_force"] = strings.Join(deps, ",")
		out = append(out, Finding{
			Type: TypeUnapprovedModel, Asset: asset, Severity: Critical, Time: r.ref.Time,
			Summary:  "no approved deployment on " + asset + " for what runs there: " + strings.Join(bad, "; "),
			Evidence: Evidence{Messages: []MessageRef{r.ref}, Values: vals},
		})
	}
	return append(out, d.drift(asset, as, r.ref.Time, Evidence{Messages: []MessageRef{r.ref}})...)
}

// event judges the deployments in force on an asset whose firmware changed.
func (d *runtimeDetector) event(e *twin.Event) []Finding {
	if d.approvals == nil || !slices.ContainsFunc(e.Changes, func(c twin.Change) bool {
		return c.Field == "firmware.vbios" || c.Field == "firmware.driver"
	}) {
		return nil
	}
	as, ok := d.approvals.InForce(e.Asset)
	if !ok {
		return nil
	}
	return d.drift(e.Asset, as, e.Time, Evidence{Events: []twin.Event{*e}})
}

// drift is one environment_drift finding naming every deployment in force
// on asset whose recorded VBIOS or driver is not the twin's now.
func (d *runtimeDetector) drift(asset string, as []Approval, t time.Time, ev Evidence) []Finding {
	tw, ok := d.view.Asset(asset)
	if !ok {
		return nil
	}
	var what []string
	vals := map[string]string{}
	for _, a := range as {
		if diff := Drift(a, tw.Firmware); diff != "" {
			what = append(what, fmt.Sprintf("deployment %s (model %s): %s", a.Deployment, a.Model, diff))
			vals["deployment."+a.Deployment] = diff
		}
	}
	if len(what) == 0 {
		return nil
	}
	ev.Values = vals
	return []Finding{{
		Type: TypeEnvironmentDrift, Asset: asset, Severity: Warning, Time: t,
		Summary:  asset + " changed since its deployments were approved: " + strings.Join(what, "; "),
		Evidence: ev,
	}}
}

// Image checks (Judgement.ImageCheck).
const (
	// ImageMatch: the process's image has the registry digest the
	// deployment's container_hash names.
	ImageMatch = "match"
	// ImageMismatch: it has another registry digest; not approved.
	ImageMismatch = "mismatch"
	// ImageLocalOnly: the image has no registry digest (built locally),
	// so it cannot be compared with the deployment's container_hash; the
	// process is judged by its artifact alone.
	ImageLocalOnly = "local_only"
)

// Judgement is a process judged against the approvals in force on its GPU.
type Judgement struct {
	// Judged is false for a process with no artifact hash (no model
	// matched, or unread): nothing is said about it.
	Judged   bool
	Approved bool
	// Deployment approves it; on an image mismatch, the deployment that
	// approves its artifact with another image.
	Deployment string
	// Reason says why it is not approved ("" when it is).
	Reason string
	// ImageCheck is how its container image compared (Image*); "" when
	// not compared: the process runs in no container (or the runtime did
	// not say its image), or the deployment names no container.
	ImageCheck string
}

// Judge judges a process on a GPU against as, the approvals in force
// there: its model artifact hash must be one a deployment approves and,
// when it runs in a container and that deployment names a container hash,
// its image's registry digest must be that hash. An image with no registry
// digest (built locally) cannot be compared: the artifact alone decides
// (ImageLocalOnly).
func Judge(as []Approval, p wire.Process) Judgement {
	art, ok := strings.CutPrefix(p.Artifact, "sha256:")
	if !ok || art == "" {
		return Judgement{}
	}
	var matches []Approval
	for _, a := range as {
		if a.Artifact == art {
			matches = append(matches, a)
		}
	}
	if len(matches) == 0 {
		return Judgement{Judged: true, Reason: "no deployment in force here approves artifact " + p.Artifact}
	}
	approved := func(a Approval, check string) Judgement {
		return Judgement{Judged: true, Approved: true, Deployment: a.Deployment, ImageCheck: check}
	}
	if p.Image == "" {
		return approved(matches[0], "")
	}
	for _, a := range matches {
		if a.Container == "" {
			return approved(a, "")
		}
	}
	if p.RepoDigest == "" {
		return approved(matches[0], ImageLocalOnly)
	}
	repo := strings.TrimPrefix(p.RepoDigest, "sha256:")
	for _, a := range matches {
		if a.Container == repo {
			return approved(a, ImageMatch)
		}
	}
	a := matches[0]
	return Judgement{Judged: true, Deployment: a.Deployment, ImageCheck: ImageMismatch,
		Reason: fmt.Sprintf("image digest differs: runs image %s with registry digest %s, deployment %s approves container sha256:%s",
			p.Image, p.RepoDigest, a.Deployment, a.Container)}
}

// Drift says how fw differs from the firmware a was approved on ("" when
// it does not, or nothing was recorded).
func Drift(a Approval, fw twin.Firmware) string {
	var diff []string
	if a.VBIOS != "" && fw.VBIOS != a.VBIOS {
		diff = append(diff, fmt.Sprintf("vbios %s approved, %s now", a.VBIOS, fw.VBIOS))
	}
	if a.Driver != "" && fw.Driver != a.Driver {
		diff = append(diff, fmt.Sprintf("driver %s approved, %s now", a.Driver, fw.Driver))
	}
	return strings.Join(diff, ", ")
}

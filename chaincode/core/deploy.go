package core

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// SetPolicy creates a deployment policy or replaces it with a new version.
// Roles: admin, compliance. Required roles are sign-off roles (ml_lead,
// security, compliance), at least one; thresholds name distinct metrics.
func SetPolicy(tx *Tx, in PolicyInput) (Policy, error) {
	if err := begin(tx, "set policy", rolesPolicy); err != nil {
		return Policy{}, err
	}
	if err := checkID("policy", in.ID); err != nil {
		return Policy{}, err
	}
	if len(in.RequiredRoles) == 0 {
		return Policy{}, fmt.Errorf("policy without required sign-offs: %w", ErrInvalid)
	}
	for i, r := range in.RequiredRoles {
		if !slices.Contains(rolesAttest, r) || slices.Contains(in.RequiredRoles[:i], r) {
			return Policy{}, fmt.Errorf("required role %q (sign-off roles: %v, each once): %w", r, rolesAttest, ErrInvalid)
		}
	}
	metrics := make([]string, 0, len(in.Thresholds))
	for _, t := range in.Thresholds {
		metrics = append(metrics, t.Metric)
		if !t.Compare.Valid() {
			return Policy{}, fmt.Errorf("threshold %s comparison %q: %w", t.Metric, t.Compare, ErrInvalid)
		}
		if err := checkFinite("threshold "+t.Metric, t.Value); err != nil {
			return Policy{}, err
		}
	}
	if err := checkDistinctIDs("threshold metric", metrics); err != nil {
		return Policy{}, err
	}
	for i, k := range in.RefuseTrainingEvidence {
		if !k.Valid() || slices.Contains(in.RefuseTrainingEvidence[:i], k) {
			return Policy{}, fmt.Errorf("refused training evidence kind %q (each once): %w", k, ErrInvalid)
		}
	}
	for i, c := range in.HardwareClasses {
		if err := checkText("hardware class", c, 128, true); err != nil || slices.Contains(in.HardwareClasses[:i], c) {
			return Policy{}, fmt.Errorf("hardware class %q (each once): %w", c, ErrInvalid)
		}
	}
	for _, v := range []string{in.DriverMin, in.DriverMax} {
		if _, ok := parseVersion(v); v != "" && !ok {
			return Policy{}, fmt.Errorf("driver bound %q: want a dotted number like 550.54.15: %w", v, ErrInvalid)
		}
	}
	if in.DriverMin != "" && in.DriverMax != "" && compareVersions(in.DriverMin, in.DriverMax) > 0 {
		return Policy{}, fmt.Errorf("driver_min %s above driver_max %s: %w", in.DriverMin, in.DriverMax, ErrInvalid)
	}
	var old Policy
	if _, err := load(tx.State, pfxPolicy+in.ID, &old); err != nil {
		return Policy{}, err
	}
	p := Policy{ID: in.ID, Version: old.Version + 1, RequiredRoles: in.RequiredRoles, Thresholds: in.Thresholds,
		RefuseTrainingEvidence: in.RefuseTrainingEvidence, RefuseQuarantinedTraining: in.RefuseQuarantinedTraining,
		HardwareClasses: in.HardwareClasses, DriverMin: in.DriverMin, DriverMax: in.DriverMax, Stamp: tx.stamp()}
	return p, store(tx.State, pfxPolicy+p.ID, p)
}

// GetPolicy returns a policy. Any role.
func GetPolicy(tx *Tx, id string) (Policy, error) {
	return getRecord[Policy](tx, "policy", pfxPolicy, id)
}

func checkDeploymentInput(in *DeploymentInput) error {
	if err := checkID("deployment", in.ID); err != nil {
		return err
	}
	if in.Kind != KindDeploy && in.Kind != KindRollback {
		return fmt.Errorf("deployment kind %q: %w", in.Kind, ErrInvalid)
	}
	if (in.Kind == KindRollback) != (in.Replaces != "") {
		return fmt.Errorf("a rollback, and only a rollback, names the deployment it replaces: %w", ErrInvalid)
	}
	if len(in.Targets) == 0 {
		return fmt.Errorf("deployment without targets: %w", ErrInvalid)
	}
	if err := checkDistinctIDs("target", in.Targets); err != nil {
		return err
	}
	for _, h := range []struct{ what, v string }{{"binary hash", in.BinaryHash}, {"container hash", in.ContainerHash}, {"config hash", in.ConfigHash}} {
		if err := checkHash(h.what, h.v); err != nil {
			return err
		}
	}
	if err := checkText("hardware class", in.Environment.HardwareClass, 128, true); err != nil {
		return err
	}
	if err := checkTools("driver", in.Environment.Drivers, true); err != nil {
		return err
	}
	if err := checkTools("dependency", in.Environment.Dependencies, false); err != nil {
		return err
	}
	for i, a := range in.Environment.Assets {
		if !slices.Contains(in.Targets, a.Asset) || slices.ContainsFunc(in.Environment.Assets[:i], func(b AssetEnvironment) bool { return b.Asset == a.Asset }) {
			return fmt.Errorf("environment of asset %q: not a target, or twice: %w", a.Asset, ErrInvalid)
		}
		for _, f := range []struct{ what, v string }{{"gpu model", a.GPUModel}, {"uuid", a.UUID}, {"serial", a.Serial}, {"vbios", a.VBIOS}, {"driver", a.Driver}} {
			if err := checkText("asset "+a.Asset+" "+f.what, f.v, 128, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// envReasons are the reasons the deployment's environment gives under p: a
// hardware class the policy does not allow, a target whose driver is
// unknown or outside the policy's range.
func envReasons(p *Policy, env *Environment, targets []string) []Reason {
	var rs []Reason
	if len(p.HardwareClasses) > 0 && !slices.Contains(p.HardwareClasses, env.HardwareClass) {
		rs = append(rs, Reason{ReasonHardwareClass, fmt.Sprintf("%s, allowed %v", env.HardwareClass, p.HardwareClasses)})
	}
	if p.DriverMin == "" && p.DriverMax == "" {
		return rs
	}
	for _, t := range targets {
		i := slices.IndexFunc(env.Assets, func(a AssetEnvironment) bool { return a.Asset == t })
		switch {
		case i < 0 || env.Assets[i].Driver == "":
			rs = append(rs, Reason{ReasonDriverRange, t + ": driver unknown"})
		case p.DriverMin != "" && compareVersions(env.Assets[i].Driver, p.DriverMin) < 0,
			p.DriverMax != "" && compareVersions(env.Assets[i].Driver, p.DriverMax) > 0:
			rs = append(rs, Reason{ReasonDriverRange, fmt.Sprintf("%s: driver %s, allowed %s..%s", t, env.Assets[i].Driver, p.DriverMin, p.DriverMax)})
		}
	}
	return rs
}

// parseVersion splits a dotted version ("550.54.15") into its numbers.
func parseVersion(v string) ([]uint64, bool) {
	if v == "" || len(v) > 64 {
		return nil, false
	}
	var out []uint64
	for _, part := range strings.Split(v, ".") {
		n, err := strconv.ParseUint(part, 10, 32)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// compareVersions compares dotted versions number by number (a missing
// number is 0); a version that does not parse sorts below every other.
func compareVersions(a, b string) int {
	va, oka := parseVersion(a)
	vb, okb := parseVersion(b)
	if !oka || !okb {
		switch {
		case oka:
			return 1
		case okb:
			return -1
		}
		return 0
	}
	for i := 0; i < max(len(va), len(vb)); i++ {
		var x, y uint64
		if i < len(va) {
			x = va[i]
		}
		if i < len(vb) {
			y = vb[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// gate judges a deployment of m to targets under policy p and returns every
// reason to refuse it, in the order of the ReasonCode constants.
func gate(st State, m *Model, p *Policy, targets []Asset, env *Environment, targetIDs []string) ([]Reason, error) {
	var rs []Reason
	for _, role := range p.RequiredRoles {
		a, found, err := attestationInForce(st, SubjectModel, m.ID, role)
		switch {
		case err != nil:
			return nil, err
		case !found:
			rs = append(rs, Reason{ReasonAttestationMissing, string(role)})
		case a.Decision != Approve:
			rs = append(rs, Reason{ReasonAttestationRejected, fmt.Sprintf("%s by %s", role, a.Stamp.By)})
		case m.Revalidation != nil && !a.Stamp.Time.After(m.Revalidation.Stamp.Time):
			rs = append(rs, Reason{ReasonRevalidation, fmt.Sprintf("%s signed before remediation %s", role, m.Revalidation.Remediation)})
		}
	}
	for _, t := range p.Thresholds {
		v, ok := m.LatestMetric(t.Metric)
		switch {
		case !ok:
			rs = append(rs, Reason{ReasonMetricMissing, t.Metric})
		case !t.Compare.Passes(v, t.Value):
			rs = append(rs, Reason{ReasonMetricThreshold, fmt.Sprintf("%s = %v, %s %v", t.Metric, v, t.Compare, t.Value)})
		}
	}
	for _, id := range m.Datasets {
		var d Dataset
		if err := mustLoad(st, pfxDataset+id, "dataset", id, &d); err != nil {
			return nil, err
		}
		checks := d.ChecksInForce()
		if len(checks) == 0 {
			rs = append(rs, Reason{ReasonDatasetUnchecked, id})
		}
		for _, c := range checks {
			if !c.Pass {
				rs = append(rs, Reason{ReasonDatasetCheckFailed, fmt.Sprintf("%s: %s = %v, %s %v", id, c.Name, c.Value, c.Compare, c.Threshold)})
			}
		}
	}
	for _, a := range targets {
		switch a.Status {
		case StatusQuarantined:
			rs = append(rs, Reason{ReasonTargetQuarantined, a.ID})
		case StatusRetired:
			rs = append(rs, Reason{ReasonTargetRetired, a.ID})
		}
	}
	rs, err := trainingReasons(st, m, p, rs)
	if err != nil {
		return nil, err
	}
	return append(rs, envReasons(p, env, targetIDs)...), nil
}

// trainingReasons adds the reasons the model's training hardware gives
// under p: evidence of a refused kind within the run (by revision, or time
// for uses without revisions), and training assets quarantined now.
func trainingReasons(st State, m *Model, p *Policy, rs []Reason) ([]Reason, error) {
	if len(p.RefuseTrainingEvidence) > 0 {
		for i := range m.Training.Hardware {
			use := &m.Training.Hardware[i]
			ev, err := evidenceOf(st, use.Asset)
			if err != nil {
				return nil, err
			}
			for j := range ev {
				if slices.Contains(p.RefuseTrainingEvidence, ev[j].Kind) && duringRun(&ev[j], use, &m.Training) {
					rs = append(rs, Reason{ReasonTrainingEvidence, fmt.Sprintf("%s: %s at revision %d", use.Asset, ev[j].Kind, ev[j].Revision)})
				}
			}
		}
	}
	if p.RefuseQuarantinedTraining {
		for i := range m.Training.Hardware {
			var a Asset
			found, err := load(st, pfxAsset+m.Training.Hardware[i].Asset, &a)
			if err != nil {
				return nil, err
			}
			if found && a.Status == StatusQuarantined {
				rs = append(rs, Reason{ReasonTrainingQuarantined, a.ID})
			}
		}
	}
	return rs, nil
}

// RequestDeployment asks the gate to deploy a model (or roll back to one) on
// target assets and records its decision. Roles: ml_engineer, ml_lead,
// service.
//
// Malformed input, an unknown model, policy or target, or a reused id is an
// error and records nothing. Otherwise the decision is recorded and returned
// with a nil error: allowed only when every sign-off the policy requires is
// in force as an approval, the model's latest metrics meet the policy's
// thresholds, every training dataset's checks in force passed, and no target
// is quarantined or retired; else refused with every reason. A rollback
// names an allowed deployment it replaces, sharing a target, of another model.
func RequestDeployment(tx *Tx, in DeploymentInput) (Deployment, error) {
	if err := begin(tx, "request deployment", rolesDeploy); err != nil {
		return Deployment{}, err
	}
	if in.Kind == "" {
		in.Kind = KindDeploy
	}
	if err := checkDeploymentInput(&in); err != nil {
		return Deployment{}, err
	}
	var m Model
	if err := mustLoad(tx.State, pfxModel+in.Model, "model", in.Model, &m); err != nil {
		return Deployment{}, err
	}
	var p Policy
	if err := mustLoad(tx.State, pfxPolicy+in.Policy, "policy", in.Policy, &p); err != nil {
		return Deployment{}, err
	}
	targets := make([]Asset, len(in.Targets))
	for i, id := range in.Targets {
		if err := mustLoad(tx.State, pfxAsset+id, "target asset", id, &targets[i]); err != nil {
			return Deployment{}, err
		}
	}
	if in.Kind == KindRollback {
		if err := checkRollback(tx.State, &in); err != nil {
			return Deployment{}, err
		}
	}
	var old Deployment
	if found, err := load(tx.State, pfxDeployment+in.ID, &old); err != nil {
		return Deployment{}, err
	} else if found {
		return Deployment{}, fmt.Errorf("deployment %q already recorded: %w", in.ID, ErrConflict)
	}
	reasons, err := gate(tx.State, &m, &p, targets, &in.Environment, in.Targets)
	if err != nil {
		return Deployment{}, err
	}
	d := Deployment{DeploymentInput: in, ModelHash: m.ArtifactHash, PolicyVersion: p.Version,
		Allowed: len(reasons) == 0, Reasons: reasons, Stamp: tx.stamp()}
	if err := store(tx.State, pfxDeployment+d.ID, d); err != nil {
		return Deployment{}, err
	}
	if d.Allowed {
		for _, t := range d.Targets {
			if err := store(tx.State, deployIndexKey(t, d.Stamp, d.ID), d.ID); err != nil {
				return Deployment{}, err
			}
		}
	}
	return d, nil
}

func deployIndexKey(asset string, st Stamp, id string) string {
	return pfxDeployByAsset + asset + "/" + pad(uint64(st.Time.UnixNano())) + "/" + id
}

func checkRollback(st State, in *DeploymentInput) error {
	var prev Deployment
	if err := mustLoad(st, pfxDeployment+in.Replaces, "replaced deployment", in.Replaces, &prev); err != nil {
		return err
	}
	switch {
	case !prev.Allowed:
		return fmt.Errorf("deployment %s was refused, there is nothing to roll back: %w", prev.ID, ErrConflict)
	case prev.Model == in.Model:
		return fmt.Errorf("rollback of %s to the same model %s: %w", prev.ID, in.Model, ErrInvalid)
	case !slices.ContainsFunc(in.Targets, func(t string) bool { return slices.Contains(prev.Targets, t) }):
		return fmt.Errorf("rollback shares no target with %s: %w", prev.ID, ErrInvalid)
	}
	return nil
}

// GetDeployment returns a recorded gate decision. Any role.
func GetDeployment(tx *Tx, id string) (Deployment, error) {
	return getRecord[Deployment](tx, "deployment", pfxDeployment, id)
}

// DeploymentsOn returns the allowed deployments (and rollbacks) on an asset
// in the order they were recorded: the history of what ran there. Any role.
func DeploymentsOn(tx *Tx, asset string) ([]Deployment, error) {
	if err := beginRead(tx); err != nil {
		return nil, err
	}
	if err := checkID("asset", asset); err != nil {
		return nil, err
	}
	return deploymentsOn(tx.State, asset)
}

// DeploymentsOf returns every deployment request of a model, allowed or
// refused, in id order: where the model went and where the gate stopped it.
// A range read over all deployments (no index). Any role.
func DeploymentsOf(tx *Tx, model string) ([]Deployment, error) {
	if err := beginRead(tx); err != nil {
		return nil, err
	}
	if err := checkID("model", model); err != nil {
		return nil, err
	}
	all, err := scan[Deployment](tx.State, pfxDeployment)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(d Deployment) bool { return d.Model != model }), nil
}

func deploymentsOn(st State, asset string) ([]Deployment, error) {
	return loadIndexed[Deployment](st, pfxDeployByAsset+asset+"/", pfxDeployment, "deployment")
}

package core

import (
	"fmt"
	"slices"
)

func checkMetrics(what string, ms []Metric, required bool) error {
	if required && len(ms) == 0 {
		return fmt.Errorf("%s without metrics: %w", what, ErrInvalid)
	}
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		names = append(names, m.Name)
		if err := checkFinite("metric "+m.Name, m.Value); err != nil {
			return err
		}
	}
	return checkDistinctIDs(what+" metric", names)
}

// checkFederated checks federated rounds: numbered 1, 2, 3, ...; each with
// distinct registered nodes that are neither quarantined nor retired, and
// valid update and aggregate hashes.
func checkFederated(st State, rounds []FedRound) error {
	if err := checkLen("federated round", len(rounds)); err != nil {
		return err
	}
	for i, r := range rounds {
		if r.Round != i+1 {
			return fmt.Errorf("federated round %d at position %d: %w", r.Round, i+1, ErrInvalid)
		}
		if len(r.Updates) == 0 {
			return fmt.Errorf("federated round %d without updates: %w", r.Round, ErrInvalid)
		}
		if err := checkHash("aggregate hash", r.AggregateHash); err != nil {
			return err
		}
		nodes := make([]string, 0, len(r.Updates))
		for _, u := range r.Updates {
			nodes = append(nodes, u.Node)
			if err := checkHash("update hash", u.UpdateHash); err != nil {
				return err
			}
		}
		if err := checkDistinctIDs("federated node", nodes); err != nil {
			return err
		}
		for _, n := range nodes {
			var a Asset
			if err := mustLoad(st, pfxAsset+n, "federated node (not registered)", n, &a); err != nil {
				return err
			}
			if a.Status == StatusQuarantined || a.Status == StatusRetired {
				return fmt.Errorf("federated node %q is %s: %w", n, a.Status, ErrConflict)
			}
		}
	}
	return nil
}

// checkTraining checks a training run: registered hardware with revision
// ranges, a code reference, a config hash, a run that ended by now.
func checkTraining(tx *Tx, t *TrainingRun) error {
	if len(t.Hardware) == 0 {
		return fmt.Errorf("training run without hardware: %w", ErrInvalid)
	}
	ids := make([]string, 0, len(t.Hardware))
	for _, h := range t.Hardware {
		ids = append(ids, h.Asset)
		if h.RevisionStart == 0 || h.RevisionEnd < h.RevisionStart {
			return fmt.Errorf("hardware %s revisions [%d, %d]: %w", h.Asset, h.RevisionStart, h.RevisionEnd, ErrInvalid)
		}
	}
	if err := checkDistinctIDs("training hardware", ids); err != nil {
		return err
	}
	if err := checkText("code ref", t.CodeRef, 512, true); err != nil {
		return err
	}
	if err := checkHash("config hash", t.ConfigHash); err != nil {
		return err
	}
	switch {
	case t.Start.IsZero() || t.End.Before(t.Start):
		return fmt.Errorf("training run [%s, %s]: %w", t.Start, t.End, ErrInvalid)
	case t.End.After(tx.Time):
		return fmt.Errorf("training run ends after this transaction: %w", ErrInvalid)
	}
	for _, id := range ids {
		var a Asset
		if err := mustLoad(tx.State, pfxAsset+id, "training hardware", id, &a); err != nil {
			return err
		}
	}
	return checkFederated(tx.State, t.Federated)
}

// RegisterModel records a model and its training run. Roles: ml_engineer,
// ml_lead, service. Its datasets must be registered with "training" in their
// consent's use scope; its hardware and federated nodes must be registered
// assets (an unregistered node is refused with ErrNotFound).
func RegisterModel(tx *Tx, in ModelInput) (Model, error) {
	if err := begin(tx, "register model", rolesModel); err != nil {
		return Model{}, err
	}
	if err := checkID("model", in.ID); err != nil {
		return Model{}, err
	}
	if err := checkText("model name", in.Name, 256, false); err != nil {
		return Model{}, err
	}
	if err := checkHash("artifact hash", in.ArtifactHash); err != nil {
		return Model{}, err
	}
	if len(in.Datasets) == 0 {
		return Model{}, fmt.Errorf("model without datasets: %w", ErrInvalid)
	}
	if err := checkDistinctIDs("dataset", in.Datasets); err != nil {
		return Model{}, err
	}
	for _, id := range in.Datasets {
		var d Dataset
		if err := mustLoad(tx.State, pfxDataset+id, "dataset", id, &d); err != nil {
			return Model{}, err
		}
		if !slices.Contains(d.Consent.UseScope, UseTraining) {
			return Model{}, fmt.Errorf("dataset %s's consent does not allow training: %w", id, ErrInvalid)
		}
	}
	if err := checkTraining(tx, &in.Training); err != nil {
		return Model{}, err
	}
	var old Model
	if found, err := load(tx.State, pfxModel+in.ID, &old); err != nil {
		return Model{}, err
	} else if found {
		return Model{}, fmt.Errorf("model %q already registered: %w", in.ID, ErrConflict)
	}
	m := Model{ModelInput: in, Registered: tx.stamp()}
	if err := store(tx.State, pfxModel+m.ID, m); err != nil {
		return Model{}, err
	}
	for _, a := range m.trainedOn() {
		if err := store(tx.State, pfxModelByAsset+a+"/"+m.ID, m.ID); err != nil {
			return Model{}, err
		}
	}
	return m, nil
}

// trainedOn lists the assets a model was trained on: its training hardware
// and its federated nodes, each once, in that order.
func (m *Model) trainedOn() []string {
	var out []string
	for _, h := range m.Training.Hardware {
		out = append(out, h.Asset)
	}
	for _, r := range m.Training.Federated {
		for _, u := range r.Updates {
			if !slices.Contains(out, u.Node) {
				out = append(out, u.Node)
			}
		}
	}
	return out
}

// AddEvaluation records an evaluation of a model. Roles: ml_engineer,
// ml_lead, service. An evaluation dataset, if named, must be registered.
func AddEvaluation(tx *Tx, in EvaluationInput) (Model, error) {
	id := in.Model
	if err := begin(tx, "add evaluation", rolesModel); err != nil {
		return Model{}, err
	}
	if err := checkID("model", id); err != nil {
		return Model{}, err
	}
	if err := checkText("evaluation name", in.Name, 256, true); err != nil {
		return Model{}, err
	}
	if err := checkMetrics("evaluation", in.Metrics, true); err != nil {
		return Model{}, err
	}
	if in.Dataset != "" {
		if err := checkID("dataset", in.Dataset); err != nil {
			return Model{}, err
		}
		var d Dataset
		if err := mustLoad(tx.State, pfxDataset+in.Dataset, "evaluation dataset", in.Dataset, &d); err != nil {
			return Model{}, err
		}
	}
	var m Model
	if err := mustLoad(tx.State, pfxModel+id, "model", id, &m); err != nil {
		return Model{}, err
	}
	if err := checkLen("evaluation of model "+id, len(m.Evaluations)+1); err != nil {
		return Model{}, err
	}
	m.Evaluations = append(m.Evaluations, Evaluation{Name: in.Name, Dataset: in.Dataset, Metrics: in.Metrics, Stamp: tx.stamp()})
	return m, store(tx.State, pfxModel+id, m)
}

// LatestMetric returns the value of metric in the newest evaluation that has it.
func (m *Model) LatestMetric(metric string) (float64, bool) {
	for i := len(m.Evaluations) - 1; i >= 0; i-- {
		for _, x := range m.Evaluations[i].Metrics {
			if x.Name == metric {
				return x.Value, true
			}
		}
	}
	return 0, false
}

// GetModel returns a model. Any role.
func GetModel(tx *Tx, id string) (Model, error) {
	return getRecord[Model](tx, "model", pfxModel, id)
}

// Valid reports whether k is a known subject kind.
func (k SubjectKind) Valid() bool { return k == SubjectDataset || k == SubjectModel }

// subjectHash returns the content hash of a dataset or the artifact hash of
// a model.
func subjectHash(st State, kind SubjectKind, id string) (string, error) {
	if kind == SubjectDataset {
		var d Dataset
		return d.ContentHash, mustLoad(st, pfxDataset+id, "dataset", id, &d)
	}
	var m Model
	return m.ArtifactHash, mustLoad(st, pfxModel+id, "model", id, &m)
}

func attestPrefix(kind SubjectKind, subject string, role Role) string {
	return pfxAttestation + string(kind) + "/" + subject + "/" + string(role) + "/"
}

// Attest records a sign-off on a dataset or model in the caller's role.
// Roles: ml_lead, security, compliance. The subject hash must be the
// subject's current hash. A later sign-off of the same role supersedes the
// earlier one (both stay on the ledger).
func Attest(tx *Tx, in AttestationInput) (Attestation, error) {
	if err := begin(tx, "attest", rolesAttest); err != nil {
		return Attestation{}, err
	}
	if !in.SubjectKind.Valid() {
		return Attestation{}, fmt.Errorf("attestation subject kind %q: %w", in.SubjectKind, ErrInvalid)
	}
	if err := checkID(string(in.SubjectKind), in.Subject); err != nil {
		return Attestation{}, err
	}
	if err := checkHash("subject hash", in.SubjectHash); err != nil {
		return Attestation{}, err
	}
	if in.Decision != Approve && in.Decision != Reject {
		return Attestation{}, fmt.Errorf("decision %q: %w", in.Decision, ErrInvalid)
	}
	if err := checkText("statement", in.Statement, 4096, false); err != nil {
		return Attestation{}, err
	}
	if err := checkMetrics("attestation", in.Metrics, false); err != nil {
		return Attestation{}, err
	}
	h, err := subjectHash(tx.State, in.SubjectKind, in.Subject)
	if err != nil {
		return Attestation{}, err
	}
	if h != in.SubjectHash {
		return Attestation{}, fmt.Errorf("%s %s has hash %s, not %s: %w", in.SubjectKind, in.Subject, h, in.SubjectHash, ErrConflict)
	}
	prefix := attestPrefix(in.SubjectKind, in.Subject, tx.Caller.Role)
	keys, err := scanKeys(tx.State, prefix)
	if err != nil {
		return Attestation{}, err
	}
	a := Attestation{SubjectKind: in.SubjectKind, Subject: in.Subject, SubjectHash: in.SubjectHash,
		Role: tx.Caller.Role, N: uint64(len(keys)) + 1, Decision: in.Decision, Statement: in.Statement,
		Metrics: in.Metrics, Stamp: tx.stamp()}
	return a, store(tx.State, prefix+pad(a.N), a)
}

// ListAttestations returns every sign-off on a subject, by role (in the
// order ml_lead, security, compliance) and then in order. Any role.
func ListAttestations(tx *Tx, kind SubjectKind, subject string) ([]Attestation, error) {
	if err := beginRead(tx); err != nil {
		return nil, err
	}
	if !kind.Valid() {
		return nil, fmt.Errorf("subject kind %q: %w", kind, ErrInvalid)
	}
	if err := checkID(string(kind), subject); err != nil {
		return nil, err
	}
	out := []Attestation{}
	for _, r := range rolesAttest {
		as, err := scan[Attestation](tx.State, attestPrefix(kind, subject, r))
		if err != nil {
			return nil, err
		}
		out = append(out, as...)
	}
	return out, nil
}

// attestationInForce returns the newest sign-off of role on a subject.
func attestationInForce(st State, kind SubjectKind, subject string, role Role) (Attestation, bool, error) {
	as, err := scan[Attestation](st, attestPrefix(kind, subject, role))
	if err != nil || len(as) == 0 {
		return Attestation{}, false, err
	}
	return as[len(as)-1], true, nil
}

package core

import (
	"math"
	"testing"
	"time"
)

func fed(rounds ...FedRound) func(m *ModelInput) {
	return func(m *ModelInput) { m.Training.Federated = rounds }
}

func round(n int, nodes ...string) FedRound {
	r := FedRound{Round: n, AggregateHash: hashOf("agg")}
	for _, id := range nodes {
		r.Updates = append(r.Updates, NodeUpdate{Node: id, UpdateHash: hashOf("upd-" + id)})
	}
	return r
}

func TestRegisterModel(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(m *ModelInput)
		setup func(l *ledger)
		want  error
	}{
		{"valid", func(m *ModelInput) {}, nil, nil},
		{"federated", fed(round(1, gpu0, node2), round(2, node2, server)), nil, nil},
		{"registered twice", func(m *ModelInput) { m.ID = "m1" }, nil, ErrConflict},
		{"bad id", func(m *ModelInput) { m.ID = "" }, nil, ErrInvalid},
		{"bad artifact hash", func(m *ModelInput) { m.ArtifactHash = "abc" }, nil, ErrInvalid},
		{"no datasets", func(m *ModelInput) { m.Datasets = nil }, nil, ErrInvalid},
		{"dataset twice", func(m *ModelInput) { m.Datasets = []string{"ds-lab", "ds-lab"} }, nil, ErrInvalid},
		{"unregistered dataset", func(m *ModelInput) { m.Datasets = []string{"ds-ghost"} }, nil, ErrNotFound},
		{"dataset without training consent", func(m *ModelInput) { m.Datasets = []string{"ds-eval"} }, func(l *ledger) {
			d := rootDataset("ds-eval")
			d.Consent.UseScope = []string{"evaluation"}
			must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, d) })
		}, ErrInvalid},
		{"no hardware", func(m *ModelInput) { m.Training.Hardware = nil }, nil, ErrInvalid},
		{"unregistered hardware", func(m *ModelInput) { m.Training.Hardware[1].Asset = "srv-s1-001.gpu5" }, nil, ErrNotFound},
		{"hardware twice", func(m *ModelInput) { m.Training.Hardware[1].Asset = gpu0 }, nil, ErrInvalid},
		{"revision 0", func(m *ModelInput) { m.Training.Hardware[0].RevisionStart = 0 }, nil, ErrInvalid},
		{"revisions backwards", func(m *ModelInput) { m.Training.Hardware[0].RevisionEnd = 0 }, nil, ErrInvalid},
		{"no code ref", func(m *ModelInput) { m.Training.CodeRef = "" }, nil, ErrInvalid},
		{"bad config hash", func(m *ModelInput) { m.Training.ConfigHash = "" }, nil, ErrInvalid},
		{"no start", func(m *ModelInput) { m.Training.Start = time.Time{} }, nil, ErrInvalid},
		{"ends before start", func(m *ModelInput) { m.Training.End = m.Training.Start.Add(-1) }, nil, ErrInvalid},
		{"ends in the future", func(m *ModelInput) { m.Training.End = t0.Add(48 * time.Hour) }, nil, ErrInvalid},
		{"unregistered federated node", fed(round(1, gpu0, "rogue-node")), nil, ErrNotFound},
		{"quarantined federated node", fed(round(1, node2)), func(l *ledger) {
			must(l, RoleSecurity, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{node2, StatusQuarantined, "x"}) })
		}, ErrConflict},
		{"retired federated node", fed(round(1, node2)), func(l *ledger) {
			must(l, RoleAdmin, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{node2, StatusRetired, "x"}) })
		}, ErrConflict},
		{"rounds out of order", fed(round(2, node2)), nil, ErrInvalid},
		{"round without updates", fed(round(1)), nil, ErrInvalid},
		{"node twice in a round", fed(round(1, node2, node2)), nil, ErrInvalid},
		{"bad aggregate hash", fed(FedRound{Round: 1, Updates: round(1, node2).Updates, AggregateHash: "a"}), nil, ErrInvalid},
		{"bad update hash", fed(FedRound{Round: 1, Updates: []NodeUpdate{{node2, "u"}}, AggregateHash: hashOf("a")}), nil, ErrInvalid},
	}
	for _, tt := range tests {
		l := mlWorld(t)
		if tt.setup != nil {
			tt.setup(l)
		}
		in := modelInput("m-new", "ds-lab")
		tt.edit(&in)
		_, err := do(l, RoleMLEngineer, func(tx *Tx) (Model, error) { return RegisterModel(tx, in) })
		wantErr(t, "RegisterModel("+tt.name+")", err, tt.want)
	}
}

func TestEvaluations(t *testing.T) {
	l := mlWorld(t)
	m := must(l, RoleService, func(tx *Tx) (Model, error) {
		return AddEvaluation(tx, EvaluationInput{Model: "m1", Name: "drift", Metrics: []Metric{{"accuracy", 0.88}}})
	})
	if v, ok := m.LatestMetric("accuracy"); !ok || v != 0.88 {
		t.Errorf("LatestMetric(accuracy) = %v, %v, want 0.88 from the newest evaluation", v, ok)
	}
	if v, ok := m.LatestMetric("latency_ms"); !ok || v != 41 {
		t.Errorf("LatestMetric(latency_ms) = %v, %v, want 41 from the older evaluation", v, ok)
	}
	if _, ok := m.LatestMetric("f1"); ok {
		t.Errorf("LatestMetric(f1) found a value, want none")
	}
	for _, tt := range []struct {
		name string
		in   EvaluationInput
		want error
	}{
		{"unknown model", EvaluationInput{Model: "m9", Name: "e", Metrics: []Metric{{"a", 1}}}, ErrNotFound},
		{"bad model id", EvaluationInput{Model: "m 9", Name: "e", Metrics: []Metric{{"a", 1}}}, ErrInvalid},
		{"no name", EvaluationInput{Model: "m1", Metrics: []Metric{{"a", 1}}}, ErrInvalid},
		{"no metrics", EvaluationInput{Model: "m1", Name: "e"}, ErrInvalid},
		{"metric twice", EvaluationInput{Model: "m1", Name: "e", Metrics: []Metric{{"a", 1}, {"a", 2}}}, ErrInvalid},
		{"NaN metric", EvaluationInput{Model: "m1", Name: "e", Metrics: []Metric{{"a", math.NaN()}}}, ErrInvalid},
		{"unknown dataset", EvaluationInput{Model: "m1", Name: "e", Dataset: "ds-x", Metrics: []Metric{{"a", 1}}}, ErrNotFound},
		{"bad dataset id", EvaluationInput{Model: "m1", Name: "e", Dataset: "ds x", Metrics: []Metric{{"a", 1}}}, ErrInvalid},
	} {
		_, err := do(l, RoleMLEngineer, func(tx *Tx) (Model, error) { return AddEvaluation(tx, tt.in) })
		wantErr(t, "AddEvaluation("+tt.name+")", err, tt.want)
	}
}

func TestAttest(t *testing.T) {
	l := mlWorld(t)
	l.signOff(RoleSecurity, SubjectModel, "m1", hashOf("m1"), Reject)
	l.signOff(RoleSecurity, SubjectModel, "m1", hashOf("m1"), Approve)
	l.signOff(RoleCompliance, SubjectDataset, "ds-lab", hashOf("ds-lab"), Approve)
	as := must(l, RoleAuditor, func(tx *Tx) ([]Attestation, error) { return ListAttestations(tx, SubjectModel, "m1") })
	if len(as) != 2 || as[0].N != 1 || as[1].N != 2 || as[0].Decision != Reject || as[1].Role != RoleSecurity || as[1].Stamp.By != "u-security" {
		t.Errorf("ListAttestations(m1) = %+v, want reject n=1 then approve n=2 by security", as)
	}
	in, found, err := attestationInForce(l.st, SubjectModel, "m1", RoleSecurity)
	if err != nil || !found || in.Decision != Approve {
		t.Errorf("attestation in force = %+v, %v, %v, want the later approval", in, found, err)
	}
	ds := must(l, RoleAuditor, func(tx *Tx) ([]Attestation, error) { return ListAttestations(tx, SubjectDataset, "ds-lab") })
	if len(ds) != 1 || ds[0].Role != RoleCompliance {
		t.Errorf("ListAttestations(ds-lab) = %+v, want one by compliance", ds)
	}
	for _, tt := range []struct {
		name string
		in   AttestationInput
		want error
	}{
		{"stale hash", AttestationInput{SubjectModel, "m1", hashOf("m1-old"), Approve, "", nil}, ErrConflict},
		{"dataset hash on the model", AttestationInput{SubjectModel, "m1", hashOf("ds-lab"), Approve, "", nil}, ErrConflict},
		{"unknown model", AttestationInput{SubjectModel, "m9", hashOf("m9"), Approve, "", nil}, ErrNotFound},
		{"unknown dataset", AttestationInput{SubjectDataset, "ds-9", hashOf("ds-9"), Approve, "", nil}, ErrNotFound},
		{"unknown subject kind", AttestationInput{"deployment", "m1", hashOf("m1"), Approve, "", nil}, ErrInvalid},
		{"bad subject id", AttestationInput{SubjectModel, "", hashOf("m1"), Approve, "", nil}, ErrInvalid},
		{"bad hash", AttestationInput{SubjectModel, "m1", "", Approve, "", nil}, ErrInvalid},
		{"unknown decision", AttestationInput{SubjectModel, "m1", hashOf("m1"), "maybe", "", nil}, ErrInvalid},
		{"metric twice", AttestationInput{SubjectModel, "m1", hashOf("m1"), Approve, "", []Metric{{"a", 1}, {"a", 1}}}, ErrInvalid},
	} {
		_, err := do(l, RoleMLLead, func(tx *Tx) (Attestation, error) { return Attest(tx, tt.in) })
		wantErr(t, "Attest("+tt.name+")", err, tt.want)
	}
	_, err = do(l, RoleAuditor, func(tx *Tx) ([]Attestation, error) { return ListAttestations(tx, "x", "m1") })
	wantErr(t, "ListAttestations(bad kind)", err, ErrInvalid)
}

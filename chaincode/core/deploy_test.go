package core

import (
	"math"
	"strings"
	"testing"
	"time"
)

func requestDeployment(l *ledger, in DeploymentInput) (Deployment, error) {
	return do(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, in) })
}

// TestGateRefusals sets up each way a deployment can fail the gate, one at
// a time and all at once, and checks the recorded refusal.
func TestGateRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(l *ledger)
		want  string
	}{
		{"allowed", func(l *ledger) { l.approveAll("m1") }, ""},
		{"sign-off missing", func(l *ledger) {
			l.signOff(RoleMLLead, SubjectModel, "m1", hashOf("m1"), Approve)
			l.signOff(RoleCompliance, SubjectModel, "m1", hashOf("m1"), Approve)
		}, "attestation_missing"},
		{"dataset sign-off does not count for the model", func(l *ledger) {
			l.approveAll("m1")
			must(l, RoleCompliance, func(tx *Tx) (Policy, error) {
				return SetPolicy(tx, PolicyInput{ID: "prod", RequiredRoles: []Role{RoleMLLead, RoleSecurity, RoleCompliance}})
			})
			l.signOff(RoleSecurity, SubjectDataset, "ds-lab", hashOf("ds-lab"), Reject)
		}, ""},
		{"sign-off rejected", func(l *ledger) {
			l.approveAll("m1")
			l.signOff(RoleSecurity, SubjectModel, "m1", hashOf("m1"), Reject)
		}, "attestation_rejected"},
		{"rejection superseded", func(l *ledger) {
			l.signOff(RoleSecurity, SubjectModel, "m1", hashOf("m1"), Reject)
			l.approveAll("m1")
		}, ""},
		{"metric missing", func(l *ledger) {
			l.approveAll("m1")
			must(l, RoleAdmin, func(tx *Tx) (Policy, error) {
				return SetPolicy(tx, PolicyInput{ID: "prod", RequiredRoles: []Role{RoleMLLead}, Thresholds: []Threshold{{"f1", AtLeast, 0.5}}})
			})
		}, "metric_missing"},
		{"metric below threshold", func(l *ledger) {
			l.approveAll("m1")
			must(l, RoleMLEngineer, func(tx *Tx) (Model, error) {
				return AddEvaluation(tx, EvaluationInput{Model: "m1", Name: "retest", Metrics: []Metric{{"accuracy", 0.85}}})
			})
		}, "metric_threshold"},
		{"metric above maximum", func(l *ledger) {
			l.approveAll("m1")
			must(l, RoleMLEngineer, func(tx *Tx) (Model, error) {
				return AddEvaluation(tx, EvaluationInput{Model: "m1", Name: "retest", Metrics: []Metric{{"latency_ms", 51}}})
			})
		}, "metric_threshold"},
		{"dataset unchecked", func(l *ledger) {
			must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, rootDataset("ds-2")) })
			must(l, RoleMLEngineer, func(tx *Tx) (Model, error) {
				m := modelInput("m1", "ds-lab", "ds-2")
				m.ID = "m2"
				return RegisterModel(tx, m)
			})
			must(l, RoleMLEngineer, func(tx *Tx) (Model, error) {
				return AddEvaluation(tx, EvaluationInput{Model: "m2", Name: "h", Metrics: []Metric{{"accuracy", 0.95}, {"latency_ms", 20}}})
			})
			for _, r := range []Role{RoleMLLead, RoleSecurity, RoleCompliance} {
				l.signOff(r, SubjectModel, "m2", hashOf("m1"), Approve)
			}
		}, "dataset_unchecked"},
		{"dataset check failed", func(l *ledger) {
			l.approveAll("m1")
			must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) {
				return AddQualityChecks(tx, QualityChecksInput{Dataset: "ds-lab", Checks: []QualityCheckInput{{"label_noise", 0.09, 0.05, AtMost}}})
			})
		}, "dataset_check_failed"},
		{"target quarantined", func(l *ledger) {
			l.approveAll("m1")
			must(l, RoleSecurity, func(tx *Tx) (Asset, error) {
				return SetAssetStatus(tx, StatusChange{gpu1, StatusQuarantined, "xid 79"})
			})
		}, "target_quarantined"},
		{"target retired", func(l *ledger) {
			l.approveAll("m1")
			must(l, RoleAdmin, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gpu1, StatusRetired, "eol"}) })
		}, "target_retired"},
		{"everything wrong", func(l *ledger) {
			l.signOff(RoleMLLead, SubjectModel, "m1", hashOf("m1"), Reject)
			must(l, RoleCompliance, func(tx *Tx) (Policy, error) {
				return SetPolicy(tx, PolicyInput{ID: "prod", RequiredRoles: []Role{RoleMLLead, RoleSecurity},
					Thresholds: []Threshold{{"f1", AtLeast, 0.5}, {"accuracy", AtLeast, 0.99}}})
			})
			must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) {
				return AddQualityChecks(tx, QualityChecksInput{Dataset: "ds-lab", Checks: []QualityCheckInput{{"label_noise", 0.09, 0.05, AtMost}}})
			})
			must(l, RoleSecurity, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gpu0, StatusQuarantined, "dbe"}) })
			must(l, RoleAdmin, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gpu1, StatusRetired, "eol"}) })
		}, "attestation_rejected,attestation_missing,metric_missing,metric_threshold,dataset_check_failed,target_quarantined,target_retired"},
	}
	for _, tt := range tests {
		l := mlWorld(t)
		tt.setup(l)
		model := "m1"
		if tt.name == "dataset unchecked" {
			model = "m2"
		}
		d, err := requestDeployment(l, deployment("d1", model, gpu0, gpu1))
		if err != nil {
			t.Errorf("RequestDeployment(%s) = %v, want a recorded decision", tt.name, err)
			continue
		}
		if got := reasonCodes(d.Reasons); got != tt.want || d.Allowed != (tt.want == "") {
			t.Errorf("RequestDeployment(%s) = allowed %v reasons %q, want %q", tt.name, d.Allowed, got, tt.want)
		}
		stored := must(l, RoleAuditor, func(tx *Tx) (Deployment, error) { return GetDeployment(tx, "d1") })
		if stored.Allowed != d.Allowed || reasonCodes(stored.Reasons) != tt.want || stored.ModelHash != hashOf("m1") ||
			stored.PolicyVersion == 0 || stored.Environment.Drivers[0].Version != "550.54.15" {
			t.Errorf("stored decision %+v, want the returned one", stored)
		}
		on := must(l, RoleAuditor, func(tx *Tx) ([]Deployment, error) { return DeploymentsOn(tx, gpu0) })
		if (len(on) == 1) != d.Allowed {
			t.Errorf("DeploymentsOn(gpu0) = %d deployments after allowed=%v, want only allowed ones", len(on), d.Allowed)
		}
	}
}

func TestDeploymentInput(t *testing.T) {
	tests := []struct {
		name string
		edit func(d *DeploymentInput)
		want error
	}{
		{"valid", func(d *DeploymentInput) {}, nil},
		{"reused id", func(d *DeploymentInput) { d.ID = "d0" }, ErrConflict},
		{"bad id", func(d *DeploymentInput) { d.ID = "" }, ErrInvalid},
		{"unknown kind", func(d *DeploymentInput) { d.Kind = "canary" }, ErrInvalid},
		{"rollback replacing nothing", func(d *DeploymentInput) { d.Kind = KindRollback }, ErrInvalid},
		{"deploy replacing", func(d *DeploymentInput) { d.Replaces = "d0" }, ErrInvalid},
		{"unknown model", func(d *DeploymentInput) { d.Model = "m9" }, ErrNotFound},
		{"unknown policy", func(d *DeploymentInput) { d.Policy = "lax" }, ErrNotFound},
		{"unknown target", func(d *DeploymentInput) { d.Targets = []string{"srv-s1-001.gpu9"} }, ErrNotFound},
		{"no targets", func(d *DeploymentInput) { d.Targets = nil }, ErrInvalid},
		{"target twice", func(d *DeploymentInput) { d.Targets = []string{gpu0, gpu0} }, ErrInvalid},
		{"bad binary hash", func(d *DeploymentInput) { d.BinaryHash = "" }, ErrInvalid},
		{"bad container hash", func(d *DeploymentInput) { d.ContainerHash = "sha256:abc" }, ErrInvalid},
		{"bad config hash", func(d *DeploymentInput) { d.ConfigHash = "x" }, ErrInvalid},
		{"no hardware class", func(d *DeploymentInput) { d.Environment.HardwareClass = "" }, ErrInvalid},
		{"no drivers", func(d *DeploymentInput) { d.Environment.Drivers = nil }, ErrInvalid},
		{"dependency without version", func(d *DeploymentInput) { d.Environment.Dependencies = []ToolVersion{{"torch", ""}} }, ErrInvalid},
	}
	for _, tt := range tests {
		l := mlWorld(t)
		l.approveAll("m1")
		must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, deployment("d0", "m1", gpu0)) })
		before := l.st.dump()
		in := deployment("d1", "m1", gpu0)
		tt.edit(&in)
		d, err := requestDeployment(l, in)
		wantErr(t, "RequestDeployment("+tt.name+")", err, tt.want)
		switch {
		case err != nil && l.st.dump() != before:
			t.Errorf("RequestDeployment(%s) failed but changed the state", tt.name)
		case err == nil && (d.Kind != KindDeploy || !d.Allowed):
			t.Errorf("RequestDeployment(%s) = kind %q allowed %v, want deploy allowed", tt.name, d.Kind, d.Allowed)
		}
	}
}

func TestRollback(t *testing.T) {
	setup := func() *ledger {
		l := mlWorld(t)
		l.approveAll("m1")
		must(l, RoleMLEngineer, func(tx *Tx) (Model, error) { return RegisterModel(tx, modelInput("m2", "ds-lab")) })
		must(l, RoleMLEngineer, func(tx *Tx) (Model, error) {
			return AddEvaluation(tx, EvaluationInput{Model: "m2", Name: "h", Metrics: []Metric{{"accuracy", 0.95}, {"latency_ms", 30}}})
		})
		l.approveAll("m2")
		for _, d := range []DeploymentInput{deployment("d1", "m1", gpu0), deployment("d2", "m2", gpu0)} {
			must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, d) })
		}
		must(l, RoleCompliance, func(tx *Tx) (Policy, error) {
			return SetPolicy(tx, PolicyInput{ID: "strict", RequiredRoles: []Role{RoleMLLead}, Thresholds: []Threshold{{"f1", AtLeast, 0.9}}})
		})
		must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) {
			d := deployment("d-refused", "m2", gpu1)
			d.Policy = "strict"
			return RequestDeployment(tx, d)
		})
		return l
	}
	rollback := func(id, model, replaces string, targets ...string) DeploymentInput {
		d := deployment(id, model, targets...)
		d.Kind, d.Replaces = KindRollback, replaces
		return d
	}
	l := setup()
	rb, err := requestDeployment(l, rollback("rb1", "m1", "d2", gpu0))
	wantErr(t, "RequestDeployment(rollback)", err, nil)
	if !rb.Allowed || rb.Kind != KindRollback || rb.Replaces != "d2" {
		t.Errorf("rollback = %+v, want an allowed rollback replacing d2", rb)
	}
	on := must(l, RoleAuditor, func(tx *Tx) ([]Deployment, error) { return DeploymentsOn(tx, gpu0) })
	var ran []string
	for _, d := range on {
		ran = append(ran, d.ID+":"+d.Model)
	}
	if got := strings.Join(ran, ","); got != "d1:m1,d2:m2,rb1:m1" {
		t.Errorf("DeploymentsOn(gpu0) = %s, want d1:m1,d2:m2,rb1:m1", got)
	}
	for _, tt := range []struct {
		name string
		in   DeploymentInput
		want error
	}{
		{"replacing an unknown deployment", rollback("rb2", "m1", "d9", gpu0), ErrNotFound},
		{"replacing a refused deployment", rollback("rb2", "m1", "d-refused", gpu1), ErrConflict},
		{"to the same model", rollback("rb2", "m2", "d2", gpu0), ErrInvalid},
		{"on other targets", rollback("rb2", "m1", "d2", gpu1), ErrInvalid},
	} {
		_, err := requestDeployment(l, tt.in)
		wantErr(t, "RequestDeployment(rollback "+tt.name+")", err, tt.want)
	}
}

func TestSetPolicy(t *testing.T) {
	l := mlWorld(t)
	p := must(l, RoleAdmin, func(tx *Tx) (Policy, error) {
		return SetPolicy(tx, PolicyInput{ID: "prod", RequiredRoles: []Role{RoleSecurity}})
	})
	if p.Version != 2 {
		t.Errorf("SetPolicy(prod again) version = %d, want 2", p.Version)
	}
	got := must(l, RoleAuditor, func(tx *Tx) (Policy, error) { return GetPolicy(tx, "prod") })
	if got.Version != 2 || len(got.RequiredRoles) != 1 {
		t.Errorf("GetPolicy(prod) = %+v, want version 2 requiring security", got)
	}
	for _, tt := range []struct {
		name string
		in   PolicyInput
		want error
	}{
		{"no sign-offs", PolicyInput{ID: "p"}, ErrInvalid},
		{"non-sign-off role", PolicyInput{ID: "p", RequiredRoles: []Role{RoleAdmin}}, ErrInvalid},
		{"role twice", PolicyInput{ID: "p", RequiredRoles: []Role{RoleSecurity, RoleSecurity}}, ErrInvalid},
		{"bad id", PolicyInput{ID: "p/1", RequiredRoles: []Role{RoleSecurity}}, ErrInvalid},
		{"bad comparison", PolicyInput{ID: "p", RequiredRoles: []Role{RoleSecurity}, Thresholds: []Threshold{{"a", "gt", 1}}}, ErrInvalid},
		{"NaN threshold", PolicyInput{ID: "p", RequiredRoles: []Role{RoleSecurity}, Thresholds: []Threshold{{"a", AtLeast, math.NaN()}}}, ErrInvalid},
		{"metric twice", PolicyInput{ID: "p", RequiredRoles: []Role{RoleSecurity}, Thresholds: []Threshold{{"a", AtLeast, 1}, {"a", AtMost, 2}}}, ErrInvalid},
		{"unnamed metric", PolicyInput{ID: "p", RequiredRoles: []Role{RoleSecurity}, Thresholds: []Threshold{{"", AtLeast, 1}}}, ErrInvalid},
	} {
		_, err := do(l, RoleCompliance, func(tx *Tx) (Policy, error) { return SetPolicy(tx, tt.in) })
		wantErr(t, "SetPolicy("+tt.name+")", err, tt.want)
	}
}

// TestGateTrainingHardware: a policy can refuse a model whose training
// hardware had evidence of chosen kinds within the run (by revision, or by
// time), and one trained on an asset quarantined now; evidence outside the
// run, or of kinds the policy does not name, does not count.
func TestGateTrainingHardware(t *testing.T) {
	setup := func(t *testing.T, refuse []EvidenceKind, quarantined bool) *ledger {
		l := mlWorld(t)
		l.approveAll("m1")
		must(l, RoleCompliance, func(tx *Tx) (Policy, error) {
			return SetPolicy(tx, PolicyInput{ID: "prod", RequiredRoles: []Role{RoleMLLead}, RefuseTrainingEvidence: refuse, RefuseQuarantinedTraining: quarantined})
		})
		return l
	}
	record := func(l *ledger, seq uint64, at time.Time, kind EvidenceKind, body string, rev uint64) {
		env := seal(t, gatewayKey(), gw, seq, at, "telemetry", body)
		must(l, RoleService, func(tx *Tx) (Evidence, error) {
			return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: kind, Envelope: env, Revision: rev})
		})
	}
	// m1 trained on gpu0 revisions 1..5 (and gpu1 revision 1) from t0-2h to t0-1h.
	for _, tt := range []struct {
		name        string
		refuse      []EvidenceKind
		quarantined bool
		prepare     func(l *ledger)
		want        string
	}{
		{"xid within the run", []EvidenceKind{EvidenceXID, EvidenceECCDBE}, false, func(l *ledger) {
			record(l, 10, t0.Add(-100*time.Minute), EvidenceXID, telemetry(gpu0, 0, 1, false), 3)
		}, "training_evidence"},
		{"ecc dbe by time, no revision", []EvidenceKind{EvidenceECCDBE}, false, func(l *ledger) {
			record(l, 11, t0.Add(-90*time.Minute), EvidenceECCDBE, telemetry(gpu0, 2, 0, false), 0)
		}, "training_evidence"},
		{"xid after the run", []EvidenceKind{EvidenceXID}, false, func(l *ledger) {
			record(l, 12, t0.Add(-30*time.Minute), EvidenceXID, telemetry(gpu0, 0, 2, false), 9)
		}, ""},
		{"a kind the policy does not name", []EvidenceKind{EvidenceECCDBE}, false, func(l *ledger) {
			record(l, 13, t0.Add(-100*time.Minute), EvidenceXID, telemetry(gpu0, 0, 3, false), 3)
		}, ""},
		{"training asset quarantined now", nil, true, func(l *ledger) {
			must(l, RoleSecurity, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gpu1, StatusQuarantined, "swap"}) })
		}, "training_quarantined"},
		{"quarantine not refused by the policy", nil, false, func(l *ledger) {
			must(l, RoleSecurity, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gpu1, StatusQuarantined, "swap"}) })
		}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := setup(t, tt.refuse, tt.quarantined)
			tt.prepare(l)
			// Deploy on a target that is not the training hardware, so only the training rules speak.
			l.registerAsset("srv-s2-001.gpu0", "gpu", "")
			d, err := requestDeployment(l, deployment("d1", "m1", "srv-s2-001.gpu0"))
			if err != nil {
				t.Fatal(err)
			}
			if got := reasonCodes(d.Reasons); got != tt.want || d.Allowed != (tt.want == "") {
				t.Errorf("RequestDeployment = allowed %v reasons %q (%+v), want %q", d.Allowed, got, d.Reasons, tt.want)
			}
		})
	}
	l := newLedger(t)
	_, err := do(l, RoleCompliance, func(tx *Tx) (Policy, error) {
		return SetPolicy(tx, PolicyInput{ID: "p", RequiredRoles: []Role{RoleMLLead}, RefuseTrainingEvidence: []EvidenceKind{"meltdown"}})
	})
	wantErr(t, "SetPolicy(unknown evidence kind)", err, ErrInvalid)
}

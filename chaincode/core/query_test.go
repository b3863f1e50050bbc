package core

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestModelLineage(t *testing.T) {
	l := mlWorld(t)
	// Evidence inside m1's run on gpu0 (revision 3 of 1..5) and outside it (revision 9).
	for _, ev := range []struct {
		seq uint64
		rev uint64
	}{{300, 3}, {301, 9}} {
		env := seal(t, gatewayKey(), gw, ev.seq, t0.Add(-90*time.Minute), "telemetry", telemetry(gpu0, 0, 1, false))
		must(l, RoleService, func(tx *Tx) (Evidence, error) {
			return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: EvidenceXID, Envelope: env, Revision: ev.rev})
		})
	}
	lin := must(l, RoleAuditor, func(tx *Tx) (Lineage, error) { return ModelLineage(tx, "m1") })
	var ds []string
	for _, d := range lin.Datasets {
		ds = append(ds, d.ID)
	}
	if got := strings.Join(ds, ","); got != "ds-lab,ds-raw" {
		t.Errorf("ModelLineage(m1) datasets = %s, want ds-lab,ds-raw (the parent included)", got)
	}
	if len(lin.Hardware) != 2 || lin.Hardware[0].Asset.ID != gpu0 || lin.Hardware[1].Use.Asset != gpu1 {
		t.Fatalf("ModelLineage(m1) hardware = %+v, want gpu0, gpu1", lin.Hardware)
	}
	if ev := lin.Hardware[0].Evidence; len(ev) != 1 || ev[0].Revision != 3 {
		t.Errorf("ModelLineage(m1) gpu0 evidence = %+v, want only the revision-3 record", ev)
	}
	if lin.Model.Training.CodeRef == "" || lin.Hardware[0].Use.RevisionEnd != 5 {
		t.Errorf("ModelLineage(m1) model = %+v", lin.Model)
	}
	_, err := do(l, RoleAuditor, func(tx *Tx) (Lineage, error) { return ModelLineage(tx, "m9") })
	wantErr(t, "ModelLineage(unknown)", err, ErrNotFound)
}

func TestModelsTrainedOn(t *testing.T) {
	l := mlWorld(t)
	in := modelInput("m0", "ds-raw")
	in.Training.Hardware = []HardwareUse{{gpu1, 2, 2}}
	in.Training.Federated = []FedRound{round(1, node2, gpu0)}
	must(l, RoleMLEngineer, func(tx *Tx) (Model, error) { return RegisterModel(tx, in) })
	for _, tt := range []struct{ asset, want string }{
		{gpu0, "m0,m1"}, {gpu1, "m0,m1"}, {node2, "m0"}, {server, ""},
	} {
		ms := must(l, RoleAuditor, func(tx *Tx) ([]Model, error) { return ModelsTrainedOn(tx, tt.asset) })
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		if got := strings.Join(ids, ","); got != tt.want {
			t.Errorf("ModelsTrainedOn(%s) = %q, want %q", tt.asset, got, tt.want)
		}
	}
}

// TestModelsExposedTo answers "which models ran on this GPU while it had
// XID or double-bit ECC events?" through training runs and deployments.
func TestModelsExposedTo(t *testing.T) {
	l := mlWorld(t)
	l.approveAll("m1")
	key := gatewayKey()
	record := func(seq uint64, at time.Time, kind EvidenceKind, body string, rev uint64) {
		env := seal(t, key, gw, seq, at, "telemetry", body)
		must(l, RoleService, func(tx *Tx) (Evidence, error) {
			return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: kind, Envelope: env, Revision: rev})
		})
	}
	// m1 trained from t0-2h to t0-1h on gpu0 revisions 1..5.
	record(10, t0.Add(-100*time.Minute), EvidenceXID, telemetry(gpu0, 0, 1, false), 0)     // in the run by time
	record(11, t0.Add(-30*time.Minute), EvidenceECCDBE, telemetry(gpu0, 2, 0, false), 4)   // in the run by revision
	record(12, t0.Add(-100*time.Minute), EvidenceECCDBE, telemetry(gpu0, 3, 0, false), 7)  // revision outside the run
	record(13, t0.Add(-100*time.Minute), EvidenceRowRemap, telemetry(gpu0, 0, 0, true), 0) // not asked for by default

	d1 := must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, deployment("d1", "m1", gpu0)) })
	record(14, d1.Stamp.Time.Add(time.Second), EvidenceXID, telemetry(gpu0, 0, 5, false), 20) // while d1 ran
	l.now = l.now.Add(time.Hour)
	must(l, RoleMLEngineer, func(tx *Tx) (Model, error) { return RegisterModel(tx, modelInput("m2", "ds-lab")) })
	must(l, RoleMLEngineer, func(tx *Tx) (Model, error) {
		return AddEvaluation(tx, EvaluationInput{Model: "m2", Name: "h", Metrics: []Metric{{"accuracy", 0.95}, {"latency_ms", 30}}})
	})
	l.approveAll("m2")
	d2 := must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, deployment("d2", "m2", gpu0)) })
	record(15, d2.Stamp.Time.Add(time.Minute), EvidenceECCDBE, telemetry(gpu0, 4, 0, false), 21) // while d2 ran

	summary := func(xs []Exposure) string {
		var parts []string
		for _, x := range xs {
			var seqs []string
			for _, e := range x.Evidence {
				seqs = append(seqs, string(e.Kind)+"@"+strconv.FormatUint(e.Seq, 10))
			}
			parts = append(parts, x.Via+":"+x.Model+x.Deployment+"["+strings.Join(seqs, " ")+"]")
		}
		return strings.Join(parts, "; ")
	}
	for _, tt := range []struct {
		kinds []EvidenceKind
		want  string
	}{
		{nil, "training:m1[xid@10 ecc_dbe@11]; training:m2[xid@10 ecc_dbe@11]; deployment:m1d1[xid@14]; deployment:m2d2[ecc_dbe@15]"},
		{[]EvidenceKind{EvidenceRowRemap}, "training:m1[row_remap@13]; training:m2[row_remap@13]"},
		{[]EvidenceKind{EvidenceSwap}, ""},
	} {
		xs := must(l, RoleAuditor, func(tx *Tx) ([]Exposure, error) { return ModelsExposedTo(tx, gpu0, tt.kinds) })
		if got := summary(xs); got != tt.want {
			t.Errorf("ModelsExposedTo(gpu0, %v) =\n%s\nwant\n%s", tt.kinds, got, tt.want)
		}
	}
	xs := must(l, RoleAuditor, func(tx *Tx) ([]Exposure, error) { return ModelsExposedTo(tx, gpu1, nil) })
	if len(xs) != 0 {
		t.Errorf("ModelsExposedTo(gpu1) = %s, want none (no evidence on gpu1)", summary(xs))
	}
	_, err := do(l, RoleAuditor, func(tx *Tx) ([]Exposure, error) { return ModelsExposedTo(tx, gpu0, []EvidenceKind{"bad"}) })
	wantErr(t, "ModelsExposedTo(bad kind)", err, ErrInvalid)
}

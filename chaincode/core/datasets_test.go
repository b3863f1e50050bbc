package core

import (
	"math"
	"strconv"
	"testing"
	"time"
)

func TestRegisterDataset(t *testing.T) {
	tests := []struct {
		name string
		in   func() DatasetInput
		want error
	}{
		{"root", func() DatasetInput { return rootDataset("ds-new") }, nil},
		{"derived with labeling", func() DatasetInput { return derivedDataset("ds-new", "ds-raw") }, nil},
		{"derived from two", func() DatasetInput { return derivedDataset("ds-new", "ds-raw", "ds-lab") }, nil},
		{"registered twice", func() DatasetInput { return rootDataset("ds-raw") }, ErrConflict},
		{"bad id", func() DatasetInput { return rootDataset("ds new") }, ErrInvalid},
		{"bad content hash", func() DatasetInput { d := rootDataset("ds-new"); d.ContentHash = "x"; return d }, ErrInvalid},
		{"root without sources", func() DatasetInput { d := rootDataset("ds-new"); d.Sources = nil; return d }, ErrInvalid},
		{"unknown source kind", func() DatasetInput { d := rootDataset("ds-new"); d.Sources = []Source{{"person", "x"}}; return d }, ErrInvalid},
		{"unregistered source asset", func() DatasetInput {
			d := rootDataset("ds-new")
			d.Sources = []Source{{SourceAsset, "srv-s9-001.gpu0"}}
			return d
		}, ErrNotFound},
		{"bad source asset id", func() DatasetInput { d := rootDataset("ds-new"); d.Sources = []Source{{SourceAsset, "a b"}}; return d }, ErrInvalid},
		{"empty source system", func() DatasetInput { d := rootDataset("ds-new"); d.Sources = []Source{{SourceSystem, ""}}; return d }, ErrInvalid},
		{"no consent policy", func() DatasetInput { d := rootDataset("ds-new"); d.Consent.PolicyRef = ""; return d }, ErrInvalid},
		{"no licence", func() DatasetInput { d := rootDataset("ds-new"); d.Consent.Licence = ""; return d }, ErrInvalid},
		{"no use scope", func() DatasetInput { d := rootDataset("ds-new"); d.Consent.UseScope = nil; return d }, ErrInvalid},
		{"use listed twice", func() DatasetInput {
			d := rootDataset("ds-new")
			d.Consent.UseScope = []string{"training", "training"}
			return d
		}, ErrInvalid},
		{"no retention", func() DatasetInput { d := rootDataset("ds-new"); d.Consent.RetentionDays = 0; return d }, ErrInvalid},
		{"unregistered parent", func() DatasetInput { return derivedDataset("ds-new", "ds-ghost") }, ErrNotFound},
		{"no parents", func() DatasetInput { return derivedDataset("ds-new") }, ErrInvalid},
		{"parent twice", func() DatasetInput { return derivedDataset("ds-new", "ds-raw", "ds-raw") }, ErrInvalid},
		{"own parent", func() DatasetInput { return derivedDataset("ds-new", "ds-new") }, ErrInvalid},
		{"output hash not the content", func() DatasetInput {
			d := derivedDataset("ds-new", "ds-raw")
			d.Transform.OutputHash = hashOf("else")
			return d
		}, ErrInvalid},
		{"bad step", func() DatasetInput { d := derivedDataset("ds-new", "ds-raw"); d.Transform.Step = ""; return d }, ErrInvalid},
		{"tool without version", func() DatasetInput {
			d := derivedDataset("ds-new", "ds-raw")
			d.Transform.Tools = []ToolVersion{{"cvat", ""}}
			return d
		}, ErrInvalid},
		{"wider use than parent", func() DatasetInput {
			d := derivedDataset("ds-new", "ds-lab")
			d.Consent.UseScope = []string{UseTraining, "evaluation"}
			return d
		}, ErrInvalid},
		{"longer retention than parent", func() DatasetInput {
			d := derivedDataset("ds-new", "ds-raw")
			d.Consent.RetentionDays = 366
			return d
		}, ErrInvalid},
	}
	for _, tt := range tests {
		l := mlWorld(t)
		in := tt.in()
		got, err := do(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, in) })
		wantErr(t, "RegisterDataset("+tt.name+")", err, tt.want)
		if err == nil {
			stored := must(l, RoleAuditor, func(tx *Tx) (Dataset, error) { return GetDataset(tx, in.ID) })
			if stored.ContentHash != in.ContentHash || stored.Registered.Role != RoleMLEngineer || got.ID != in.ID {
				t.Errorf("RegisterDataset(%s) stored %+v", tt.name, stored)
			}
		}
	}
}

func TestLabelingRules(t *testing.T) {
	tests := []struct {
		name string
		edit func(l *Labeling)
		want error
	}{
		{"valid", func(l *Labeling) {}, nil},
		{"no tasks", func(l *Labeling) { l.Tasks = nil }, ErrInvalid},
		{"completed before assigned", func(l *Labeling) { l.Tasks[0].CompletedAt = l.Tasks[0].AssignedAt.Add(-time.Second) }, ErrInvalid},
		{"never assigned", func(l *Labeling) { l.Tasks[0].AssignedAt = time.Time{} }, ErrInvalid},
		{"completed in the future", func(l *Labeling) { l.Tasks[1].CompletedAt = t0.Add(24 * time.Hour) }, ErrInvalid},
		{"task twice", func(l *Labeling) { l.Tasks[1].ID = l.Tasks[0].ID }, ErrInvalid},
		{"task without annotator", func(l *Labeling) { l.Tasks[1].Annotator = "" }, ErrInvalid},
		{"annotator without role", func(l *Labeling) { l.Annotators = l.Annotators[:1] }, ErrInvalid},
		{"role self-attested", func(l *Labeling) { l.Annotators[0].AttestedBy = l.Annotators[0].Annotator }, ErrInvalid},
		{"role empty", func(l *Labeling) { l.Annotators[0].Role = "" }, ErrInvalid},
		{"agreement above 1", func(l *Labeling) { l.Agreement.Value = 1.5 }, ErrInvalid},
		{"agreement NaN", func(l *Labeling) { l.Agreement.Value = math.NaN() }, ErrInvalid},
		{"agreement unnamed", func(l *Labeling) { l.Agreement.Metric = "" }, ErrInvalid},
		{"qa passed more than sampled", func(l *Labeling) { l.QA.Passed = 51 }, ErrInvalid},
		{"qa nothing sampled", func(l *Labeling) { l.QA.Sampled, l.QA.Passed = 0, 0 }, ErrInvalid},
		{"qa by an annotator", func(l *Labeling) { l.QA.Reviewer = "ann-a" }, ErrInvalid},
		{"qa without reviewer", func(l *Labeling) { l.QA.Reviewer = "" }, ErrInvalid},
	}
	for _, tt := range tests {
		l := mlWorld(t)
		in := derivedDataset("ds-new", "ds-raw")
		tt.edit(in.Transform.Labeling)
		_, err := do(l, RoleMLLead, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, in) })
		wantErr(t, "RegisterDataset(labeling "+tt.name+")", err, tt.want)
	}
}

func TestQualityChecks(t *testing.T) {
	l := mlWorld(t)
	d := must(l, RoleCompliance, func(tx *Tx) (Dataset, error) {
		return AddQualityChecks(tx, QualityChecksInput{Dataset: "ds-raw", Checks: []QualityCheckInput{
			{"coverage", 0.97, 0.95, AtLeast}, {"pii_rate", 0.002, 0.001, AtMost}, {"edge", 0.95, 0.95, AtLeast},
		}})
	})
	want := map[string]bool{"label_noise": true, "coverage": true, "pii_rate": false, "edge": true}
	for _, c := range d.ChecksInForce() {
		if c.Pass != want[c.Name] {
			t.Errorf("check %s (%v %s %v) pass = %v, want %v", c.Name, c.Value, c.Compare, c.Threshold, c.Pass, want[c.Name])
		}
	}
	// A later check of the same name supersedes the earlier one.
	d = must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) {
		return AddQualityChecks(tx, QualityChecksInput{Dataset: "ds-raw", Checks: []QualityCheckInput{{"pii_rate", 0.0005, 0.001, AtMost}}})
	})
	inForce := d.ChecksInForce()
	if len(d.Checks) != 5 || len(inForce) != 4 || !inForce[2].Pass || inForce[2].Name != "pii_rate" {
		t.Errorf("after re-check: %d checks, in force %+v, want 5 and pii_rate passing third", len(d.Checks), inForce)
	}
	for _, tt := range []struct {
		name string
		in   QualityChecksInput
		want error
	}{
		{"no checks", QualityChecksInput{Dataset: "ds-raw"}, ErrInvalid},
		{"unknown dataset", QualityChecksInput{Dataset: "ds-x", Checks: []QualityCheckInput{{"a", 1, 1, AtLeast}}}, ErrNotFound},
		{"bad dataset id", QualityChecksInput{Dataset: "", Checks: []QualityCheckInput{{"a", 1, 1, AtLeast}}}, ErrInvalid},
		{"bad name", QualityChecksInput{Dataset: "ds-raw", Checks: []QualityCheckInput{{"", 1, 1, AtLeast}}}, ErrInvalid},
		{"bad comparison", QualityChecksInput{Dataset: "ds-raw", Checks: []QualityCheckInput{{"a", 1, 1, ">"}}}, ErrInvalid},
		{"NaN value", QualityChecksInput{Dataset: "ds-raw", Checks: []QualityCheckInput{{"a", math.NaN(), 1, AtLeast}}}, ErrInvalid},
		{"infinite threshold", QualityChecksInput{Dataset: "ds-raw", Checks: []QualityCheckInput{{"a", 1, math.Inf(1), AtMost}}}, ErrInvalid},
	} {
		_, err := do(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return AddQualityChecks(tx, tt.in) })
		wantErr(t, "AddQualityChecks("+tt.name+")", err, tt.want)
	}
}

func TestListBounds(t *testing.T) {
	l := mlWorld(t)
	many := make([]QualityCheckInput, maxList+1)
	for i := range many {
		many[i] = QualityCheckInput{Name: "c", Value: 1, Threshold: 1, Compare: AtLeast}
	}
	_, err := do(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) {
		return AddQualityChecks(tx, QualityChecksInput{Dataset: "ds-raw", Checks: many})
	})
	wantErr(t, "AddQualityChecks(too many)", err, ErrInvalid)
	_, err = do(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) {
		return AddQualityChecks(tx, QualityChecksInput{Dataset: "ds-raw", Checks: many[:maxList]})
	})
	wantErr(t, "AddQualityChecks(the rest of the room, one already there)", err, ErrInvalid)
	in := rootDataset("ds-big")
	for i := 0; i <= maxList; i++ {
		in.Consent.UseScope = append(in.Consent.UseScope, "use-"+strconv.Itoa(i))
	}
	_, err = do(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, in) })
	wantErr(t, "RegisterDataset(too many uses)", err, ErrInvalid)
	in.Consent.UseScope = in.Consent.UseScope[:maxList-2]
	_, err = do(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, in) })
	wantErr(t, "RegisterDataset(many distinct uses)", err, nil)
}

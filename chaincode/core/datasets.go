package core

import (
	"fmt"
	"math"
	"slices"
)

// UseTraining is the consent use scope a dataset needs before a model may be
// trained on it.
const UseTraining = "training"

func checkTools(what string, tools []ToolVersion, required bool) error {
	if required && len(tools) == 0 {
		return fmt.Errorf("%s: at least one is required: %w", what, ErrInvalid)
	}
	if err := checkLen(what, len(tools)); err != nil {
		return err
	}
	for _, t := range tools {
		if err := checkText(what+" name", t.Name, 128, true); err != nil {
			return err
		}
		if err := checkText(what+" "+t.Name+" version", t.Version, 128, true); err != nil {
			return err
		}
	}
	return nil
}

func checkFinite(what string, v ...float64) error {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%s is not a finite number: %w", what, ErrInvalid)
		}
	}
	return nil
}

func checkConsent(c *Consent) error {
	if err := checkText("consent policy ref", c.PolicyRef, 256, true); err != nil {
		return err
	}
	if err := checkText("licence", c.Licence, 256, true); err != nil {
		return err
	}
	if len(c.UseScope) == 0 {
		return fmt.Errorf("consent needs a use scope: %w", ErrInvalid)
	}
	if err := checkDistinctIDs("use scope", c.UseScope); err != nil {
		return err
	}
	if c.RetentionDays <= 0 {
		return fmt.Errorf("retention of %d days: %w", c.RetentionDays, ErrInvalid)
	}
	return nil
}

// checkDistinctIDs checks that ids are valid ids with no repeats.
func checkDistinctIDs(what string, ids []string) error {
	if err := checkLen(what, len(ids)); err != nil {
		return err
	}
	for _, id := range ids {
		if err := checkID(what, id); err != nil {
			return err
		}
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return fmt.Errorf("%s %q listed twice: %w", what, sorted[i], ErrInvalid)
		}
	}
	return nil
}

// maxList bounds every list in a record, so no call can write an unbounded
// record.
const maxList = 4096

func checkLen(what string, n int) error {
	if n > maxList {
		return fmt.Errorf("%d %s entries, more than %d: %w", n, what, maxList, ErrInvalid)
	}
	return nil
}

func checkSources(st State, sources []Source, required bool) error {
	if required && len(sources) == 0 {
		return fmt.Errorf("a dataset without parents needs a source: %w", ErrInvalid)
	}
	if err := checkLen("source", len(sources)); err != nil {
		return err
	}
	for _, s := range sources {
		switch s.Kind {
		case SourceAsset:
			if err := checkID("source asset", s.Ref); err != nil {
				return err
			}
			var a Asset
			if err := mustLoad(st, pfxAsset+s.Ref, "source asset", s.Ref, &a); err != nil {
				return err
			}
		case SourceSystem:
			if err := checkText("source system", s.Ref, 256, true); err != nil {
				return err
			}
		default:
			return fmt.Errorf("source kind %q: %w", s.Kind, ErrInvalid)
		}
	}
	return nil
}

// checkLabeling checks a labeling step: every task assigned before it was
// completed and completed no later than the transaction; every annotator
// with a role attested by someone else; agreement in [-1, 1]; a QA sample
// reviewed by someone who did not annotate.
func checkLabeling(tx *Tx, l *Labeling) error {
	if len(l.Tasks) == 0 {
		return fmt.Errorf("labeling without tasks: %w", ErrInvalid)
	}
	var ids, annotators []string
	for _, t := range l.Tasks {
		ids = append(ids, t.ID)
		if err := checkText("task annotator", t.Annotator, 128, true); err != nil {
			return err
		}
		switch {
		case t.AssignedAt.IsZero() || t.CompletedAt.Before(t.AssignedAt):
			return fmt.Errorf("task %q completed %s before it was assigned %s: %w", t.ID, t.CompletedAt, t.AssignedAt, ErrInvalid)
		case t.CompletedAt.After(tx.Time):
			return fmt.Errorf("task %q completed after this transaction: %w", t.ID, ErrInvalid)
		}
		if !slices.Contains(annotators, t.Annotator) {
			annotators = append(annotators, t.Annotator)
		}
	}
	if err := checkDistinctIDs("task", ids); err != nil {
		return err
	}
	if err := checkLen("annotator role", len(l.Annotators)); err != nil {
		return err
	}
	for _, a := range l.Annotators {
		if err := checkText("annotator role", a.Role, 128, true); err != nil {
			return err
		}
		if a.AttestedBy == "" || a.AttestedBy == a.Annotator {
			return fmt.Errorf("annotator %q role must be attested by someone else: %w", a.Annotator, ErrInvalid)
		}
	}
	for _, name := range annotators {
		if !slices.ContainsFunc(l.Annotators, func(a AnnotatorRole) bool { return a.Annotator == name }) {
			return fmt.Errorf("annotator %q has no role attestation: %w", name, ErrInvalid)
		}
	}
	if err := checkText("agreement metric", l.Agreement.Metric, 64, true); err != nil {
		return err
	}
	if err := checkFinite("agreement", l.Agreement.Value); err != nil || l.Agreement.Value < -1 || l.Agreement.Value > 1 {
		return fmt.Errorf("agreement %v outside [-1, 1]: %w", l.Agreement.Value, ErrInvalid)
	}
	switch q := l.QA; {
	case q.Sampled <= 0 || q.Passed < 0 || q.Passed > q.Sampled:
		return fmt.Errorf("qa sample %d passed %d: %w", q.Sampled, q.Passed, ErrInvalid)
	case q.Reviewer == "" || slices.Contains(annotators, q.Reviewer):
		return fmt.Errorf("qa reviewer %q must be named and not an annotator: %w", q.Reviewer, ErrInvalid)
	}
	return nil
}

// checkTransform checks a derivation against its parents: they exist, and
// the derived consent is no wider (use scope a subset of every parent's,
// retention no longer).
func checkTransform(tx *Tx, in *DatasetInput) error {
	t := in.Transform
	if err := checkID("step", t.Step); err != nil {
		return err
	}
	if len(t.Parents) == 0 {
		return fmt.Errorf("transformation without parents: %w", ErrInvalid)
	}
	if err := checkDistinctIDs("parent dataset", t.Parents); err != nil {
		return err
	}
	if t.OutputHash != in.ContentHash {
		return fmt.Errorf("transformation output %s is not the content hash %s: %w", t.OutputHash, in.ContentHash, ErrInvalid)
	}
	if err := checkText("code ref", t.CodeRef, 512, false); err != nil {
		return err
	}
	if err := checkTools("tool", t.Tools, false); err != nil {
		return err
	}
	if t.Labeling != nil {
		if err := checkLabeling(tx, t.Labeling); err != nil {
			return err
		}
	}
	for _, p := range t.Parents {
		if p == in.ID {
			return fmt.Errorf("dataset %q is its own parent: %w", p, ErrInvalid)
		}
		var parent Dataset
		if err := mustLoad(tx.State, pfxDataset+p, "parent dataset", p, &parent); err != nil {
			return err
		}
		for _, use := range in.Consent.UseScope {
			if !slices.Contains(parent.Consent.UseScope, use) {
				return fmt.Errorf("use %q is outside parent %s's consent: %w", use, p, ErrInvalid)
			}
		}
		if in.Consent.RetentionDays > parent.Consent.RetentionDays {
			return fmt.Errorf("retention %d days exceeds parent %s's %d: %w", in.Consent.RetentionDays, p, parent.Consent.RetentionDays, ErrInvalid)
		}
	}
	return nil
}

// RegisterDataset records a dataset. Roles: ml_engineer, ml_lead, service.
// A root dataset needs a source; a derived one a transformation whose
// parents are registered, whose output hash is the content hash and whose
// consent is no wider than its parents'. Source assets must be registered.
func RegisterDataset(tx *Tx, in DatasetInput) (Dataset, error) {
	if err := begin(tx, "register dataset", rolesDataset); err != nil {
		return Dataset{}, err
	}
	if err := checkID("dataset", in.ID); err != nil {
		return Dataset{}, err
	}
	if err := checkText("dataset name", in.Name, 256, false); err != nil {
		return Dataset{}, err
	}
	if err := checkHash("content hash", in.ContentHash); err != nil {
		return Dataset{}, err
	}
	if err := checkConsent(&in.Consent); err != nil {
		return Dataset{}, err
	}
	if err := checkSources(tx.State, in.Sources, in.Transform == nil); err != nil {
		return Dataset{}, err
	}
	if in.Transform != nil {
		if err := checkTransform(tx, &in); err != nil {
			return Dataset{}, err
		}
	}
	var old Dataset
	if found, err := load(tx.State, pfxDataset+in.ID, &old); err != nil {
		return Dataset{}, err
	} else if found {
		return Dataset{}, fmt.Errorf("dataset %q already registered: %w", in.ID, ErrConflict)
	}
	d := Dataset{DatasetInput: in, Registered: tx.stamp()}
	return d, store(tx.State, pfxDataset+d.ID, d)
}

// Valid reports whether c is a known comparison.
func (c Comparison) Valid() bool { return c == AtLeast || c == AtMost }

// Passes reports whether value is on the passing side of threshold.
func (c Comparison) Passes(value, threshold float64) bool {
	if c == AtMost {
		return value <= threshold
	}
	return value >= threshold
}

// AddQualityChecks records quality checks on a dataset; the core decides
// each one's Pass. Roles: ml_engineer, ml_lead, compliance, service.
func AddQualityChecks(tx *Tx, in QualityChecksInput) (Dataset, error) {
	id, checks := in.Dataset, in.Checks
	if err := begin(tx, "add quality checks", rolesQualityCheck); err != nil {
		return Dataset{}, err
	}
	if err := checkID("dataset", id); err != nil {
		return Dataset{}, err
	}
	if len(checks) == 0 {
		return Dataset{}, fmt.Errorf("no quality checks: %w", ErrInvalid)
	}
	if err := checkLen("quality check", len(checks)); err != nil {
		return Dataset{}, err
	}
	var d Dataset
	if err := mustLoad(tx.State, pfxDataset+id, "dataset", id, &d); err != nil {
		return Dataset{}, err
	}
	if err := checkLen("quality check on dataset "+id, len(d.Checks)+len(checks)); err != nil {
		return Dataset{}, err
	}
	for _, c := range checks {
		if err := checkID("quality check", c.Name); err != nil {
			return Dataset{}, err
		}
		if !c.Compare.Valid() {
			return Dataset{}, fmt.Errorf("check %s comparison %q: %w", c.Name, c.Compare, ErrInvalid)
		}
		if err := checkFinite("check "+c.Name, c.Value, c.Threshold); err != nil {
			return Dataset{}, err
		}
		d.Checks = append(d.Checks, QualityCheck{Name: c.Name, Value: c.Value, Threshold: c.Threshold,
			Compare: c.Compare, Pass: c.Compare.Passes(c.Value, c.Threshold), Stamp: tx.stamp()})
	}
	return d, store(tx.State, pfxDataset+id, d)
}

// ChecksInForce returns the latest check of each name, in first-seen order.
func (d *Dataset) ChecksInForce() []QualityCheck {
	var out []QualityCheck
	for _, c := range d.Checks {
		if i := slices.IndexFunc(out, func(o QualityCheck) bool { return o.Name == c.Name }); i >= 0 {
			out[i] = c
		} else {
			out = append(out, c)
		}
	}
	return out
}

// GetDataset returns a dataset. Any role.
func GetDataset(tx *Tx, id string) (Dataset, error) {
	return getRecord[Dataset](tx, "dataset", pfxDataset, id)
}

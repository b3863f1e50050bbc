package core

import (
	"fmt"
	"slices"
	"strings"
)

// duringRun reports whether evidence falls within a training run's use of
// its asset: by the asset's twin revision when the evidence carries one,
// else by the envelope's time within the run.
func duringRun(ev *Evidence, use *HardwareUse, run *TrainingRun) bool {
	if ev.Revision != 0 {
		return ev.Revision >= use.RevisionStart && ev.Revision <= use.RevisionEnd
	}
	return !ev.EventTime.Before(run.Start) && !ev.EventTime.After(run.End)
}

// ModelLineage returns a model, its datasets with all their ancestors
// (sorted by id), and its training hardware with each asset's record and the
// evidence recorded within the run. Any role.
func ModelLineage(tx *Tx, id string) (Lineage, error) {
	m, err := GetModel(tx, id)
	if err != nil {
		return Lineage{}, err
	}
	l := Lineage{Model: m, Datasets: []Dataset{}, Hardware: []HardwareTrace{}}
	seen := slices.Clone(m.Datasets)
	for queue := slices.Clone(m.Datasets); len(queue) > 0; queue = queue[1:] {
		var d Dataset
		if err := mustLoad(tx.State, pfxDataset+queue[0], "dataset", queue[0], &d); err != nil {
			return Lineage{}, err
		}
		l.Datasets = append(l.Datasets, d)
		if d.Transform == nil {
			continue
		}
		for _, p := range d.Transform.Parents {
			if !slices.Contains(seen, p) {
				seen = append(seen, p)
				queue = append(queue, p)
			}
		}
	}
	slices.SortFunc(l.Datasets, func(a, b Dataset) int { return strings.Compare(a.ID, b.ID) })
	for _, use := range m.Training.Hardware {
		h := HardwareTrace{Use: use}
		if err := mustLoad(tx.State, pfxAsset+use.Asset, "asset", use.Asset, &h.Asset); err != nil {
			return Lineage{}, err
		}
		ev, err := evidenceOf(tx.State, use.Asset)
		if err != nil {
			return Lineage{}, err
		}
		for i := range ev {
			if duringRun(&ev[i], &use, &m.Training) {
				h.Evidence = append(h.Evidence, ev[i])
			}
		}
		l.Hardware = append(l.Hardware, h)
	}
	return l, nil
}

// ModelsTrainedOn returns the models whose training run used an asset, as
// hardware or as a federated node, by model id. Any role.
func ModelsTrainedOn(tx *Tx, asset string) ([]Model, error) {
	if err := beginRead(tx); err != nil {
		return nil, err
	}
	if err := checkID("asset", asset); err != nil {
		return nil, err
	}
	return modelsTrainedOn(tx.State, asset)
}

func modelsTrainedOn(st State, asset string) ([]Model, error) {
	return loadIndexed[Model](st, pfxModelByAsset+asset+"/", pfxModel, "model")
}

// HealthEvidence is the evidence kinds ModelsExposedTo looks for when given
// none: XID errors and double-bit ECC errors.
var HealthEvidence = []EvidenceKind{EvidenceXID, EvidenceECCDBE}

// ModelsExposedTo answers "which models ran on this asset while it had
// these faults?" from the hardware evidence recorded for it (kinds; none
// means HealthEvidence). A model is exposed through training when evidence
// falls within its run on the asset (by twin revision, else by time), and
// through deployment when evidence falls after an allowed deployment on the
// asset and before the next one. Training exposures come first, by model id,
// then deployments in order. Any role.
func ModelsExposedTo(tx *Tx, asset string, kinds []EvidenceKind) ([]Exposure, error) {
	if err := beginRead(tx); err != nil {
		return nil, err
	}
	if err := checkID("asset", asset); err != nil {
		return nil, err
	}
	if len(kinds) == 0 {
		kinds = HealthEvidence
	}
	for _, k := range kinds {
		if !k.Valid() {
			return nil, fmt.Errorf("evidence kind %q: %w", k, ErrInvalid)
		}
	}
	all, err := evidenceOf(tx.State, asset)
	if err != nil {
		return nil, err
	}
	var ev []Evidence
	for _, e := range all {
		if slices.Contains(kinds, e.Kind) {
			ev = append(ev, e)
		}
	}
	out := []Exposure{}
	if len(ev) == 0 {
		return out, nil
	}
	models, err := modelsTrainedOn(tx.State, asset)
	if err != nil {
		return nil, err
	}
	for i := range models {
		m := &models[i]
		ui := slices.IndexFunc(m.Training.Hardware, func(h HardwareUse) bool { return h.Asset == asset })
		if ui < 0 {
			continue // a federated node: no revisions recorded; see lineage
		}
		x := Exposure{Model: m.ID, Via: "training"}
		for j := range ev {
			if duringRun(&ev[j], &m.Training.Hardware[ui], &m.Training) {
				x.Evidence = append(x.Evidence, ev[j])
			}
		}
		if len(x.Evidence) > 0 {
			out = append(out, x)
		}
	}
	deps, err := deploymentsOn(tx.State, asset)
	if err != nil {
		return nil, err
	}
	for i, d := range deps {
		x := Exposure{Model: d.Model, Via: "deployment", Deployment: d.ID}
		for _, e := range ev {
			if e.EventTime.Before(d.Stamp.Time) || i+1 < len(deps) && !e.EventTime.Before(deps[i+1].Stamp.Time) {
				continue
			}
			x.Evidence = append(x.Evidence, e)
		}
		if len(x.Evidence) > 0 {
			out = append(out, x)
		}
	}
	return out, nil
}

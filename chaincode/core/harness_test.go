package core

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// ledger runs core functions as committed transactions on a memState.
type ledger struct {
	t   *testing.T
	st  *memState
	now time.Time
	n   int
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newLedger(t *testing.T) *ledger {
	return &ledger{t: t, st: newMemState(), now: t0}
}

func caller(r Role) Caller { return Caller{ID: "u-" + string(r), MSP: "Org1MSP", Role: r} }

// tx starts a transaction as role, one second after the previous one.
func (l *ledger) tx(r Role) *Tx {
	l.n++
	l.now = l.now.Add(time.Second)
	return &Tx{ID: fmt.Sprintf("tx%04d", l.n), Time: l.now, Caller: caller(r), State: l.st}
}

// do runs f as role and commits it if it succeeds; a failed transaction's
// writes are dropped, as Fabric drops them.
func do[T any](l *ledger, r Role, f func(*Tx) (T, error)) (T, error) {
	v, err := f(l.tx(r))
	if err != nil {
		l.st.rollback()
	} else {
		l.st.commit()
	}
	return v, err
}

// must is do for a call the test needs to succeed.
func must[T any](l *ledger, r Role, f func(*Tx) (T, error)) T {
	l.t.Helper()
	v, err := do(l, r, f)
	if err != nil {
		l.t.Fatalf("setup as %s: %v", r, err)
	}
	return v
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s = %v, want nil", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// gatewayKey is internal/wire's golden-vector key: the same seed, so the
// golden envelopes verify against it and the tests can sign more.
func gatewayKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("twinchain wire golden vector key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubHex(k ed25519.PrivateKey) string { return hex.EncodeToString(k.Public().(ed25519.PublicKey)) }

// seal signs an envelope the way internal/wire does (the golden vector test
// pins SigningBytes to it).
func seal(t *testing.T, key ed25519.PrivateKey, gw string, seq uint64, ts time.Time, kind, body string) []byte {
	t.Helper()
	pub, _ := key.Public().(ed25519.PublicKey)
	e := Envelope{V: 1, Gateway: gw, Epoch: keyEpoch(pub), Seq: seq, TS: ts.UTC().Format(time.RFC3339Nano), Kind: kind, Body: json.RawMessage(body)}
	e.Sig = ed25519.Sign(key, e.SigningBytes())
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func telemetry(gpu string, dbe, xid uint64, remapFail bool) string {
	return fmt.Sprintf(`{"host":"srv-s1-001","gpus":[{"asset":%q,"index":0,"uuid":"GPU-1","temp_c":60,"ecc_dbe":%d,"xid_count":%d,"row_remap_failure":%t}]}`, gpu, dbe, xid, remapFail)
}

// Fixture ids.
const (
	gw     = "gw-s1-01"
	server = "srv-s1-001"
	gpu0   = "srv-s1-001.gpu0"
	gpu1   = "srv-s1-001.gpu1"
	node2  = "edge-node-2"
)

func (l *ledger) registerAsset(id, kind, key string) Asset {
	return must(l, RoleAssetManager, func(tx *Tx) (Asset, error) {
		return RegisterAsset(tx, AssetRegistration{ID: id, Kind: kind, FingerprintHash: hashOf(id), PublicKey: key})
	})
}

// world registers a gateway, a server, two GPUs and a federated node.
func world(t *testing.T) *ledger {
	l := newLedger(t)
	l.registerAsset(gw, AssetKindGateway, pubHex(gatewayKey()))
	l.registerAsset(server, "server", "")
	l.registerAsset(gpu0, "gpu", "")
	l.registerAsset(gpu1, "gpu", "")
	l.registerAsset(node2, "server", "")
	return l
}

func consent(uses ...string) Consent {
	if len(uses) == 0 {
		uses = []string{UseTraining, "evaluation"}
	}
	return Consent{PolicyRef: "consent-policy-7", Licence: "CC-BY-4.0", UseScope: uses, RetentionDays: 365}
}

func rootDataset(id string) DatasetInput {
	return DatasetInput{ID: id, ContentHash: hashOf(id), Sources: []Source{{SourceAsset, gpu0}, {SourceSystem, "s3://lake/raw"}}, Consent: consent()}
}

func labeling(now time.Time) *Labeling {
	return &Labeling{
		Tasks: []LabelTask{
			{ID: "t1", Annotator: "ann-a", AssignedAt: now.Add(-3 * time.Hour), CompletedAt: now.Add(-2 * time.Hour)},
			{ID: "t2", Annotator: "ann-b", AssignedAt: now.Add(-3 * time.Hour), CompletedAt: now.Add(-time.Hour)},
		},
		Annotators: []AnnotatorRole{{"ann-a", "trained_annotator", "lead-1"}, {"ann-b", "radiologist", "lead-1"}},
		Agreement:  Agreement{Metric: "cohen_kappa", Value: 0.82},
		QA:         SampledQA{Sampled: 50, Passed: 48, Reviewer: "qa-1"},
	}
}

func derivedDataset(id string, parents ...string) DatasetInput {
	return DatasetInput{ID: id, ContentHash: hashOf(id), Consent: consent(UseTraining),
		Transform: &Transformation{Step: "label", Parents: parents, OutputHash: hashOf(id),
			Tools: []ToolVersion{{"label-studio", "1.12.0"}}, Labeling: labeling(t0)}}
}

func modelInput(id string, datasets ...string) ModelInput {
	return ModelInput{ID: id, ArtifactHash: hashOf(id), Datasets: datasets, Training: TrainingRun{
		Hardware:   []HardwareUse{{gpu0, 1, 5}, {gpu1, 1, 1}},
		CodeRef:    "git@example.com:ml/train.git@0123abc",
		ConfigHash: hashOf("config"),
		Start:      t0.Add(-2 * time.Hour), End: t0.Add(-time.Hour),
	}}
}

// mlWorld adds to world: a checked root dataset "ds-raw", a labelled one
// "ds-lab" derived from it, model "m1" trained on ds-lab with an evaluation,
// and policy "prod" requiring all three sign-offs, accuracy >= 0.9 and
// latency_ms <= 50.
func mlWorld(t *testing.T) *ledger {
	l := world(t)
	must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, rootDataset("ds-raw")) })
	must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, derivedDataset("ds-lab", "ds-raw")) })
	for _, id := range []string{"ds-raw", "ds-lab"} {
		must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) {
			return AddQualityChecks(tx, QualityChecksInput{Dataset: id, Checks: []QualityCheckInput{{"label_noise", 0.02, 0.05, AtMost}}})
		})
	}
	must(l, RoleMLEngineer, func(tx *Tx) (Model, error) { return RegisterModel(tx, modelInput("m1", "ds-lab")) })
	must(l, RoleMLEngineer, func(tx *Tx) (Model, error) {
		return AddEvaluation(tx, EvaluationInput{Model: "m1", Name: "holdout", Dataset: "ds-raw", Metrics: []Metric{{"accuracy", 0.93}, {"latency_ms", 41}}})
	})
	must(l, RoleCompliance, func(tx *Tx) (Policy, error) {
		return SetPolicy(tx, PolicyInput{ID: "prod", RequiredRoles: []Role{RoleMLLead, RoleSecurity, RoleCompliance},
			Thresholds: []Threshold{{"accuracy", AtLeast, 0.9}, {"latency_ms", AtMost, 50}}})
	})
	return l
}

func (l *ledger) signOff(r Role, kind SubjectKind, id, hash string, d Decision) {
	must(l, r, func(tx *Tx) (Attestation, error) {
		return Attest(tx, AttestationInput{SubjectKind: kind, Subject: id, SubjectHash: hash, Decision: d, Metrics: []Metric{{"reviewed", 1}}})
	})
}

func (l *ledger) approveAll(model string) {
	for _, r := range []Role{RoleMLLead, RoleSecurity, RoleCompliance} {
		l.signOff(r, SubjectModel, model, hashOf(model), Approve)
	}
}

func deployment(id, model string, targets ...string) DeploymentInput {
	return DeploymentInput{ID: id, Model: model, Policy: "prod", Targets: targets,
		BinaryHash: hashOf("bin-" + id), ContainerHash: hashOf("ctr-" + id), ConfigHash: hashOf("cfg-" + id),
		Environment: Environment{HardwareClass: "h100-sxm-80g", Drivers: []ToolVersion{{"nvidia", "550.54.15"}, {"cuda", "12.4"}},
			Dependencies: []ToolVersion{{"torch", "2.4.1"}}}}
}

func reasonCodes(rs []Reason) string {
	var s []string
	for _, r := range rs {
		s = append(s, string(r.Code))
	}
	return strings.Join(s, ",")
}

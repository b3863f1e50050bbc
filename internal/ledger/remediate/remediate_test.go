package remediate

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/approvals"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/wire"
)

var as = ledgertest.As

func must[T any](t testing.TB, what string) func(v T, err error) T {
	return ledgertest.Must[T](t, what)
}

// world is an embedded ledger where model-new (trained on trainer.gpu0)
// replaced model-old on srv.gpu1, both deployed under policy prod (ML lead
// and security sign off).
func world(t testing.TB) ledger.Ledger {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	l, _, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	am, eng := as(core.RoleAssetManager), as(core.RoleMLEngineer)
	pub := hex.EncodeToString(ledgertest.GatewayKey.Public().(ed25519.PublicKey))
	must[core.Asset](t, "gateway")(l.RegisterAsset(am, core.AssetRegistration{ID: "gw-1", Kind: core.AssetKindGateway, FingerprintHash: ledgertest.Hash("gw"), PublicKey: pub}))
	for _, id := range []string{"trainer.gpu0", "srv.gpu1"} {
		must[core.Asset](t, "gpu")(l.RegisterAsset(am, core.AssetRegistration{ID: id, Kind: "gpu", FingerprintHash: ledgertest.Hash(id)}))
	}
	consent := core.Consent{PolicyRef: "c", Licence: "CC0-1.0", UseScope: []string{"training"}, RetentionDays: 30}
	must[core.Dataset](t, "dataset")(l.RegisterDataset(eng, core.DatasetInput{ID: "ds", ContentHash: ledgertest.Hash("ds"), Consent: consent,
		Sources: []core.Source{{Kind: core.SourceSystem, Ref: "s3://ds"}}}))
	must[core.Dataset](t, "checks")(l.AddQualityChecks(eng, core.QualityChecksInput{Dataset: "ds", Checks: []core.QualityCheckInput{{Name: "n", Value: 0, Threshold: 1, Compare: core.AtMost}}}))
	must[core.Policy](t, "policy")(l.SetPolicy(as(core.RoleCompliance), core.PolicyInput{ID: "prod", RequiredRoles: []core.Role{core.RoleMLLead, core.RoleSecurity}}))
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for _, m := range []string{"model-old", "model-new"} {
		must[core.Model](t, "model")(l.RegisterModel(eng, core.ModelInput{ID: m, ArtifactHash: ledgertest.Hash(m), Datasets: []string{"ds"},
			Training: core.TrainingRun{Hardware: []core.HardwareUse{{Asset: "trainer.gpu0", RevisionStart: 2, RevisionEnd: 5}},
				CodeRef: "git@x/train@1", ConfigHash: ledgertest.Hash("cfg"), Start: t0, End: t0.Add(time.Hour)}}))
		for _, r := range []core.Role{core.RoleMLLead, core.RoleSecurity} {
			must[core.Attestation](t, "attest")(l.Attest(as(r), core.AttestationInput{SubjectKind: core.SubjectModel, Subject: m, SubjectHash: ledgertest.Hash(m), Decision: core.Approve}))
		}
		d := must[core.Deployment](t, "deploy")(l.RequestDeployment(eng, core.DeploymentInput{ID: "dep-" + m, Model: m, Policy: "prod", Targets: []string{"srv.gpu1"},
			BinaryHash: ledgertest.Hash("b"), ContainerHash: ledgertest.Hash("c"), ConfigHash: ledgertest.Hash("f"),
			Environment: core.Environment{HardwareClass: "h100", Drivers: []core.ToolVersion{{Name: "nvidia", Version: "550.54"}}}}))
		if !d.Allowed {
			t.Fatalf("deployment of %s refused: %+v", m, d.Reasons)
		}
	}
	return l
}

// swapEvidence records the gateway-signed inventory that shows a new
// identity on trainer.gpu0 at revision rev.
func swapEvidence(t *testing.T, l ledger.Ledger, seq, rev uint64) {
	inv := wire.Inventory{Host: wire.HostInfo{Asset: "trainer"}, GPUs: []wire.GPUIdentity{{Asset: "trainer.gpu0", UUID: "GPU-swapped", Serial: "S2"}}}
	raw, err := wire.Seal(ledgertest.GatewayKey, "gw-1", seq, time.Date(2026, 11, 20, 0, 30, 0, 0, time.UTC), wire.KindFirmware, inv)
	if err != nil {
		t.Fatal(err)
	}
	must[core.Evidence](t, "evidence")(l.RecordEvidence(as(core.RoleService), core.EvidenceInput{Asset: "trainer.gpu0", Kind: core.EvidenceSwap, Envelope: raw, Revision: rev}))
}

// TestProposer: nothing is proposed for untainted models; a swap on the
// training GPU within the run gets both models in force a remediation
// (re-validate; model-new rolled back to model-old, model-old paused), once;
// after model-new's is executed it is no longer in force and gets none.
func TestProposer(t *testing.T) {
	l := world(t)
	svc := core.Caller{ID: "twin-service", Role: core.RoleService}
	cache := approvals.New(l, svc, 0, nil)
	p := New(l, cache, svc, time.Hour, nil)
	ctx := context.Background()
	step := func() []string {
		t.Helper()
		if err := cache.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		ids, err := p.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if ids := step(); len(ids) != 0 {
		t.Fatalf("untainted models: proposed %v", ids)
	}
	swapEvidence(t, l, 9, 7) // after the run: no taint
	if ids := step(); len(ids) != 0 {
		t.Fatalf("evidence after the run: proposed %v", ids)
	}
	swapEvidence(t, l, 10, 3)
	ids := step()
	if len(ids) != 2 {
		t.Fatalf("proposed %v, want one remediation per model in force", ids)
	}
	var remNew core.Remediation
	for _, id := range ids {
		r := must[core.Remediation](t, "get")(l.GetRemediation(as(core.RoleAuditor), id))
		if r.Model == "model-new" {
			remNew = r
		}
		if r.State != core.RemediationProposed || len(r.Evidence) != 1 || r.Evidence[0] != "trainer.gpu0/gw-1/10/swap" {
			t.Errorf("remediation %s = %+v, want proposed resting on the swap at seq 10", id, r)
		}
	}
	if got := fmt.Sprint(remNew.Steps); got != "[{revalidate  } {rollback dep-model-new dep-model-old}]" {
		t.Errorf("model-new's steps = %s, want revalidate and a rollback to dep-model-old", got)
	}
	if again := step(); len(again) != 0 {
		t.Errorf("second step proposed %v again", again)
	}
	for _, r := range []core.Role{core.RoleMLLead, core.RoleSecurity} {
		must[core.Remediation](t, "decide")(l.DecideRemediation(as(r), core.RemediationApproval{ID: remNew.ID, Decision: core.Approve}))
	}
	must[core.Remediation](t, "execute")(l.ExecuteRemediation(as(core.RoleService), remNew.ID))
	if err := cache.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	in, _ := cache.InForce("srv.gpu1")
	for _, a := range in {
		if a.Model != "model-old" {
			t.Errorf("in force on srv.gpu1 after the rollback: %+v, want model-old only", a)
		}
	}
	if again := step(); len(again) != 0 {
		t.Errorf("after the execution: proposed %v", again)
	}
}

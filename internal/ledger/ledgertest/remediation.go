package ledgertest

import (
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
)

// testRemediation: a model deployed under a policy needing ml_lead and
// security is remediated (re-validate, pause its deployment): the
// execution is refused until both approved, then pauses the deployment on
// the ledger; the gate refuses the model until its sign-offs are renewed.
func testRemediation(t *testing.T, l ledger.Ledger) {
	am, eng, svc := As(core.RoleAssetManager), As(core.RoleMLEngineer), As(core.RoleService)
	for _, id := range []string{"srv-r.gpu0", "srv-r.gpu1"} {
		Must[core.Asset](t, "RegisterAsset")(l.RegisterAsset(am, gpu(id)))
	}
	consent := core.Consent{PolicyRef: "c", Licence: "CC0-1.0", UseScope: []string{"training"}, RetentionDays: 30}
	Must[core.Dataset](t, "RegisterDataset")(l.RegisterDataset(eng, core.DatasetInput{ID: "ds-r", ContentHash: Hash("ds-r"), Consent: consent,
		Sources: []core.Source{{Kind: core.SourceSystem, Ref: "s3://r"}}}))
	Must[core.Dataset](t, "AddQualityChecks")(l.AddQualityChecks(eng, core.QualityChecksInput{Dataset: "ds-r",
		Checks: []core.QualityCheckInput{{Name: "dup", Value: 0, Threshold: 1, Compare: core.AtMost}}}))
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	Must[core.Model](t, "RegisterModel")(l.RegisterModel(eng, core.ModelInput{ID: "model-r", ArtifactHash: Hash("model-r"), Datasets: []string{"ds-r"},
		Training: core.TrainingRun{Hardware: []core.HardwareUse{{Asset: "srv-r.gpu1", RevisionStart: 1, RevisionEnd: 1}},
			CodeRef: "git@x/train@1", ConfigHash: Hash("cfg"), Start: t0, End: t0.Add(time.Hour)}}))
	Must[core.Policy](t, "SetPolicy")(l.SetPolicy(As(core.RoleCompliance), core.PolicyInput{ID: "prod-r", RequiredRoles: []core.Role{core.RoleMLLead, core.RoleSecurity}}))
	signOff := func() {
		for _, r := range []core.Role{core.RoleMLLead, core.RoleSecurity} {
			Must[core.Attestation](t, "Attest")(l.Attest(As(r), core.AttestationInput{SubjectKind: core.SubjectModel, Subject: "model-r",
				SubjectHash: Hash("model-r"), Decision: core.Approve}))
		}
	}
	signOff()
	dep := core.DeploymentInput{ID: "dep-r1", Model: "model-r", Policy: "prod-r", Targets: []string{"srv-r.gpu0"},
		BinaryHash: Hash("bin"), ContainerHash: Hash("ctr"), ConfigHash: Hash("dcfg"),
		Environment: core.Environment{HardwareClass: "h100-sxm-80g", Drivers: []core.ToolVersion{{Name: "nvidia", Version: "550.54"}}}}
	if d := Must[core.Deployment](t, "RequestDeployment")(l.RequestDeployment(eng, dep)); !d.Allowed {
		t.Fatalf("deployment refused: %+v", d.Reasons)
	}

	rem := core.RemediationInput{ID: "rem-r1", Model: "model-r", Reason: "xid 79 on srv-r.gpu1 during training",
		Steps: []core.RemediationStep{{Action: core.ActionRevalidate}, {Action: core.ActionPause, Deployment: "dep-r1"}}}
	_, err := l.ProposeRemediation(As(core.RoleAuditor), rem)
	wantErr(t, "ProposeRemediation(as auditor)", err, ledger.ErrForbidden)
	r := Must[core.Remediation](t, "ProposeRemediation")(l.ProposeRemediation(svc, rem))
	if r.State != core.RemediationProposed || len(r.Required) != 2 {
		t.Errorf("ProposeRemediation = %+v, want proposed needing two sign-offs", r)
	}
	_, err = l.ExecuteRemediation(svc, "rem-r1")
	wantErr(t, "ExecuteRemediation(no approvals)", err, ledger.ErrConflict)
	_, err = l.DecideRemediation(eng, core.RemediationApproval{ID: "rem-r1", Decision: core.Approve})
	wantErr(t, "DecideRemediation(as ml_engineer)", err, ledger.ErrForbidden)
	Must[core.Remediation](t, "DecideRemediation(ml_lead)")(l.DecideRemediation(As(core.RoleMLLead), core.RemediationApproval{ID: "rem-r1", Decision: core.Approve}))
	_, err = l.ExecuteRemediation(svc, "rem-r1")
	wantErr(t, "ExecuteRemediation(ml_lead only)", err, ledger.ErrConflict)
	if d := Must[core.Deployment](t, "GetDeployment")(l.GetDeployment(svc, "dep-r1")); d.Paused != nil {
		t.Fatalf("dep-r1 paused by a refused execution: %+v", d.Paused)
	}
	Must[core.Remediation](t, "DecideRemediation(security)")(l.DecideRemediation(As(core.RoleSecurity), core.RemediationApproval{ID: "rem-r1", Decision: core.Approve}))
	r = Must[core.Remediation](t, "ExecuteRemediation")(l.ExecuteRemediation(svc, "rem-r1"))
	if r.State != core.RemediationExecuted || r.Executed == nil {
		t.Errorf("ExecuteRemediation = %+v, want executed", r)
	}
	if got := Must[core.Remediation](t, "GetRemediation")(l.GetRemediation(As(core.RoleAuditor), "rem-r1")); got.State != core.RemediationExecuted || len(got.Decisions) != 2 {
		t.Errorf("GetRemediation = %+v, want executed with both decisions", got)
	}
	p := Must[core.Page[core.Deployment]](t, "ListDeployments")(l.ListDeployments(As(core.RoleAuditor), core.PageQuery{}))
	if len(p.Items) != 1 || p.Items[0].Paused == nil || p.Items[0].Paused.Remediation != "rem-r1" {
		t.Errorf("ListDeployments = %+v, want dep-r1 paused by rem-r1", p.Items)
	}
	dep.ID = "dep-r2"
	if d := Must[core.Deployment](t, "RequestDeployment(revalidation)")(l.RequestDeployment(eng, dep)); d.Allowed || !hasReason(d.Reasons, core.ReasonRevalidation) {
		t.Errorf("deployment under revalidation = allowed %v reasons %+v, want refused: revalidation_required", d.Allowed, d.Reasons)
	}
	signOff()
	dep.ID = "dep-r3"
	if d := Must[core.Deployment](t, "RequestDeployment(renewed)")(l.RequestDeployment(eng, dep)); !d.Allowed {
		t.Errorf("deployment after renewed sign-offs refused: %+v", d.Reasons)
	}
	rl := Must[core.Page[core.Remediation]](t, "ListRemediations")(l.ListRemediations(As(core.RoleAuditor), core.PageQuery{}))
	if len(rl.Items) != 1 || rl.Items[0].ID != "rem-r1" {
		t.Errorf("ListRemediations = %+v, want rem-r1", rl.Items)
	}
}

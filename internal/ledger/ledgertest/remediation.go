package ledgertest

import (
	"crypto/ed25519"
	"encoding/hex"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/wire"
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
	testRemediationStop(t, l, r)
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

// StopEnvelope is a workloads message of gateway gw, signed with
// GatewayKey, listing gpu with processes serving artifacts (hex hashes;
// none: the GPU is idle) at time at.
func StopEnvelope(t testing.TB, gw string, seq uint64, at time.Time, host, gpu string, artifacts ...string) []byte {
	t.Helper()
	g := wire.GPUWorkload{Asset: gpu, Processes: []wire.Process{}}
	for i, a := range artifacts {
		g.Processes = append(g.Processes, wire.Process{PID: uint32(100 + i), Name: "tritonserver", MemBytes: 1 << 30, Model: "m", Artifact: "sha256:" + a})
	}
	raw, err := wire.Seal(GatewayKey, gw, seq, at, wire.KindWorkloads, wire.Workloads{Host: host, GPUs: []wire.GPUWorkload{g}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// RecordStop registers gateway gw with GatewayKey and records, on the
// executed remediation rem, the stop of its paused model on gpu.
func RecordStop(t testing.TB, l ledger.Ledger, rem core.Remediation, gw, host, gpu string) core.Remediation {
	t.Helper()
	pub := hex.EncodeToString(GatewayKey.Public().(ed25519.PublicKey))
	Must[core.Asset](t, "RegisterAsset(gateway)")(l.RegisterAsset(As(core.RoleAssetManager), core.AssetRegistration{ID: gw, Kind: core.AssetKindGateway, FingerprintHash: Hash(gw), PublicKey: pub}))
	env := StopEnvelope(t, gw, 1, rem.Executed.Time.Add(time.Second), host, gpu)
	return Must[core.Remediation](t, "RecordRemediationStop")(l.RecordRemediationStop(As(core.RoleService), core.RemediationStopInput{Remediation: rem.ID, Asset: gpu, Envelope: env}))
}

// testRemediationStop: on the executed rem-r1 (dep-r1 paused on
// srv-r.gpu0), a signed report still showing the model is refused, one
// showing the GPU idle is recorded once, with its message.
func testRemediationStop(t *testing.T, l ledger.Ledger, r core.Remediation) {
	svc := As(core.RoleService)
	at := r.Executed.Time.Add(time.Second)
	_, err := l.RecordRemediationStop(svc, core.RemediationStopInput{Remediation: "rem-r1", Asset: "srv-r.gpu0",
		Envelope: StopEnvelope(t, "gw-srv-r", 1, at, "srv-r", "srv-r.gpu0")})
	wantErr(t, "RecordRemediationStop(unregistered gateway)", err, ledger.ErrNotFound)
	got := RecordStop(t, l, r, "gw-srv-r", "srv-r", "srv-r.gpu0")
	if len(got.Stops) != 1 || got.Stops[0].Asset != "srv-r.gpu0" || got.Stops[0].Gateway != "gw-srv-r" || got.Stops[0].Seq != 1 {
		t.Fatalf("RecordRemediationStop = %+v, want srv-r.gpu0 stopped by gw-srv-r/1", got.Stops)
	}
	if err := core.CheckRemediationStop(&got.Stops[0]); err != nil {
		t.Errorf("CheckRemediationStop(recorded) = %v", err)
	}
	_, err = l.RecordRemediationStop(svc, core.RemediationStopInput{Remediation: "rem-r1", Asset: "srv-r.gpu1",
		Envelope: StopEnvelope(t, "gw-srv-r", 2, at, "srv-r", "srv-r.gpu1")})
	wantErr(t, "RecordRemediationStop(a GPU not paused)", err, ledger.ErrInvalid)
	again := Must[core.Remediation](t, "RecordRemediationStop(again)")(l.RecordRemediationStop(svc, core.RemediationStopInput{Remediation: "rem-r1",
		Asset: "srv-r.gpu0", Envelope: StopEnvelope(t, "gw-srv-r", 3, at.Add(time.Second), "srv-r", "srv-r.gpu0")}))
	if len(again.Stops) != 1 || again.Stops[0].Seq != 1 {
		t.Errorf("RecordRemediationStop(again) = %+v, want the first stop kept", again.Stops)
	}
	if g := Must[core.Remediation](t, "GetRemediation")(l.GetRemediation(As(core.RoleAuditor), "rem-r1")); len(g.Stops) != 1 || g.Stops[0].EnvelopeHash != got.Stops[0].EnvelopeHash {
		t.Errorf("GetRemediation stops = %+v, want the recorded one", g.Stops)
	}
}

package core

import (
	"fmt"
	"testing"
)

// TestRemediation: a remediation of m1 (re-validate; roll its deployment
// back to m0's) is proposed, refused while any sign-off role its policy
// requires has not approved, approved, executed once: d1 paused, the
// rollback recorded and in force, m1 refused by the gate until its
// sign-offs are renewed. A rejection ends another.
func TestRemediation(t *testing.T) {
	l := mlWorld(t)
	must(l, RoleMLEngineer, func(tx *Tx) (Model, error) { return RegisterModel(tx, modelInput("m0", "ds-lab")) })
	must(l, RoleMLEngineer, func(tx *Tx) (Model, error) {
		return AddEvaluation(tx, EvaluationInput{Model: "m0", Name: "holdout", Metrics: []Metric{{"accuracy", 0.92}, {"latency_ms", 40}}})
	})
	l.approveAll("m0")
	l.approveAll("m1")
	for _, d := range []DeploymentInput{deployment("d-old", "m0", gpu0, gpu1), deployment("d1", "m1", gpu0)} {
		if got := must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, d) }); !got.Allowed {
			t.Fatalf("deployment %s refused: %+v", d.ID, got.Reasons)
		}
	}
	rem := RemediationInput{ID: "rem-1", Model: "m1", Reason: "xid 79 on srv-s1-001.gpu1 during training",
		Evidence: []string{gpu1 + "/gw-s1-01/7/xid"}, Steps: []RemediationStep{{Action: ActionRevalidate}, {Action: ActionRollback, Deployment: "d1", To: "d-old"}}}
	propose := func(r Role, in RemediationInput) (Remediation, error) {
		return do(l, r, func(tx *Tx) (Remediation, error) { return ProposeRemediation(tx, in) })
	}
	decide := func(r Role, d Decision) error {
		_, err := do(l, r, func(tx *Tx) (Remediation, error) {
			return DecideRemediation(tx, RemediationApproval{ID: "rem-1", Decision: d})
		})
		return err
	}
	execute := func(r Role) (Remediation, error) {
		return do(l, r, func(tx *Tx) (Remediation, error) { return ExecuteRemediation(tx, "rem-1") })
	}
	_, err := propose(RoleAuditor, rem)
	wantErr(t, "propose as auditor", err, ErrForbidden)
	bad := rem
	bad.Steps = []RemediationStep{{Action: ActionPause, Deployment: "d-old"}}
	_, err = propose(RoleService, bad)
	wantErr(t, "pause of another model's deployment", err, ErrInvalid)
	bad.Steps = []RemediationStep{{Action: ActionRollback, Deployment: "d1", To: "d1"}}
	_, err = propose(RoleService, bad)
	wantErr(t, "rollback to the same model", err, ErrInvalid)
	r, err := propose(RoleService, rem)
	if err != nil || r.State != RemediationProposed || fmt.Sprint(r.Required) != "[compliance ml_lead security]" {
		t.Fatalf("propose = %+v, %v; want proposed, needing compliance, ml_lead and security", r, err)
	}
	_, err = propose(RoleService, rem)
	wantErr(t, "propose twice", err, ErrConflict)

	_, err = execute(RoleService)
	wantErr(t, "execute without approvals", err, ErrConflict)
	wantErr(t, "decide as ml_engineer", decide(RoleMLEngineer, Approve), ErrForbidden)
	wantErr(t, "ml_lead approves", decide(RoleMLLead, Approve), nil)
	wantErr(t, "security approves", decide(RoleSecurity, Approve), nil)
	_, err = execute(RoleService)
	wantErr(t, "execute without compliance", err, ErrConflict)
	if d := must(l, RoleAuditor, func(tx *Tx) (Deployment, error) { return GetDeployment(tx, "d1") }); d.Paused != nil {
		t.Fatalf("d1 paused by a refused execution: %+v", d.Paused)
	}
	wantErr(t, "compliance approves", decide(RoleCompliance, Approve), nil)
	_, err = execute(RoleAuditor)
	wantErr(t, "execute as auditor", err, ErrForbidden)
	r, err = execute(RoleService)
	if err != nil || r.State != RemediationExecuted || r.Executed == nil || fmt.Sprint(r.Rollbacks) != "[rem-1.rollback.2]" {
		t.Fatalf("execute = %+v, %v; want executed with rollback rem-1.rollback.2", r, err)
	}
	_, err = execute(RoleService)
	wantErr(t, "execute twice", err, ErrConflict)

	d1 := must(l, RoleAuditor, func(tx *Tx) (Deployment, error) { return GetDeployment(tx, "d1") })
	rb := must(l, RoleAuditor, func(tx *Tx) (Deployment, error) { return GetDeployment(tx, "rem-1.rollback.2") })
	if d1.Paused == nil || d1.Paused.Remediation != "rem-1" {
		t.Errorf("d1.Paused = %+v, want paused by rem-1", d1.Paused)
	}
	if !rb.Allowed || rb.Kind != KindRollback || rb.Replaces != "d1" || rb.Model != "m0" || fmt.Sprint(rb.Targets) != "[srv-s1-001.gpu0]" || rb.Remediation != "rem-1" {
		t.Errorf("rollback = %+v, want m0 on gpu0 replacing d1, by rem-1", rb)
	}
	on := must(l, RoleAuditor, func(tx *Tx) ([]Deployment, error) { return DeploymentsOn(tx, gpu0) })
	if last := on[len(on)-1]; last.ID != "rem-1.rollback.2" {
		t.Errorf("DeploymentsOn(gpu0) ends with %s, want the rollback", last.ID)
	}
	// m1 needs new sign-offs before it deploys again.
	d := must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, deployment("d2", "m1", gpu1)) })
	if d.Allowed || reasonCodes(d.Reasons) != "revalidation_required,revalidation_required,revalidation_required" {
		t.Errorf("deployment of m1 after the remediation = allowed %v reasons %s, want refused: revalidation_required x3", d.Allowed, reasonCodes(d.Reasons))
	}
	l.approveAll("m1")
	if d := must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, deployment("d3", "m1", gpu1)) }); !d.Allowed {
		t.Errorf("deployment of m1 after new sign-offs = %+v, want allowed", d.Reasons)
	}

	// Another proposal, rejected by security: it cannot execute.
	rem.ID, rem.Steps = "rem-2", []RemediationStep{{Action: ActionPause, Deployment: "d3"}}
	if _, err := propose(RoleSecurity, rem); err != nil {
		t.Fatal(err)
	}
	if _, err := do(l, RoleSecurity, func(tx *Tx) (Remediation, error) {
		return DecideRemediation(tx, RemediationApproval{ID: "rem-2", Decision: Reject, Statement: "the XID was a driver bug"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := do(l, RoleService, func(tx *Tx) (Remediation, error) { return ExecuteRemediation(tx, "rem-2") }); err == nil {
		t.Error("executing a rejected remediation succeeded")
	}
	page := must(l, RoleAuditor, func(tx *Tx) (Page[Remediation], error) { return ListRemediations(tx, PageQuery{}) })
	if len(page.Items) != 2 || page.Items[1].State != RemediationRejected {
		t.Errorf("ListRemediations = %+v, want rem-1 and rem-2 (rejected)", page.Items)
	}
}

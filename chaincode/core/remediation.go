package core

import (
	"fmt"
	"slices"
)

// Remediation of a tainted model: when hardware evidence taints a model
// (a swap, an XID, double-bit ECC errors on its training hardware within
// its run), twin-service or a person proposes actions; each sign-off role
// the policies of the deployments concerned require approves (or rejects);
// once every one approved, the actions execute in one transaction.

// RemediationAction is one kind of remediation step.
type RemediationAction string

// Remediation actions.
const (
	// ActionRevalidate marks the model for re-validation: the gate refuses
	// new deployments of it until every sign-off its policy requires is
	// renewed after the execution.
	ActionRevalidate RemediationAction = "revalidate"
	// ActionPause pauses a deployment of the model: it is no longer in
	// force anywhere (twin-service then judges the model still running
	// there unapproved).
	ActionPause RemediationAction = "pause"
	// ActionRollback pauses a deployment of the model and records a
	// rollback to an earlier allowed deployment of another model on the
	// targets they share, which is in force from then on.
	ActionRollback RemediationAction = "rollback"
)

// RemediationStep is one action and what it acts on.
type RemediationStep struct {
	Action     RemediationAction `json:"action"`
	Deployment string            `json:"deployment,omitempty"` // pause, rollback: a deployment of the model
	To         string            `json:"to,omitempty"`         // rollback: the deployment to return to
}

// RemediationInput is the input to ProposeRemediation.
type RemediationInput struct {
	ID     string            `json:"id"`
	Model  string            `json:"model"`
	Reason string            `json:"reason"`
	Steps  []RemediationStep `json:"steps"`
	// Evidence are the ledger evidence records that taint the model, as
	// "asset/gateway/seq/kind" (Evidence.Key); at most 64.
	Evidence []string `json:"evidence,omitempty"`
}

// RemediationState is where a remediation is.
type RemediationState string

// Remediation states.
const (
	RemediationProposed RemediationState = "proposed"
	RemediationRejected RemediationState = "rejected" // a required role rejected it
	RemediationExecuted RemediationState = "executed"
)

// RemediationDecision is one role's decision on a remediation.
type RemediationDecision struct {
	Decision  Decision `json:"decision"`
	Statement string   `json:"statement,omitempty"`
	Stamp     Stamp    `json:"stamp"`
}

// Remediation is a recorded remediation: the proposal, the sign-off roles it
// needs (the union of the required roles of the policies of the
// deployments it names, or of the model's deployments' policies), every
// decision in order, and the execution.
type Remediation struct {
	RemediationInput
	State     RemediationState      `json:"state"`
	Required  []Role                `json:"required"`
	Decisions []RemediationDecision `json:"decisions,omitempty"`
	Proposed  Stamp                 `json:"proposed"`
	Executed  *Stamp                `json:"executed,omitempty"`
	// Rollbacks are the rollback deployments the execution recorded, in
	// step order.
	Rollbacks []string `json:"rollbacks,omitempty"`
	// Stops are the GPUs whose agents reported the paused model no longer
	// running there after the execution, by asset (RecordRemediationStop).
	Stops []RemediationStop `json:"stops,omitempty"`
}

// RemediationApproval is the input to DecideRemediation.
type RemediationApproval struct {
	ID        string   `json:"id"`
	Decision  Decision `json:"decision"`
	Statement string   `json:"statement,omitempty"`
}

// Revalidation marks a model whose approval must be renewed.
type Revalidation struct {
	Remediation string `json:"remediation"`
	Stamp       Stamp  `json:"stamp"`
}

// Who may act on remediations.
var (
	rolesPropose = []Role{RoleService, RoleSecurity, RoleMLLead, RoleMLEngineer}
	rolesExecute = []Role{RoleService, RoleSecurity, RoleMLLead, RoleMLEngineer, RoleAdmin}
)

// ProposeRemediation records proposed remediation steps for a model.
// Roles: service, security, ml_lead, ml_engineer.
//
// Every step must act on an allowed deployment of the model (a rollback's
// To: an allowed deployment of another model sharing a target); at least
// one step, each deployment once. The sign-off roles it needs are the
// union of the required roles of the named deployments' policies (for a
// revalidation alone, of every policy the model was deployed under).
func ProposeRemediation(tx *Tx, in RemediationInput) (Remediation, error) {
	if err := begin(tx, "propose remediation", rolesPropose); err != nil {
		return Remediation{}, err
	}
	if err := checkID("remediation", in.ID); err != nil {
		return Remediation{}, err
	}
	if err := checkText("remediation reason", in.Reason, 1024, true); err != nil {
		return Remediation{}, err
	}
	if len(in.Steps) == 0 || len(in.Steps) > 64 || len(in.Evidence) > 64 {
		return Remediation{}, fmt.Errorf("remediation with %d steps and %d evidence records (1-64, 0-64): %w", len(in.Steps), len(in.Evidence), ErrInvalid)
	}
	for _, e := range in.Evidence {
		if err := checkText("evidence key", e, 512, true); err != nil {
			return Remediation{}, err
		}
	}
	var m Model
	if err := mustLoad(tx.State, pfxModel+in.Model, "model", in.Model, &m); err != nil {
		return Remediation{}, err
	}
	if found, err := load(tx.State, pfxRemediation+in.ID, &Remediation{}); err != nil {
		return Remediation{}, err
	} else if found {
		return Remediation{}, fmt.Errorf("remediation %q already recorded: %w", in.ID, ErrConflict)
	}
	var policies []string
	var named []string
	for _, s := range in.Steps {
		switch s.Action {
		case ActionRevalidate:
			if s.Deployment != "" || s.To != "" {
				return Remediation{}, fmt.Errorf("revalidate names the model, not a deployment: %w", ErrInvalid)
			}
			continue
		case ActionPause, ActionRollback:
		default:
			return Remediation{}, fmt.Errorf("remediation action %q (revalidate, pause, rollback): %w", s.Action, ErrInvalid)
		}
		if slices.Contains(named, s.Deployment) {
			return Remediation{}, fmt.Errorf("deployment %s in two steps: %w", s.Deployment, ErrInvalid)
		}
		named = append(named, s.Deployment)
		d, err := remediable(tx.State, s.Deployment, in.Model)
		if err != nil {
			return Remediation{}, err
		}
		policies = append(policies, d.Policy)
		if s.Action == ActionRollback {
			if err := checkRollbackTo(tx.State, &d, s.To); err != nil {
				return Remediation{}, err
			}
		} else if s.To != "" {
			return Remediation{}, fmt.Errorf("only a rollback names a deployment to return to: %w", ErrInvalid)
		}
	}
	if len(policies) == 0 { // revalidation alone: every policy the model was deployed under
		ds, err := scan[Deployment](tx.State, pfxDeployment)
		if err != nil {
			return Remediation{}, err
		}
		for _, d := range ds {
			if d.Model == in.Model && d.Allowed {
				policies = append(policies, d.Policy)
			}
		}
	}
	var required []Role
	for _, id := range policies {
		var p Policy
		if err := mustLoad(tx.State, pfxPolicy+id, "policy", id, &p); err != nil {
			return Remediation{}, err
		}
		for _, r := range p.RequiredRoles {
			if !slices.Contains(required, r) {
				required = append(required, r)
			}
		}
	}
	if len(required) == 0 {
		return Remediation{}, fmt.Errorf("model %s has no policy to take sign-off roles from (no allowed deployment): %w", in.Model, ErrInvalid)
	}
	slices.Sort(required)
	r := Remediation{RemediationInput: in, State: RemediationProposed, Required: required, Proposed: tx.stamp()}
	return r, store(tx.State, pfxRemediation+r.ID, r)
}

// remediable loads an allowed deployment of model.
func remediable(st State, id, model string) (Deployment, error) {
	var d Deployment
	if err := mustLoad(st, pfxDeployment+id, "deployment", id, &d); err != nil {
		return d, err
	}
	if !d.Allowed || d.Model != model {
		return d, fmt.Errorf("deployment %s is not an allowed deployment of model %s: %w", id, model, ErrInvalid)
	}
	return d, nil
}

// checkRollbackTo checks that to is an allowed deployment of another model
// sharing a target with d.
func checkRollbackTo(st State, d *Deployment, to string) error {
	var prev Deployment
	if err := mustLoad(st, pfxDeployment+to, "deployment to return to", to, &prev); err != nil {
		return err
	}
	if !prev.Allowed || prev.Paused != nil || prev.Model == d.Model || len(shared(d.Targets, prev.Targets)) == 0 {
		return fmt.Errorf("rollback of %s to %s: want an allowed, unpaused deployment of another model sharing a target: %w", d.ID, to, ErrInvalid)
	}
	return nil
}

func shared(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// DecideRemediation records the caller's decision on a proposed
// remediation. Roles: the sign-off roles (ml_lead, security, compliance);
// the caller's role must be one the remediation requires. A reject ends
// it (rejected); a role may decide again while it is proposed, the latest
// counts.
func DecideRemediation(tx *Tx, in RemediationApproval) (Remediation, error) {
	if err := begin(tx, "decide remediation", rolesAttest); err != nil {
		return Remediation{}, err
	}
	if in.Decision != Approve && in.Decision != Reject {
		return Remediation{}, fmt.Errorf("decision %q (approve, reject): %w", in.Decision, ErrInvalid)
	}
	if err := checkText("statement", in.Statement, 1024, false); err != nil {
		return Remediation{}, err
	}
	var r Remediation
	if err := mustLoad(tx.State, pfxRemediation+in.ID, "remediation", in.ID, &r); err != nil {
		return Remediation{}, err
	}
	if !slices.Contains(r.Required, tx.Caller.Role) {
		return Remediation{}, fmt.Errorf("remediation %s needs %v, not %s: %w", r.ID, r.Required, tx.Caller.Role, ErrForbidden)
	}
	if r.State != RemediationProposed {
		return Remediation{}, fmt.Errorf("remediation %s is %s: %w", r.ID, r.State, ErrConflict)
	}
	r.Decisions = append(r.Decisions, RemediationDecision{Decision: in.Decision, Statement: in.Statement, Stamp: tx.stamp()})
	if in.Decision == Reject {
		r.State = RemediationRejected
	}
	return r, store(tx.State, pfxRemediation+r.ID, r)
}

// Missing are the required roles whose latest decision is not an approval.
func (r *Remediation) Missing() []Role {
	var out []Role
	for _, role := range r.Required {
		var last Decision
		for _, d := range r.Decisions {
			if d.Stamp.Role == role {
				last = d.Decision
			}
		}
		if last != Approve {
			out = append(out, role)
		}
	}
	return out
}

// ExecuteRemediation carries out an approved remediation's steps in one
// transaction. Roles: service, security, ml_lead, ml_engineer, admin.
// Refused (ErrConflict, nothing written) unless it is proposed and every
// required role's latest decision approves it.
//
// pause: the deployment is paused (Deployment.Paused). rollback: the
// deployment is paused and a rollback deployment (kind rollback, id
// "<remediation>.rollback.<n>", of the To deployment's model on the
// targets they share, allowed by this remediation) is recorded.
// revalidate: the model is marked (Model.Revalidation).
func ExecuteRemediation(tx *Tx, id string) (Remediation, error) {
	if err := begin(tx, "execute remediation", rolesExecute); err != nil {
		return Remediation{}, err
	}
	var r Remediation
	if err := mustLoad(tx.State, pfxRemediation+id, "remediation", id, &r); err != nil {
		return Remediation{}, err
	}
	if r.State != RemediationProposed {
		return Remediation{}, fmt.Errorf("remediation %s is %s: %w", r.ID, r.State, ErrConflict)
	}
	if miss := r.Missing(); len(miss) > 0 {
		return Remediation{}, fmt.Errorf("remediation %s lacks the approval of %v: %w", r.ID, miss, ErrConflict)
	}
	stamp := tx.stamp()
	for i, s := range r.Steps {
		switch s.Action {
		case ActionRevalidate:
			var m Model
			if err := mustLoad(tx.State, pfxModel+r.Model, "model", r.Model, &m); err != nil {
				return Remediation{}, err
			}
			m.Revalidation = &Revalidation{Remediation: r.ID, Stamp: stamp}
			if err := store(tx.State, pfxModel+m.ID, m); err != nil {
				return Remediation{}, err
			}
		case ActionPause, ActionRollback:
			var d Deployment
			if err := mustLoad(tx.State, pfxDeployment+s.Deployment, "deployment", s.Deployment, &d); err != nil {
				return Remediation{}, err
			}
			if d.Paused == nil {
				d.Paused = &Pause{Remediation: r.ID, Stamp: stamp}
				if err := store(tx.State, pfxDeployment+d.ID, d); err != nil {
					return Remediation{}, err
				}
			}
			if s.Action == ActionRollback {
				rb, err := rollbackFor(tx, &r, i, &d, s.To, stamp)
				if err != nil {
					return Remediation{}, err
				}
				r.Rollbacks = append(r.Rollbacks, rb)
			}
		}
	}
	r.State, r.Executed = RemediationExecuted, &stamp
	return r, store(tx.State, pfxRemediation+r.ID, r)
}

// rollbackFor records the rollback of d to the deployment to, allowed by
// the remediation r, and returns its id.
func rollbackFor(tx *Tx, r *Remediation, step int, d *Deployment, to string, stamp Stamp) (string, error) {
	var prev Deployment
	if err := mustLoad(tx.State, pfxDeployment+to, "deployment", to, &prev); err != nil {
		return "", err
	}
	if err := checkRollbackTo(tx.State, d, to); err != nil {
		return "", err // paused since the proposal
	}
	id := fmt.Sprintf("%s.rollback.%d", r.ID, step+1)
	if !ValidID(id) {
		return "", fmt.Errorf("rollback id %q: %w", id, ErrInvalid)
	}
	in := prev.DeploymentInput
	in.ID, in.Kind, in.Replaces, in.Targets = id, KindRollback, d.ID, shared(d.Targets, prev.Targets)
	in.Environment.Assets = slices.DeleteFunc(slices.Clone(in.Environment.Assets), func(a AssetEnvironment) bool { return !slices.Contains(in.Targets, a.Asset) })
	rb := Deployment{DeploymentInput: in, ModelHash: prev.ModelHash, PolicyVersion: prev.PolicyVersion, Allowed: true,
		Remediation: r.ID, Stamp: stamp}
	if err := store(tx.State, pfxDeployment+id, rb); err != nil {
		return "", err
	}
	for _, t := range rb.Targets {
		if err := store(tx.State, deployIndexKey(t, stamp, id), id); err != nil {
			return "", err
		}
	}
	return id, nil
}

// GetRemediation returns a remediation. Any role.
func GetRemediation(tx *Tx, id string) (Remediation, error) {
	return getRecord[Remediation](tx, "remediation", pfxRemediation, id)
}

// ListRemediations returns a page of the remediations in id order. Any role.
func ListRemediations(tx *Tx, q PageQuery) (Page[Remediation], error) {
	return listPage[Remediation](tx, "remediation", pfxRemediation, q)
}

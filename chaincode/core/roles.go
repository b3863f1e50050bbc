package core

import (
	"fmt"
	"slices"
)

// Who may do what. Reads (Get*, history, lineage and the other queries) are
// open to every valid role; each write names its roles here.
var (
	rolesRegisterAsset   = []Role{RoleAdmin, RoleAssetManager, RoleService}
	rolesFingerprint     = []Role{RoleAdmin, RoleAssetManager, RoleMaintenance}
	rolesGatewayKey      = []Role{RoleAdmin, RoleSecurity}
	rolesAnchor          = []Role{RoleService}
	rolesEvidence        = []Role{RoleService, RoleSecurity}
	rolesDataset         = []Role{RoleMLEngineer, RoleMLLead, RoleService}
	rolesQualityCheck    = []Role{RoleMLEngineer, RoleMLLead, RoleCompliance, RoleService}
	rolesModel           = []Role{RoleMLEngineer, RoleMLLead, RoleService}
	rolesAttest          = []Role{RoleMLLead, RoleSecurity, RoleCompliance}
	rolesPolicy          = []Role{RoleAdmin, RoleCompliance}
	rolesDeploy          = []Role{RoleMLEngineer, RoleMLLead, RoleService}
	rolesStatusDefault   = []Role{RoleAdmin, RoleAssetManager}
	rolesQuarantine      = []Role{RoleAdmin, RoleSecurity, RoleService}
	rolesMaintenance     = []Role{RoleAdmin, RoleAssetManager, RoleMaintenance}
	rolesLeaveQuarantine = []Role{RoleAdmin, RoleSecurity}
)

// rolesForStatus says who may move an asset from one status to another.
// Leaving quarantine is for security (or admin) only, whatever the target;
// entering maintenance, or returning from it to service, is also open to
// maintenance; quarantine is open to security and twin-service's detectors.
func rolesForStatus(from, to AssetStatus) []Role {
	switch {
	case from == StatusQuarantined:
		return rolesLeaveQuarantine
	case to == StatusQuarantined:
		return rolesQuarantine
	case to == StatusMaintenance, from == StatusMaintenance && to == StatusInService:
		return rolesMaintenance
	}
	return rolesStatusDefault
}

// checkCaller refuses a caller without an id or a known role.
func checkCaller(c Caller) error {
	if c.ID == "" || !c.Role.Valid() {
		return fmt.Errorf("caller %q role %q: %w", c.ID, c.Role, ErrForbidden)
	}
	return nil
}

// allow refuses the caller unless its role is one of roles.
func allow(tx *Tx, what string, roles []Role) error {
	if err := checkCaller(tx.Caller); err != nil {
		return err
	}
	if !slices.Contains(roles, tx.Caller.Role) {
		return fmt.Errorf("%s: role %q may not (allowed: %v): %w", what, tx.Caller.Role, roles, ErrForbidden)
	}
	return nil
}

// stamp records the caller and the transaction on a record.
func (tx *Tx) stamp() Stamp {
	return Stamp{By: tx.Caller.ID, MSP: tx.Caller.MSP, Role: tx.Caller.Role, TxID: tx.ID, Time: tx.Time.UTC()}
}

package core

import "fmt"

const keyGatewayKeyPolicy = "settings/gatewaykeys"

var rolesKeyPolicy = []Role{RoleAdmin, RoleSecurity}

func gatewayKeyPolicy(st State) (GatewayKeyPolicy, error) {
	var p GatewayKeyPolicy
	_, err := load(st, keyGatewayKeyPolicy, &p)
	return p, err
}

// SetGatewayKeyPolicy sets the ledger-wide gateway key policy. Roles: admin,
// security.
func SetGatewayKeyPolicy(tx *Tx, in GatewayKeyPolicy) (GatewayKeyPolicy, error) {
	if err := begin(tx, "set gateway key policy", rolesKeyPolicy); err != nil {
		return GatewayKeyPolicy{}, err
	}
	st := tx.stamp()
	p := GatewayKeyPolicy{TrustedKeysOnly: in.TrustedKeysOnly, Stamp: &st}
	return p, store(tx.State, keyGatewayKeyPolicy, p)
}

// GetGatewayKeyPolicy returns the gateway key policy (off when never set).
// Any role.
func GetGatewayKeyPolicy(tx *Tx, _ NoArgs) (GatewayKeyPolicy, error) {
	if err := beginRead(tx); err != nil {
		return GatewayKeyPolicy{}, err
	}
	return gatewayKeyPolicy(tx.State)
}

// keyRole is the role that put a gateway's current key on the ledger.
func (a *Asset) keyRole() Role {
	if a.KeyStamp != nil {
		return a.KeyStamp.Role
	}
	return a.Registered.Role
}

// checkGatewayKeyPolicy refuses, under TrustedKeysOnly, what role did to a
// gateway key when role is the service: registering a gateway, or (role being
// the gateway's key role) vouching for evidence.
func checkGatewayKeyPolicy(tx *Tx, role Role, what string) error {
	if role != RoleService {
		return nil
	}
	p, err := gatewayKeyPolicy(tx.State)
	if err != nil || !p.TrustedKeysOnly {
		return err
	}
	return fmt.Errorf("%s: the gateway key policy wants keys set or confirmed by admin, asset_manager or security: %w", what, ErrForbidden)
}

// Package core holds twinchain's ledger rules: the records kept on the ledger
// (assets, state anchors, hardware evidence, datasets, models, attestations,
// deployment policies and deployments) and the functions that check and write
// them. The same code runs inside the Hyperledger Fabric chaincode
// (package fabric) and inside twin-service's embedded ledger.
//
// The core is deterministic: it takes time only from the transaction (Tx.Time),
// never iterates a map into output, and uses no randomness, so every endorsing
// peer computes the same writes. It reads and writes through State and knows
// the caller through Tx.Caller.
//
// Errors wrap one of the sentinels ErrForbidden, ErrInvalid, ErrNotFound and
// ErrConflict; test with errors.Is.
package core

import (
	"errors"
	"time"
)

// Sentinel errors. Every error the core returns wraps exactly one of them.
var (
	ErrForbidden = errors.New("forbidden") // the caller's role may not do this
	ErrInvalid   = errors.New("invalid")   // the input breaks a rule
	ErrNotFound  = errors.New("not found") // a referenced record does not exist
	ErrConflict  = errors.New("conflict")  // the input contradicts what the ledger holds
)

// State is the key-value world state the core reads and writes. Keys are
// printable ASCII; values are the core's JSON records.
//
// Semantics follow Fabric's world state, the strictest backend: a Get or
// Range inside a transaction sees only committed state, not the transaction's
// own Puts. The core never reads a key it wrote in the same call.
type State interface {
	// Get returns the value stored at key, or nil and no error when absent.
	Get(key string) ([]byte, error)
	// Put stores value at key.
	Put(key string, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key string) error
	// Range calls fn for every key in [start, end) in ascending byte order
	// until fn returns false. An empty end means no upper bound. fn must not
	// keep value after it returns.
	Range(start, end string, fn func(key string, value []byte) bool) error
}

// Role is what a caller may do. On Fabric it comes from the certificate
// attribute "twin.role"; on the embedded ledger from the signed-in user.
type Role string

// The roles. Each function of the core names the roles it accepts.
const (
	RoleAdmin        Role = "admin"         // ledger administration, policies
	RoleAssetManager Role = "asset_manager" // registers and moves assets
	RoleSecurity     Role = "security"      // quarantine, gateway keys, security sign-off
	RoleMaintenance  Role = "maintenance"   // maintenance status, fingerprint updates after a swap
	RoleMLEngineer   Role = "ml_engineer"   // datasets, models, evaluations, deployment requests
	RoleMLLead       Role = "ml_lead"       // ML sign-off
	RoleCompliance   Role = "compliance"    // compliance sign-off, policies
	RoleAuditor      Role = "auditor"       // reads only
	RoleService      Role = "service"       // twin-service itself: anchors, evidence, registrations
	RoleGateway      Role = "gateway"       // an edge gateway identity (reads only on the ledger)
)

// Roles lists every role in a fixed order.
var Roles = []Role{RoleAdmin, RoleAssetManager, RoleSecurity, RoleMaintenance, RoleMLEngineer,
	RoleMLLead, RoleCompliance, RoleAuditor, RoleService, RoleGateway}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}

// Caller is who submits a transaction.
type Caller struct {
	ID   string `json:"id"`   // stable identity: Fabric's cid.GetID, or the user name
	MSP  string `json:"msp"`  // organisation: Fabric MSP id, or the embedded ledger's org
	Role Role   `json:"role"` // the one role the identity acts in
}

// Tx is one transaction's context: its id, its time (Fabric: the proposal's
// timestamp; never the local clock), the caller and the state.
type Tx struct {
	ID     string
	Time   time.Time
	Caller Caller
	State  State
	// Transient is data the caller passed beside the transaction that the
	// ledger does not record (Fabric's transient map): private metadata.
	Transient map[string][]byte
}

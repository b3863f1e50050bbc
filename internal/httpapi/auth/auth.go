// Package auth holds twin-service's users, roles, sessions and API tokens.
// It does no HTTP: internal/httpapi/auth.go puts it on Fiber.
//
// Users come from configuration; API tokens from configuration and from
// the token file that admins change (tokens.go). A user's password is
// stored only as a bcrypt hash; an API token only as the hex SHA-256 of the
// token (a token is 32 random bytes, so a fast hash is enough and lets a
// lookup be a map access). Sessions live in memory: a restart signs everyone out.
package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Role is what a user or token may do, by job.
type Role string

// The roles.
const (
	Viewer       Role = "viewer"
	AssetManager Role = "asset_manager"
	Security     Role = "security"
	Maintenance  Role = "maintenance"
	MLEngineer   Role = "ml_engineer"
	MLLead       Role = "ml_lead"    // ML sign-off (attestations)
	Compliance   Role = "compliance" // compliance sign-off (attestations)
	Auditor      Role = "auditor"
	Admin        Role = "admin"
)

// Roles lists every role.
func Roles() []Role {
	return []Role{Viewer, AssetManager, Security, Maintenance, MLEngineer, MLLead, Compliance, Auditor, Admin}
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles(), r) }

// Action is one thing a route lets a caller do. The API's policy table
// (httpapi.Routes) gives each route its actions, and the dashboard asks
// /auth/me which actions the signed-in user has, so the UI and the API
// follow one table.
type Action string

// The actions.
const (
	ReadAll           Action = "read"               // every GET, sign-out, /metrics
	WriteAssets       Action = "assets.write"       // custody owner and holder, status in/out of service, transit, retired
	MaintainAssets    Action = "assets.maintain"    // status into maintenance and back to service
	QuarantineAssets  Action = "assets.quarantine"  // status into quarantine, and out of it
	AckAlerts         Action = "alerts.ack"         // acknowledge, resolve, assign and comment on alerts and incidents
	WriteWorkOrders   Action = "workorders.write"   // open and cancel work orders
	ApproveWorkOrders Action = "workorders.approve" // approve a work order
	ManageGateways    Action = "gateways.manage"    // register new gateways, edit their site and assets, enrollment tokens
	GatewayKeys       Action = "gateways.keys"      // change or revoke a registered gateway's key
	LedgerWrite       Action = "ledger.write"       // ledger writes; the ledger's own roles decide each (chaincode/core/roles.go)
	ManageTokens      Action = "tokens.manage"      // list, create and revoke API tokens (admin only)
)

// Policy is which roles may take each action. Admin may take every action.
// Quarantine and gateway keys follow the ledger, which reserves them for
// security (and admin).
func Policy() map[Action][]Role {
	return map[Action][]Role{
		ReadAll:           {Viewer, AssetManager, Security, Maintenance, MLEngineer, MLLead, Compliance, Auditor},
		WriteAssets:       {AssetManager},
		MaintainAssets:    {AssetManager, Maintenance},
		QuarantineAssets:  {Security},
		AckAlerts:         {Security},
		WriteWorkOrders:   {Maintenance, AssetManager},
		ApproveWorkOrders: {AssetManager, Security},
		ManageGateways:    {AssetManager, Security},
		GatewayKeys:       {Security},
		LedgerWrite:       {AssetManager, Security, Maintenance, MLEngineer, MLLead, Compliance},
		ManageTokens:      {},
	}
}

// RolesFor is the roles that may take action a, admin included.
func RolesFor(a Action) []Role {
	return append(slices.Clone(Policy()[a]), Admin)
}

// Allowed reports whether role r may take action a.
func Allowed(r Role, a Action) bool { return slices.Contains(RolesFor(a), r) }

// Actions lists the actions role r may take, sorted.
func Actions(r Role) []Action {
	var out []Action
	for a := range Policy() {
		if Allowed(r, a) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// UserConfig is one user in the configuration file.
type UserConfig struct {
	Name         string `yaml:"name" json:"name"`
	Role         Role   `yaml:"role" json:"role"`
	PasswordHash string `yaml:"password_hash" json:"password_hash"` // bcrypt
}

// TokenConfig is one API token for a machine client.
type TokenConfig struct {
	Name   string `yaml:"name" json:"name"`
	Role   Role   `yaml:"role" json:"role"`
	SHA256 string `yaml:"sha256" json:"sha256"` // hex SHA-256 of the token
}

// Config is the auth section of twin-service's configuration.
type Config struct {
	Users  []UserConfig  `yaml:"users" json:"users"`
	Tokens []TokenConfig `yaml:"tokens" json:"tokens"`
	// UsersFile, when set, is a YAML file of more users (the one
	// EnsureAdmin writes at first start).
	UsersFile string `yaml:"users_file" json:"users_file"`
	// SessionTTL is how long a session lasts after its last use.
	SessionTTL time.Duration `yaml:"session_ttl" json:"session_ttl"`
	// MaxSessions bounds the session table.
	MaxSessions int `yaml:"max_sessions" json:"max_sessions"`
	// PasswordChecks bounds the bcrypt password checks that run at once;
	// default half the CPUs (at least 1), so that a flood of sign-ins
	// leaves the rest to the API.
	PasswordChecks int `yaml:"password_checks" json:"password_checks"`
	// PasswordWait is how long a sign-in waits for a free check before it
	// is answered 503; default 2s.
	PasswordWait time.Duration `yaml:"password_wait" json:"password_wait"`
	// SecureCookie marks the cookies Secure (set it when served over TLS).
	SecureCookie bool `yaml:"secure_cookie" json:"secure_cookie"`
	// Disabled turns sign-in off: every request acts as an anonymous admin.
	// For tests of other parts only; twin-service warns when it is set.
	Disabled bool `yaml:"disabled" json:"disabled"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 10000
	}
	if c.PasswordChecks == 0 {
		c.PasswordChecks = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if c.PasswordWait == 0 {
		c.PasswordWait = 2 * time.Second
	}
}

// Validate checks names, roles and hashes.
func (c *Config) Validate() error {
	seen := map[string]bool{}
	for i, u := range c.Users {
		if u.Name == "" {
			return fmt.Errorf("auth: user %d has no name", i)
		}
		if seen[u.Name] {
			return fmt.Errorf("auth: user %q listed twice", u.Name)
		}
		seen[u.Name] = true
		if !u.Role.Valid() {
			return fmt.Errorf("auth: user %q: unknown role %q (want one of %v)", u.Name, u.Role, Roles())
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return fmt.Errorf("auth: user %q: password_hash is not a bcrypt hash: %w", u.Name, err)
		}
	}
	for i, t := range c.Tokens {
		if t.Name == "" {
			return fmt.Errorf("auth: token %d has no name", i)
		}
		if !t.Role.Valid() {
			return fmt.Errorf("auth: token %q: unknown role %q", t.Name, t.Role)
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("auth: token %q: sha256 must be 64 hex digits", t.Name)
		}
	}
	if c.SessionTTL < 0 || c.MaxSessions < 0 || c.PasswordChecks < 0 || c.PasswordWait < 0 {
		return errors.New("auth: session_ttl, max_sessions, password_checks and password_wait must not be negative")
	}
	return nil
}

// HashPassword makes the bcrypt hash to put in a UserConfig.
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", errors.New("password must have at least 8 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// HashToken is the hex SHA-256 of an API token, as TokenConfig stores it.
func HashToken(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

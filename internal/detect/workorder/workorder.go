// Package workorder keeps maintenance work orders: an asset, the changes
// expected on it (a firmware version, a move to a site or zone, a swapped
// part) and a time window, created by one person and approved by another
// with an approving role. An approved order explains the changes it names,
// so the detection engine raises no alert for them and records which order
// covered which event; a change the order does not name still alarms.
package workorder

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"twinchain/internal/twin"
)

// Errors the store returns; the API maps them to HTTP codes.
var (
	ErrNotFound  = errors.New("work order not found")
	ErrInvalid   = errors.New("invalid work order")
	ErrForbidden = errors.New("not allowed")
	ErrConflict  = errors.New("work order state conflict")
)

// State is where an order is in its life.
type State string

// Order states.
const (
	Pending   State = "pending"
	Approved  State = "approved"
	Cancelled State = "cancelled"
)

// Expected is one change an order allows: Field is a tracked field name
// (firmware.vbios, identity.uuid, site, location.zone, ...) or a family
// ("firmware", "identity", "location"); To is the new value, or "" / "*"
// for any value.
type Expected struct {
	Field string `json:"field"`
	To    string `json:"to,omitempty"`
}

// Coverage records one change an order explained.
type Coverage struct {
	Event  uint64    `json:"event,omitempty"` // event id, 0 when the change came from a message
	Asset  string    `json:"asset"`
	Field  string    `json:"field"`
	Value  string    `json:"value"`
	Time   time.Time `json:"time"`
	Detail string    `json:"detail,omitempty"` // the finding it explained
}

// Order is one work order.
type Order struct {
	ID           string     `json:"id"`
	Asset        string     `json:"asset"` // the asset, or a host whose GPUs it covers too
	Reason       string     `json:"reason,omitempty"`
	Changes      []Expected `json:"changes"`
	Start        time.Time  `json:"start"`
	End          time.Time  `json:"end"`
	State        State      `json:"state"`
	CreatedBy    string     `json:"created_by"`
	CreatorRole  string     `json:"creator_role"`
	CreatedAt    time.Time  `json:"created_at"`
	ApprovedBy   string     `json:"approved_by,omitempty"`
	ApproverRole string     `json:"approver_role,omitempty"`
	ApprovedAt   time.Time  `json:"approved_at,omitzero"`
	Covered      []Coverage `json:"covered,omitempty"`
}

// families are the field prefixes an Expected may name on its own.
var families = []string{"firmware", "identity", "location", "site", "parent", "custody", "registered"}

// Validate checks a new order's shape.
func (o *Order) Validate() error {
	var errs []string
	if o.Asset == "" {
		errs = append(errs, "asset is required")
	}
	if len(o.Changes) == 0 {
		errs = append(errs, "at least one expected change is required")
	}
	for i, c := range o.Changes {
		fam, _, _ := strings.Cut(c.Field, ".")
		if !slices.Contains(families, fam) {
			errs = append(errs, fmt.Sprintf("changes[%d]: field %q is not one of %s or a field under them", i, c.Field, strings.Join(families, ", ")))
		}
	}
	if o.Start.IsZero() || o.End.IsZero() || !o.End.After(o.Start) {
		errs = append(errs, "a window with start before end is required")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(errs, "; "), ErrInvalid)
	}
	return nil
}

// matches reports whether the expected change allows c.
func (e Expected) matches(c twin.Change) bool {
	if e.Field != c.Field && !strings.HasPrefix(c.Field, e.Field+".") {
		return false
	}
	return e.To == "" || e.To == "*" || e.To == c.New
}

// Covers returns the expected change of o that explains change c of asset
// at time t, if o is approved, its window holds t, and it names asset or one
// of the asset's ancestors (an order on a host covers its GPUs).
func (o *Order) Covers(asset string, ancestors []string, c twin.Change, t time.Time) bool {
	if o.State != Approved || t.Before(o.Start) || t.After(o.End) {
		return false
	}
	if o.Asset != asset && !slices.Contains(ancestors, o.Asset) {
		return false
	}
	for _, e := range o.Changes {
		if e.matches(c) {
			return true
		}
	}
	return false
}

// Policy says which roles may create and approve orders.
type Policy struct {
	CreatorRoles  []string `yaml:"creator_roles"`
	ApproverRoles []string `yaml:"approver_roles"`
}

// DefaultPolicy matches the sign-in roles (internal/httpapi/auth): maintenance or
// asset managers create, security or asset managers approve (never the
// creator), admin may do both.
func DefaultPolicy() Policy {
	return Policy{CreatorRoles: []string{"maintenance", "asset_manager", "admin"}, ApproverRoles: []string{"security", "asset_manager", "admin"}}
}

// Validate checks the policy names at least one role on each side.
func (p Policy) Validate() error {
	if len(p.CreatorRoles) == 0 || len(p.ApproverRoles) == 0 {
		return fmt.Errorf("creator_roles and approver_roles must each name a role")
	}
	return nil
}

// checkCreate checks who may create an order.
// CheckCreate tells whether user, in role, may create a work order.
func (p Policy) CheckCreate(user, role string) error {
	if user == "" {
		return fmt.Errorf("creating an order needs a user: %w", ErrForbidden)
	}
	if !slices.Contains(p.CreatorRoles, role) {
		return fmt.Errorf("role %q may not create work orders (allowed: %s): %w", role, strings.Join(p.CreatorRoles, ", "), ErrForbidden)
	}
	return nil
}

// checkApprove checks who may approve o: a different person with an approving role.
// CheckApprove tells whether user, in role, may approve o.
func (p Policy) CheckApprove(o *Order, user, role string) error {
	if user == "" {
		return fmt.Errorf("approving an order needs a user: %w", ErrForbidden)
	}
	if user == o.CreatedBy {
		return fmt.Errorf("%s created %s and may not approve it: %w", user, o.ID, ErrForbidden)
	}
	if !slices.Contains(p.ApproverRoles, role) {
		return fmt.Errorf("role %q may not approve work orders (allowed: %s): %w", role, strings.Join(p.ApproverRoles, ", "), ErrForbidden)
	}
	return nil
}

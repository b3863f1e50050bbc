package core

import "fmt"

// Custody across organisations. An asset belongs to the organisation that
// registered it (Asset.OwnerOrg, the caller's MSP). Only the owner offers
// its custody to another organisation (OfferCustody: in_transit); only that
// organisation accepts it (AcceptCustody: it becomes the owner). On arrival
// the receiving site's twin-service records the fingerprint it observed
// (RecordArrival): a fingerprint other than the ledger's is a substitution
// in transit, recorded in the asset's history, and the asset is quarantined.
//
// On Fabric every asset key also carries its owner's endorsement policy
// (state-based endorsement, KeyOwners), so even a peer running other code
// cannot move another organisation's asset: the owner's peers must endorse.

// KeyOwners is implemented by a State that can bind a key to the
// endorsement of one organisation (Fabric: a key-level endorsement policy
// requiring a peer of MSP org). The embedded ledger has one writer and
// enforces the owner rules in the core alone.
type KeyOwners interface {
	SetKeyOwner(key, org string) error
}

// Custody history entry types.
const (
	ChangeCustodyOffered  ChangeType = "custody_offered"
	ChangeCustodyAccepted ChangeType = "custody_accepted"
	ChangeArrival         ChangeType = "arrival_verified"
	ChangeSubstitution    ChangeType = "substitution"
)

var rolesCustody = []Role{RoleAdmin, RoleAssetManager}

// CustodyOffer is the input to OfferCustody.
type CustodyOffer struct {
	Asset  string `json:"asset"`
	To     string `json:"to"` // the receiving organisation (MSP id)
	Reason string `json:"reason,omitempty"`
}

// CustodyAccept is the input to AcceptCustody.
type CustodyAccept struct {
	Asset  string `json:"asset"`
	Reason string `json:"reason,omitempty"`
}

// Arrival is the input to RecordArrival: the fingerprint hash the receiving
// site observed when it first saw the asset.
type Arrival struct {
	Asset           string `json:"asset"`
	FingerprintHash string `json:"fingerprint_hash"`
	Site            string `json:"site,omitempty"`
}

// PendingCustody is an offer not accepted yet.
type PendingCustody struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Stamp Stamp  `json:"stamp"`
}

// requireOwner refuses a caller outside the asset's owner organisation.
func requireOwner(tx *Tx, a *Asset, what string) error {
	if tx.Caller.MSP != a.OwnerOrg {
		return fmt.Errorf("%s: asset %s belongs to %s, not the caller's %s: %w", what, a.ID, a.OwnerOrg, tx.Caller.MSP, ErrForbidden)
	}
	return nil
}

// bindOwner puts an asset's key under its owner's endorsement where the
// state can (Fabric).
func bindOwner(tx *Tx, a Asset) error {
	if ko, ok := tx.State.(KeyOwners); ok {
		if err := ko.SetKeyOwner(pfxAsset+a.ID, a.OwnerOrg); err != nil {
			return fmt.Errorf("endorsement policy of asset %s: %w", a.ID, err)
		}
	}
	return nil
}

// OfferCustody offers an asset's custody to another organisation. Roles:
// admin, asset_manager of the owner organisation. The asset goes in
// transit; offering again replaces the offer.
func OfferCustody(tx *Tx, in CustodyOffer) (Asset, error) {
	if err := begin(tx, "offer custody", rolesCustody); err != nil {
		return Asset{}, err
	}
	if err := checkText("receiving organisation", in.To, 128, true); err != nil {
		return Asset{}, err
	}
	return changeAsset(tx, in.Asset, in.Reason, ChangeCustodyOffered, func(a *Asset) (string, string, bool, error) {
		if err := requireOwner(tx, a, "offer custody"); err != nil {
			return "", "", false, err
		}
		if in.To == a.OwnerOrg {
			return "", "", false, fmt.Errorf("offer custody of %s to its owner %s: %w", a.ID, in.To, ErrInvalid)
		}
		if a.Status == StatusQuarantined {
			return "", "", false, fmt.Errorf("asset %s is quarantined: %w", a.ID, ErrConflict)
		}
		a.Pending = &PendingCustody{From: a.OwnerOrg, To: in.To, Stamp: tx.stamp()}
		a.Status = StatusInTransit
		return a.OwnerOrg, in.To, true, nil
	})
}

// AcceptCustody makes the organisation an asset was offered to its owner.
// Roles: admin, asset_manager of that organisation. The asset stays in
// transit until its arrival is recorded.
func AcceptCustody(tx *Tx, in CustodyAccept) (Asset, error) {
	if err := begin(tx, "accept custody", rolesCustody); err != nil {
		return Asset{}, err
	}
	a, err := changeAsset(tx, in.Asset, in.Reason, ChangeCustodyAccepted, func(a *Asset) (string, string, bool, error) {
		if a.Pending == nil {
			return "", "", false, fmt.Errorf("asset %s has no custody offer: %w", a.ID, ErrConflict)
		}
		if a.Pending.To != tx.Caller.MSP {
			return "", "", false, fmt.Errorf("accept custody: asset %s is offered to %s, not the caller's %s: %w", a.ID, a.Pending.To, tx.Caller.MSP, ErrForbidden)
		}
		old := a.OwnerOrg
		a.OwnerOrg, a.Pending = a.Pending.To, nil
		return old, a.OwnerOrg, true, nil
	})
	if err != nil {
		return Asset{}, err
	}
	return a, bindOwner(tx, a)
}

// RecordArrival compares the fingerprint the receiving site observed with
// the ledger's. Roles: admin, asset_manager, service of the owner
// organisation. Equal: the asset is in service (arrival_verified).
// Different: a substitution in transit; the history keeps both hashes and
// the asset is quarantined.
func RecordArrival(tx *Tx, in Arrival) (Asset, error) {
	if err := begin(tx, "record arrival", []Role{RoleAdmin, RoleAssetManager, RoleService}); err != nil {
		return Asset{}, err
	}
	if err := checkHash("observed fingerprint hash", in.FingerprintHash); err != nil {
		return Asset{}, err
	}
	if err := checkText("site", in.Site, 128, false); err != nil {
		return Asset{}, err
	}
	typ := ChangeArrival
	var a Asset
	if err := mustLoad(tx.State, pfxAsset+in.Asset, "asset", in.Asset, &a); err == nil && a.FingerprintHash != in.FingerprintHash {
		typ = ChangeSubstitution
	}
	return changeAsset(tx, in.Asset, in.Site, typ, func(a *Asset) (string, string, bool, error) {
		if err := requireOwner(tx, a, "record arrival"); err != nil {
			return "", "", false, err
		}
		if a.Pending != nil {
			return "", "", false, fmt.Errorf("asset %s is offered to %s and not accepted yet: %w", a.ID, a.Pending.To, ErrConflict)
		}
		if typ == ChangeSubstitution {
			a.Status = StatusQuarantined
			return a.FingerprintHash, in.FingerprintHash, true, nil
		}
		if a.Status == StatusInTransit {
			a.Status = StatusInService
		}
		return a.FingerprintHash, in.FingerprintHash, true, nil
	})
}

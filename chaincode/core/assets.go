package core

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"strings"
)

// Valid reports whether s is a known status.
func (s AssetStatus) Valid() bool {
	switch s {
	case StatusInService, StatusInTransit, StatusMaintenance, StatusQuarantined, StatusRetired:
		return true
	}
	return false
}

// begin checks the transaction and the caller's role for a write.
func begin(tx *Tx, what string, roles []Role) error {
	if tx == nil || tx.State == nil || tx.Time.IsZero() || tx.ID == "" {
		return fmt.Errorf("%s: transaction without id, time or state: %w", what, ErrInvalid)
	}
	return allow(tx, what, roles)
}

// beginRead checks the transaction and that the caller has a valid role.
func beginRead(tx *Tx) error {
	if tx == nil || tx.State == nil {
		return fmt.Errorf("read: transaction without state: %w", ErrInvalid)
	}
	return checkCaller(tx.Caller)
}

func checkPublicKey(kind, key string) error {
	if kind != AssetKindGateway {
		if key != "" {
			return fmt.Errorf("public key on a %s: only a gateway has one: %w", kind, ErrInvalid)
		}
		return nil
	}
	b, err := hex.DecodeString(key)
	if err != nil || len(b) != ed25519.PublicKeySize || key != strings.ToLower(key) {
		return fmt.Errorf("gateway public key must be %d bytes of lowercase hex: %w", ed25519.PublicKeySize, ErrInvalid)
	}
	return nil
}

// RegisterAsset records a new asset. Roles: admin, asset_manager, service.
// A gateway must carry its Ed25519 public key; no other kind may.
// Registering an id twice is a conflict.
func RegisterAsset(tx *Tx, in AssetRegistration) (Asset, error) {
	if err := begin(tx, "register asset", rolesRegisterAsset); err != nil {
		return Asset{}, err
	}
	a, found, err := registerAsset(tx, in)
	if err == nil && found {
		err = fmt.Errorf("asset %q already registered: %w", in.ID, ErrConflict)
	}
	return a, err
}

// MaxAssetsPerCall bounds RegisterAssets.
const MaxAssetsPerCall = 500

// RegisterAssets records new assets in one transaction, each as
// RegisterAsset does (the same roles and rules): a fleet's first contact
// brings its assets by the thousand, and on every ledger a transaction
// costs far more than a record. An id already registered is not a
// failure: that asset is left as it is and named in Existing (the caller
// decides what it means: an asset in transit arriving, or a repeat). Any
// other refusal refuses the whole call, as does an id given twice.
func RegisterAssets(tx *Tx, in AssetBatch) (RegisteredAssets, error) {
	if err := begin(tx, "register assets", rolesRegisterAsset); err != nil {
		return RegisteredAssets{}, err
	}
	if len(in.Assets) == 0 || len(in.Assets) > MaxAssetsPerCall {
		return RegisteredAssets{}, fmt.Errorf("%d assets in one call (1 to %d): %w", len(in.Assets), MaxAssetsPerCall, ErrInvalid)
	}
	// The state shows no write of this call: an id given twice would be
	// registered twice.
	seen := make(map[string]bool, len(in.Assets))
	var out RegisteredAssets
	for _, r := range in.Assets {
		if seen[r.ID] {
			return RegisteredAssets{}, fmt.Errorf("asset %q twice in one call: %w", r.ID, ErrInvalid)
		}
		seen[r.ID] = true
		a, found, err := registerAsset(tx, r)
		switch {
		case err != nil:
			return RegisteredAssets{}, err
		case found:
			out.Existing = append(out.Existing, r.ID)
		default:
			out.Assets = append(out.Assets, a)
		}
	}
	return out, nil
}

// registerAsset checks a registration and records it, or reports that
// the id is registered already (found, nothing written).
func registerAsset(tx *Tx, in AssetRegistration) (a Asset, found bool, err error) {
	if err := checkID("asset", in.ID); err != nil {
		return Asset{}, false, err
	}
	if err := checkID("asset kind", in.Kind); err != nil {
		return Asset{}, false, err
	}
	if err := checkHash("fingerprint hash", in.FingerprintHash); err != nil {
		return Asset{}, false, err
	}
	if err := checkPublicKey(in.Kind, in.PublicKey); err != nil {
		return Asset{}, false, err
	}
	owner := in.OwnerOrg
	if owner == "" {
		owner = tx.Caller.MSP
	}
	if err := checkText("owner org", owner, 128, true); err != nil {
		return Asset{}, false, err
	}
	if owner != tx.Caller.MSP {
		return Asset{}, false, fmt.Errorf("register asset %s for %s: an organisation registers its own assets (the caller's is %s): %w", in.ID, owner, tx.Caller.MSP, ErrForbidden)
	}
	status := in.Status
	if status == "" {
		status = StatusInService
	}
	if !status.Valid() || status == StatusRetired {
		return Asset{}, false, fmt.Errorf("initial status %q: %w", status, ErrInvalid)
	}
	if status == StatusQuarantined {
		if err := allow(tx, "register quarantined asset", rolesQuarantine); err != nil {
			return Asset{}, false, err
		}
	}
	if in.Kind == AssetKindGateway {
		if err := checkGatewayKeyPolicy(tx, tx.Caller.Role, "register gateway "+in.ID); err != nil {
			return Asset{}, false, err
		}
	}
	var old Asset
	if found, err = load(tx.State, pfxAsset+in.ID, &old); err != nil || found {
		return Asset{}, found, err
	}
	st := tx.stamp()
	in.OwnerOrg, in.Status = owner, status
	a = Asset{AssetRegistration: in, Revision: 1, Registered: st, Updated: st}
	if in.Kind == AssetKindGateway {
		a.KeyStamp = &st
	}
	if err := writeAsset(tx, a, ChangeRegistered, "", string(status), ""); err != nil {
		return Asset{}, false, err
	}
	return a, false, bindOwner(tx, a)
}

func writeAsset(tx *Tx, a Asset, typ ChangeType, old, new, reason string) error {
	if err := store(tx.State, pfxAsset+a.ID, a); err != nil {
		return err
	}
	c := AssetChange{Asset: a.ID, Revision: a.Revision, Type: typ, Old: old, New: new, Reason: reason, Stamp: a.Updated}
	return store(tx.State, pfxAssetChange+a.ID+"/"+pad(a.Revision), c)
}

// changeAsset loads an asset, lets change modify it and writes it with a
// history entry. change returns the old and new values, or ok=false for no
// change (nothing is written).
func changeAsset(tx *Tx, id, reason string, typ ChangeType, change func(a *Asset) (old, new string, ok bool, err error)) (Asset, error) {
	if err := checkID("asset", id); err != nil {
		return Asset{}, err
	}
	if err := checkText("reason", reason, 1024, false); err != nil {
		return Asset{}, err
	}
	var a Asset
	if err := mustLoad(tx.State, pfxAsset+id, "asset", id, &a); err != nil {
		return Asset{}, err
	}
	retired := a.Status == StatusRetired
	old, new, ok, err := change(&a) // checks the caller's role first
	switch {
	case err != nil:
		return Asset{}, err
	case !ok:
		return a, nil
	case retired:
		return Asset{}, fmt.Errorf("asset %q is retired: %w", id, ErrConflict)
	}
	a.Revision++
	a.Updated = tx.stamp()
	return a, writeAsset(tx, a, typ, old, new, reason)
}

// SetAssetStatus moves an asset to status. Who may depends on the move (see
// rolesForStatus): leaving quarantine takes security or admin; quarantining
// takes security, admin or service; maintenance moves take maintenance,
// asset_manager or admin; the rest asset_manager or admin. A retired asset
// never changes again. Setting the status it already has changes nothing.
func SetAssetStatus(tx *Tx, in StatusChange) (Asset, error) {
	id, status, reason := in.Asset, in.Status, in.Reason
	if err := begin(tx, "set asset status", Roles); err != nil {
		return Asset{}, err
	}
	if !status.Valid() {
		return Asset{}, fmt.Errorf("status %q: %w", status, ErrInvalid)
	}
	return changeAsset(tx, id, reason, ChangeStatus, func(a *Asset) (string, string, bool, error) {
		if err := allow(tx, fmt.Sprintf("asset %s from %s to %s", id, a.Status, status), rolesForStatus(a.Status, status)); err != nil {
			return "", "", false, err
		}
		if a.Status == status {
			return "", "", false, nil
		}
		old := a.Status
		a.Status = status
		return string(old), string(status), true, nil
	})
}

// UpdateFingerprint records an asset's new identity fingerprint, e.g. after
// an approved part swap. Roles: admin, asset_manager, maintenance. A reason
// (the work order) is required.
func UpdateFingerprint(tx *Tx, in FingerprintChange) (Asset, error) {
	id, fingerprintHash, reason := in.Asset, in.FingerprintHash, in.Reason
	if err := begin(tx, "update fingerprint", rolesFingerprint); err != nil {
		return Asset{}, err
	}
	if err := checkHash("fingerprint hash", fingerprintHash); err != nil {
		return Asset{}, err
	}
	if reason == "" {
		return Asset{}, fmt.Errorf("fingerprint change needs a reason: %w", ErrInvalid)
	}
	return changeAsset(tx, id, reason, ChangeFingerprint, func(a *Asset) (string, string, bool, error) {
		if a.FingerprintHash == fingerprintHash {
			return "", "", false, nil
		}
		old := a.FingerprintHash
		a.FingerprintHash = fingerprintHash
		return old, fingerprintHash, true, nil
	})
}

// SetGatewayKey replaces a gateway's public key (rotation or re-enrollment).
// Roles: admin, security. A reason is required. Setting the key the gateway
// already has confirms a key the service registered (a history entry and a
// new KeyStamp); for a key a person set it changes nothing.
func SetGatewayKey(tx *Tx, in KeyChange) (Asset, error) {
	id, publicKey, reason := in.Asset, in.PublicKey, in.Reason
	if err := begin(tx, "set gateway key", rolesGatewayKey); err != nil {
		return Asset{}, err
	}
	if err := checkPublicKey(AssetKindGateway, publicKey); err != nil {
		return Asset{}, err
	}
	if reason == "" {
		return Asset{}, fmt.Errorf("key change needs a reason: %w", ErrInvalid)
	}
	return changeAsset(tx, id, reason, ChangeKey, func(a *Asset) (string, string, bool, error) {
		if a.Kind != AssetKindGateway {
			return "", "", false, fmt.Errorf("asset %q is a %s, not a gateway: %w", id, a.Kind, ErrInvalid)
		}
		if a.PublicKey == publicKey && a.keyRole() != RoleService {
			return "", "", false, nil // already set by a person
		}
		old := a.PublicKey
		st := tx.stamp()
		a.PublicKey, a.KeyStamp = publicKey, &st
		return old, publicKey, true, nil
	})
}

// GetAsset returns an asset. Any role.
func GetAsset(tx *Tx, id string) (Asset, error) {
	return getRecord[Asset](tx, "asset", pfxAsset, id)
}

// GetAssetHistory returns an asset with every change and every piece of
// evidence recorded for it. Any role.
func GetAssetHistory(tx *Tx, id string) (AssetHistory, error) {
	a, err := GetAsset(tx, id)
	if err != nil {
		return AssetHistory{}, err
	}
	changes, err := scan[AssetChange](tx.State, pfxAssetChange+id+"/")
	if err != nil {
		return AssetHistory{}, err
	}
	ev, err := evidenceOf(tx.State, id)
	if err != nil {
		return AssetHistory{}, err
	}
	return AssetHistory{Asset: a, Changes: changes, Evidence: ev}, nil
}

package core

import (
	"strings"
	"testing"
	"time"
)

func TestRegisterAsset(t *testing.T) {
	key := pubHex(gatewayKey())
	ok := AssetRegistration{ID: "srv-s1-009.gpu3", Kind: "gpu", FingerprintHash: hashOf("fp")}
	tests := []struct {
		name string
		role Role
		edit func(a *AssetRegistration)
		want error
	}{
		{"gpu", RoleAssetManager, func(a *AssetRegistration) {}, nil},
		{"gateway with key", RoleService, func(a *AssetRegistration) { a.Kind, a.PublicKey = AssetKindGateway, key }, nil},
		{"quarantined by service", RoleService, func(a *AssetRegistration) { a.Status = StatusQuarantined }, nil},
		{"quarantined by asset manager", RoleAssetManager, func(a *AssetRegistration) { a.Status = StatusQuarantined }, ErrForbidden},
		{"in maintenance", RoleAdmin, func(a *AssetRegistration) { a.Status = StatusMaintenance }, nil},
		{"retired", RoleAdmin, func(a *AssetRegistration) { a.Status = StatusRetired }, ErrInvalid},
		{"unknown status", RoleAdmin, func(a *AssetRegistration) { a.Status = "lost" }, ErrInvalid},
		{"empty id", RoleAdmin, func(a *AssetRegistration) { a.ID = "" }, ErrInvalid},
		{"id with slash", RoleAdmin, func(a *AssetRegistration) { a.ID = "a/b" }, ErrInvalid},
		{"id starting with dash", RoleAdmin, func(a *AssetRegistration) { a.ID = "-a" }, ErrInvalid},
		{"id too long", RoleAdmin, func(a *AssetRegistration) { a.ID = strings.Repeat("a", 129) }, ErrInvalid},
		{"empty kind", RoleAdmin, func(a *AssetRegistration) { a.Kind = "" }, ErrInvalid},
		{"short fingerprint", RoleAdmin, func(a *AssetRegistration) { a.FingerprintHash = "abcd" }, ErrInvalid},
		{"upper-case fingerprint", RoleAdmin, func(a *AssetRegistration) { a.FingerprintHash = strings.ToUpper(hashOf("x")) }, ErrInvalid},
		{"gateway without key", RoleAdmin, func(a *AssetRegistration) { a.Kind = AssetKindGateway }, ErrInvalid},
		{"gateway short key", RoleAdmin, func(a *AssetRegistration) { a.Kind, a.PublicKey = AssetKindGateway, key[:62] }, ErrInvalid},
		{"gateway upper-case key", RoleAdmin, func(a *AssetRegistration) { a.Kind, a.PublicKey = AssetKindGateway, strings.ToUpper(key) }, ErrInvalid},
		{"gpu with key", RoleAdmin, func(a *AssetRegistration) { a.PublicKey = key }, ErrInvalid},
		{"registered twice", RoleAdmin, func(a *AssetRegistration) { a.ID = gpu0 }, ErrConflict},
		{"owner too long", RoleAdmin, func(a *AssetRegistration) { a.OwnerOrg = strings.Repeat("o", 129) }, ErrInvalid},
		{"another org's asset", RoleAdmin, func(a *AssetRegistration) { a.OwnerOrg = "Org2MSP" }, ErrForbidden},
	}
	for _, tt := range tests {
		l := world(t)
		in := ok
		tt.edit(&in)
		_, err := do(l, tt.role, func(tx *Tx) (Asset, error) { return RegisterAsset(tx, in) })
		wantErr(t, "RegisterAsset("+tt.name+")", err, tt.want)
		if err != nil {
			continue
		}
		stored := must(l, RoleAuditor, func(tx *Tx) (Asset, error) { return GetAsset(tx, in.ID) })
		if stored.Revision != 1 || stored.OwnerOrg != "Org1MSP" || stored.Registered.By != "u-"+string(tt.role) || stored.Status == "" {
			t.Errorf("RegisterAsset(%s) stored %+v, want revision 1, owner Org1MSP, by u-%s, a status", tt.name, stored, tt.role)
		}
	}
}

func TestTransactionContext(t *testing.T) {
	in := AssetRegistration{ID: "a1", Kind: "gpu", FingerprintHash: hashOf("a1")}
	for name, edit := range map[string]func(tx *Tx){
		"no time":  func(tx *Tx) { tx.Time = time.Time{} },
		"no tx id": func(tx *Tx) { tx.ID = "" },
	} {
		l := newLedger(t)
		tx := l.tx(RoleAdmin)
		edit(tx)
		_, err := RegisterAsset(tx, in)
		wantErr(t, "RegisterAsset("+name+")", err, ErrInvalid)
	}
	if _, err := GetAsset(&Tx{Caller: caller(RoleAdmin)}, "a1"); err == nil {
		t.Errorf("GetAsset(no state) = nil, want an error")
	}
}

func TestAssetChanges(t *testing.T) {
	other := hashOf("other key")
	tests := []struct {
		name string
		role Role
		call func(tx *Tx) (Asset, error)
		want error
	}{
		{"fingerprint", RoleMaintenance, func(tx *Tx) (Asset, error) {
			return UpdateFingerprint(tx, FingerprintChange{gpu0, hashOf("new"), "WO-1"})
		}, nil},
		{"fingerprint without reason", RoleMaintenance, func(tx *Tx) (Asset, error) {
			return UpdateFingerprint(tx, FingerprintChange{gpu0, hashOf("new"), ""})
		}, ErrInvalid},
		{"fingerprint bad hash", RoleMaintenance, func(tx *Tx) (Asset, error) {
			return UpdateFingerprint(tx, FingerprintChange{gpu0, "zz", "WO-1"})
		}, ErrInvalid},
		{"fingerprint unknown asset", RoleMaintenance, func(tx *Tx) (Asset, error) {
			return UpdateFingerprint(tx, FingerprintChange{"nope", hashOf("new"), "WO-1"})
		}, ErrNotFound},
		{"fingerprint bad id", RoleMaintenance, func(tx *Tx) (Asset, error) {
			return UpdateFingerprint(tx, FingerprintChange{"no/pe", hashOf("new"), "WO-1"})
		}, ErrInvalid},
		{"reason too long", RoleMaintenance, func(tx *Tx) (Asset, error) {
			return UpdateFingerprint(tx, FingerprintChange{gpu0, hashOf("new"), strings.Repeat("r", 1025)})
		}, ErrInvalid},
		{"key", RoleSecurity, func(tx *Tx) (Asset, error) { return SetGatewayKey(tx, KeyChange{gw, other, "rotated"}) }, nil},
		{"key on a gpu", RoleSecurity, func(tx *Tx) (Asset, error) { return SetGatewayKey(tx, KeyChange{gpu0, other, "rotated"}) }, ErrInvalid},
		{"key malformed", RoleSecurity, func(tx *Tx) (Asset, error) { return SetGatewayKey(tx, KeyChange{gw, "00", "rotated"}) }, ErrInvalid},
		{"key without reason", RoleSecurity, func(tx *Tx) (Asset, error) { return SetGatewayKey(tx, KeyChange{gw, other, ""}) }, ErrInvalid},
	}
	for _, tt := range tests {
		l := world(t)
		got, err := do(l, tt.role, tt.call)
		wantErr(t, tt.name, err, tt.want)
		if err == nil && got.Revision != 2 {
			t.Errorf("%s: revision %d, want 2", tt.name, got.Revision)
		}
	}
}

func TestAssetNoOpAndRetired(t *testing.T) {
	l := world(t)
	a := must(l, RoleMaintenance, func(tx *Tx) (Asset, error) {
		return UpdateFingerprint(tx, FingerprintChange{gpu0, hashOf(gpu0), "same"})
	})
	if a.Revision != 1 {
		t.Errorf("UpdateFingerprint(same hash) revision = %d, want 1 (no change)", a.Revision)
	}
	a = must(l, RoleAdmin, func(tx *Tx) (Asset, error) { return SetGatewayKey(tx, KeyChange{gw, pubHex(gatewayKey()), "same"}) })
	if a.Revision != 1 {
		t.Errorf("SetGatewayKey(same key) revision = %d, want 1 (no change)", a.Revision)
	}
	a = must(l, RoleAssetManager, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gpu0, StatusInService, ""}) })
	if a.Revision != 1 {
		t.Errorf("SetAssetStatus(same status) revision = %d, want 1 (no change)", a.Revision)
	}
	must(l, RoleAssetManager, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gpu0, StatusRetired, "eol"}) })
	_, err := do(l, RoleMaintenance, func(tx *Tx) (Asset, error) {
		return UpdateFingerprint(tx, FingerprintChange{gpu0, hashOf("x"), "WO-2"})
	})
	wantErr(t, "UpdateFingerprint(retired)", err, ErrConflict)
}

func TestAssetHistory(t *testing.T) {
	l := world(t)
	must(l, RoleSecurity, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gpu0, StatusQuarantined, "dbe"}) })
	must(l, RoleMaintenance, func(tx *Tx) (Asset, error) {
		return UpdateFingerprint(tx, FingerprintChange{gpu0, hashOf("new board"), "WO-9"})
	})
	must(l, RoleService, func(tx *Tx) (Evidence, error) {
		return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: EvidenceFirmware, Envelope: goldenEnvelopes(t)["firmware"]})
	})
	h := must(l, RoleAuditor, func(tx *Tx) (AssetHistory, error) { return GetAssetHistory(tx, gpu0) })
	want := []struct {
		typ      ChangeType
		old, new string
	}{
		{ChangeRegistered, "", "in_service"},
		{ChangeStatus, "in_service", "quarantined"},
		{ChangeFingerprint, hashOf(gpu0), hashOf("new board")},
	}
	if len(h.Changes) != len(want) {
		t.Fatalf("GetAssetHistory changes = %+v, want %d", h.Changes, len(want))
	}
	for i, w := range want {
		c := h.Changes[i]
		if c.Revision != uint64(i+1) || c.Type != w.typ || c.Old != w.old || c.New != w.new {
			t.Errorf("change %d = %+v, want revision %d %s %q -> %q", i, c, i+1, w.typ, w.old, w.new)
		}
	}
	if h.Changes[1].Reason != "dbe" || h.Changes[1].Stamp.Role != RoleSecurity {
		t.Errorf("status change = %+v, want reason dbe by security", h.Changes[1])
	}
	if len(h.Evidence) != 1 || h.Evidence[0].Kind != EvidenceFirmware || h.Asset.Revision != 3 {
		t.Errorf("history evidence %d, revision %d, want 1 firmware evidence and revision 3", len(h.Evidence), h.Asset.Revision)
	}
	_, err := do(l, RoleAuditor, func(tx *Tx) (AssetHistory, error) { return GetAssetHistory(tx, "nope") })
	wantErr(t, "GetAssetHistory(unknown)", err, ErrNotFound)
}

package core

import (
	"errors"
	"fmt"
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

// TestRegisterAssets: one call records every new asset as RegisterAsset
// would, names the ids registered before and leaves them as they were; an
// id given twice, an invalid registration, or a count outside 1 to
// MaxAssetsPerCall refuses the whole call and writes nothing.
func TestRegisterAssets(t *testing.T) {
	key := pubHex(gatewayKey())
	reg := func(id string) AssetRegistration {
		return AssetRegistration{ID: id, Kind: "gpu", FingerprintHash: hashOf("batch " + id)}
	}
	l := world(t)
	before := must(l, RoleAuditor, func(tx *Tx) (Asset, error) { return GetAsset(tx, gpu0) })
	in := []AssetRegistration{reg("srv-s1-002.gpu0"), reg(gpu0), {ID: "gw-s1-02", Kind: AssetKindGateway, FingerprintHash: hashOf("gw2"), PublicKey: key}, reg("srv-s1-002.gpu1")}
	got := must(l, RoleService, func(tx *Tx) (RegisteredAssets, error) { return RegisterAssets(tx, AssetBatch{Assets: in}) })
	if len(got.Assets) != 3 || got.Assets[0].ID != "srv-s1-002.gpu0" || got.Assets[1].ID != "gw-s1-02" || got.Assets[2].ID != "srv-s1-002.gpu1" {
		t.Fatalf("RegisterAssets recorded %+v, want the three new ids in the order given", got.Assets)
	}
	if len(got.Existing) != 1 || got.Existing[0] != gpu0 {
		t.Errorf("RegisterAssets existing = %v, want [%s]", got.Existing, gpu0)
	}
	for _, r := range []AssetRegistration{in[0], in[2], in[3]} {
		a, err := do(l, RoleAuditor, func(tx *Tx) (Asset, error) { return GetAsset(tx, r.ID) })
		if err != nil || a.Revision != 1 || a.FingerprintHash != r.FingerprintHash || a.PublicKey != r.PublicKey || a.Registered.By != "u-service" || a.Status != StatusInService {
			t.Errorf("%s after RegisterAssets = %+v, %v; want revision 1, its fingerprint and key, by u-service, in service", r.ID, a, err)
		}
		h, err := do(l, RoleAuditor, func(tx *Tx) (AssetHistory, error) { return GetAssetHistory(tx, r.ID) })
		if err != nil || len(h.Changes) != 1 || h.Changes[0].Type != ChangeRegistered {
			t.Errorf("%s history = %+v, %v; want one registration", r.ID, h.Changes, err)
		}
	}
	if a := must(l, RoleAuditor, func(tx *Tx) (Asset, error) { return GetAsset(tx, gpu0) }); a.Revision != before.Revision || a.FingerprintHash != before.FingerprintHash {
		t.Errorf("%s after a batch naming it = %+v, want it unchanged (%+v)", gpu0, a, before)
	}

	many := make([]AssetRegistration, MaxAssetsPerCall+1)
	for i := range many {
		many[i] = reg(fmt.Sprintf("bulk-%04d", i))
	}
	refused := map[string][]AssetRegistration{
		"none":           nil,
		"too many":       many,
		"an id twice":    {reg("dup-1"), reg("new-2"), reg("dup-1")},
		"one invalid":    {reg("new-3"), {ID: "bad id!", Kind: "gpu", FingerprintHash: hashOf("x")}},
		"gpu with a key": {reg("new-4"), {ID: "new-5", Kind: "gpu", FingerprintHash: hashOf("x"), PublicKey: key}},
	}
	for name, in := range refused {
		dump := l.st.dump()
		_, err := do(l, RoleService, func(tx *Tx) (RegisteredAssets, error) { return RegisterAssets(tx, AssetBatch{Assets: in}) })
		wantErr(t, "RegisterAssets("+name+")", err, ErrInvalid)
		if l.st.dump() != dump {
			t.Errorf("RegisterAssets(%s) was refused but changed the state", name)
		}
	}
	_, err := do(l, RoleAssetManager, func(tx *Tx) (RegisteredAssets, error) {
		return RegisterAssets(tx, AssetBatch{Assets: []AssetRegistration{reg("new-6"), {ID: "new-7", Kind: "gpu", FingerprintHash: hashOf("x"), Status: StatusQuarantined}}})
	})
	wantErr(t, "RegisterAssets(a quarantined one by an asset manager)", err, ErrForbidden)
	if _, err := do(l, RoleAuditor, func(tx *Tx) (Asset, error) { return GetAsset(tx, "new-6") }); !errors.Is(err, ErrNotFound) {
		t.Errorf("new-6 after a refused batch: %v, want not found", err)
	}
	// The largest batch allowed goes through.
	if got := must(l, RoleService, func(tx *Tx) (RegisteredAssets, error) {
		return RegisterAssets(tx, AssetBatch{Assets: many[:MaxAssetsPerCall]})
	}); len(got.Assets) != MaxAssetsPerCall {
		t.Errorf("RegisterAssets(%d) recorded %d", MaxAssetsPerCall, len(got.Assets))
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

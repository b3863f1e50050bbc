package core

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestInvoke(t *testing.T) {
	l := world(t)
	arg := `{"id":"gpu-x","kind":"gpu","fingerprint_hash":"` + hashOf("x") + `"}`
	out, err := do(l, RoleAdmin, func(tx *Tx) ([]byte, error) { return Invoke(tx, "RegisterAsset", []byte(arg)) })
	if err != nil {
		t.Fatalf("Invoke(RegisterAsset) = %v", err)
	}
	var a Asset
	if err := json.Unmarshal(out, &a); err != nil || a.ID != "gpu-x" || a.Revision != 1 {
		t.Errorf("Invoke(RegisterAsset) = %s, %v, want the asset", out, err)
	}
	out, err = do(l, RoleAuditor, func(tx *Tx) ([]byte, error) { return Invoke(tx, "GetAsset", []byte(`{"id":"gpu-x"}`)) })
	if err != nil || !strings.Contains(string(out), `"id":"gpu-x"`) {
		t.Errorf("Invoke(GetAsset) = %s, %v", out, err)
	}
	for _, tt := range []struct {
		name, fn, arg string
		want          error
	}{
		{"unknown function", "DropTables", `{}`, ErrNotFound},
		{"unknown field", "GetAsset", `{"id":"gpu-x","extra":1}`, ErrInvalid},
		{"trailing data", "GetAsset", `{"id":"gpu-x"} {}`, ErrInvalid},
		{"not json", "GetAsset", `id=gpu-x`, ErrInvalid},
		{"wrong type", "GetAnchor", `{"seq":"one"}`, ErrInvalid},
		{"empty argument", "GetAsset", ``, ErrInvalid},
		{"empty argument, no args", "AnchorHead", ``, ErrNotFound},
	} {
		_, err := do(l, RoleAuditor, func(tx *Tx) ([]byte, error) { return Invoke(tx, tt.fn, []byte(tt.arg)) })
		wantErr(t, "Invoke("+tt.name+")", err, tt.want)
	}
	seen := map[string]bool{}
	for _, f := range Functions() {
		if seen[f.Name] {
			t.Errorf("Functions() lists %s twice", f.Name)
		}
		seen[f.Name] = true
		if g, ok := Lookup(f.Name); !ok || g.Write != f.Write {
			t.Errorf("Lookup(%s) = %v, %v", f.Name, g.Write, ok)
		}
	}
}

// TestDeterminism replays the same transactions on two fresh states and
// compares every byte written, as two endorsing peers would.
func TestDeterminism(t *testing.T) {
	build := func() string {
		l := mlWorld(t)
		l.approveAll("m1")
		must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, deployment("d1", "m1", gpu0, gpu1)) })
		env := seal(t, gatewayKey(), gw, 9, t0, "telemetry", telemetry(gpu0, 1, 1, false))
		must(l, RoleService, func(tx *Tx) (Evidence, error) {
			return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: EvidenceECCDBE, Envelope: env})
		})
		must(l, RoleService, func(tx *Tx) (Anchor, error) { return SubmitAnchor(tx, anchorIn(1, 100, "r")) })
		xs := must(l, RoleAuditor, func(tx *Tx) ([]byte, error) {
			return Invoke(tx, "ModelLineage", []byte(`{"id":"m1"}`))
		})
		return l.st.dump() + "\n" + string(xs)
	}
	a, b := build(), build()
	if a != b {
		t.Errorf("two runs of the same transactions wrote different state")
	}
	if !strings.Contains(a, "deployasset/"+gpu1+"/") || !strings.Contains(a, "anchorhead=1") {
		t.Errorf("state lacks the expected keys:\n%s", a)
	}
}

func TestCodedMessages(t *testing.T) {
	l := world(t)
	for _, tt := range []struct {
		err  error
		code string
	}{
		{func() error { _, err := GetAsset(l.tx(RoleAuditor), "nope"); return err }(), "not_found"},
		{func() error { _, err := GetAsset(l.tx(""), gpu0); return err }(), "forbidden"},
		{func() error { _, err := GetAsset(l.tx(RoleAuditor), "a b"); return err }(), "invalid"},
		{func() error {
			_, err := RegisterAsset(l.tx(RoleAdmin), AssetRegistration{ID: gpu0, Kind: "gpu", FingerprintHash: hashOf("x")})
			return err
		}(), "conflict"},
		{errors.New("disk on fire"), "internal"},
	} {
		msg := CodedMessage(tt.err)
		if got := Code(tt.err); got != tt.code || !strings.HasPrefix(msg, "["+tt.code+"] ") {
			t.Errorf("Code(%v) = %s, message %q, want %s", tt.err, got, msg, tt.code)
		}
		back := ParseCodedMessage("endorse: chaincode response 500, " + msg)
		if Code(back) != tt.code || !strings.Contains(back.Error(), strings.TrimPrefix(msg, "["+tt.code+"] ")[:5]) {
			t.Errorf("ParseCodedMessage(%q) = %v (code %s), want code %s", msg, back, Code(back), tt.code)
		}
	}
}

// TestEmptyListsAreArrays: a query with nothing to list answers [] (not null).
func TestEmptyListsAreArrays(t *testing.T) {
	l := world(t)
	for _, q := range []struct{ fn, arg string }{
		{"ListEvidence", `{"id":"srv-s1-001.gpu0"}`}, {"ModelsTrainedOn", `{"id":"srv-s1-001.gpu0"}`},
		{"DeploymentsOn", `{"id":"srv-s1-001.gpu0"}`}, {"ModelsExposedTo", `{"asset":"srv-s1-001.gpu0"}`},
		{"ListAttestations", `{"subject_kind":"model","subject":"m1"}`},
	} {
		out, err := do(l, RoleAuditor, func(tx *Tx) ([]byte, error) { return Invoke(tx, q.fn, []byte(q.arg)) })
		if err != nil || string(out) != "[]" {
			t.Errorf("Invoke(%s) = %s, %v, want []", q.fn, out, err)
		}
	}
	out, err := do(l, RoleAuditor, func(tx *Tx) ([]byte, error) {
		return Invoke(tx, "GetAssetHistory", []byte(`{"id":"srv-s1-001.gpu0"}`))
	})
	if err != nil || !strings.Contains(string(out), `"evidence":[]`) {
		t.Errorf("Invoke(GetAssetHistory) = %s, %v, want evidence []", out, err)
	}
}

package core

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeArgs returns a valid argument for every write function in mlWorld.
func writeArgs(t *testing.T) map[string]any {
	firmware := goldenEnvelopes(t)["firmware"]
	return map[string]any{
		"RegisterAsset":       AssetRegistration{ID: "new-1", Kind: "gpu", FingerprintHash: hashOf("new-1")},
		"RegisterAssets":      AssetBatch{Assets: []AssetRegistration{{ID: "new-1", Kind: "gpu", FingerprintHash: hashOf("new-1")}, {ID: gpu0, Kind: "gpu", FingerprintHash: hashOf("x")}}},
		"SetAssetStatus":      StatusChange{Asset: gpu0, Status: StatusInTransit, Reason: "to s2"},
		"UpdateFingerprint":   FingerprintChange{Asset: gpu0, FingerprintHash: hashOf("swapped"), Reason: "WO-17"},
		"SetGatewayKey":       KeyChange{Asset: gw, PublicKey: hashOf("another key"), Reason: "re-enrolled"},
		"SubmitAnchor":        AnchorInput{Root: hashOf("root"), FirstEvent: 1, LastEvent: 10, FirstTime: t0, LastTime: t0.Add(time.Minute), Size: 10},
		"SubmitAnchors":       AnchorBatch{Anchors: []AnchorInput{{Root: hashOf("root"), FirstEvent: 1, LastEvent: 10, FirstTime: t0, LastTime: t0.Add(time.Minute), Size: 10}}},
		"RecordEvidence":      EvidenceInput{Asset: gpu0, Kind: EvidenceFirmware, Envelope: firmware},
		"RegisterDataset":     rootDataset("ds-new"),
		"AddQualityChecks":    QualityChecksInput{Dataset: "ds-raw", Checks: []QualityCheckInput{{"dupes", 0, 0.01, AtMost}}},
		"RegisterModel":       modelInput("m-new", "ds-lab"),
		"AddEvaluation":       EvaluationInput{Model: "m1", Name: "again", Metrics: []Metric{{"accuracy", 0.95}}},
		"Attest":              AttestationInput{SubjectKind: SubjectModel, Subject: "m1", SubjectHash: hashOf("m1"), Decision: Approve},
		"SetPolicy":           PolicyInput{ID: "prod2", RequiredRoles: []Role{RoleSecurity}},
		"RequestDeployment":   deployment("d-new", "m1", gpu0),
		"SetGatewayKeyPolicy": GatewayKeyPolicy{TrustedKeysOnly: true},
		"OfferCustody":        CustodyOffer{Asset: gpu0, To: "Org2MSP"},
		"RecordArrival":       Arrival{Asset: gpu0, FingerprintHash: hashOf("observed")},
	}
}

// TestRoleMatrix pins who may call each write function: every other role
// is refused with ErrForbidden and writes nothing; every allowed role
// succeeds on the same input.
func TestRoleMatrix(t *testing.T) {
	allowed := map[string][]Role{
		"RegisterAsset":       {RoleAdmin, RoleAssetManager, RoleService},
		"RegisterAssets":      {RoleAdmin, RoleAssetManager, RoleService},
		"SetAssetStatus":      {RoleAdmin, RoleAssetManager},
		"UpdateFingerprint":   {RoleAdmin, RoleAssetManager, RoleMaintenance},
		"SetGatewayKey":       {RoleAdmin, RoleSecurity},
		"SubmitAnchor":        {RoleService},
		"SubmitAnchors":       {RoleService},
		"RecordEvidence":      {RoleService, RoleSecurity},
		"RegisterDataset":     {RoleMLEngineer, RoleMLLead, RoleService},
		"AddQualityChecks":    {RoleMLEngineer, RoleMLLead, RoleCompliance, RoleService},
		"RegisterModel":       {RoleMLEngineer, RoleMLLead, RoleService},
		"AddEvaluation":       {RoleMLEngineer, RoleMLLead, RoleService},
		"Attest":              {RoleMLLead, RoleSecurity, RoleCompliance},
		"SetPolicy":           {RoleAdmin, RoleCompliance},
		"RequestDeployment":   {RoleMLEngineer, RoleMLLead, RoleService},
		"SetGatewayKeyPolicy": {RoleAdmin, RoleSecurity},
		"OfferCustody":        {RoleAdmin, RoleAssetManager},
		"RecordArrival":       {RoleAdmin, RoleAssetManager, RoleService},
	}
	args := writeArgs(t)
	for _, f := range Functions() {
		// AcceptCustody needs an offer to the caller's org first, PutDatasetPrivate
		// transient data and a private store: ledgertest's Custody and Private.
		if !f.Write || f.Name == "AcceptCustody" || f.Name == "PutDatasetPrivate" {
			continue
		}
		if strings.HasSuffix(f.Name, "Remediation") || f.Name == "RecordRemediationStop" { // need a deployment, a proposal, approvals: TestRemediation, TestRemediationStop
			continue
		}
		roles, ok := allowed[f.Name]
		if !ok {
			t.Errorf("write function %s has no row in the role matrix", f.Name)
			continue
		}
		arg, err := json.Marshal(args[f.Name])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range append(slices.Clone(Roles), "", "root") {
			l := mlWorld(t)
			before := l.st.dump()
			_, err := do(l, r, func(tx *Tx) ([]byte, error) { return f.Invoke(tx, arg) })
			switch {
			case slices.Contains(roles, r) && err != nil:
				t.Errorf("%s as %q = %v, want nil", f.Name, r, err)
			case !slices.Contains(roles, r) && !errors.Is(err, ErrForbidden):
				t.Errorf("%s as %q = %v, want ErrForbidden", f.Name, r, err)
			case !slices.Contains(roles, r) && l.st.dump() != before:
				t.Errorf("%s as %q was refused but changed the state", f.Name, r)
			}
		}
	}
}

// TestReadsOpenToEveryRole checks that every read function accepts every
// valid role and refuses a caller without a role or id.
func TestReadsOpenToEveryRole(t *testing.T) {
	l := mlWorld(t)
	must(l, RoleService, func(tx *Tx) (Anchor, error) {
		return SubmitAnchor(tx, AnchorInput{Root: hashOf("r"), FirstEvent: 1, LastEvent: 3, FirstTime: t0, LastTime: t0, Size: 3})
	})
	args := map[string]any{
		"GetAsset": IDQuery{gpu0}, "GetAssetHistory": IDQuery{gpu0}, "ListEvidence": IDQuery{gpu0},
		"AnchorHead": ChainQuery{}, "GetGatewayKeyPolicy": NoArgs{}, "GetAnchor": SeqQuery{Seq: 1}, "AnchorForEvent": EventQuery{Event: 2},
		"GetDataset": IDQuery{"ds-lab"}, "GetModel": IDQuery{"m1"}, "ListAttestations": SubjectQuery{SubjectModel, "m1"},
		"GetPolicy": IDQuery{"prod"}, "GetDeployment": IDQuery{"none"}, "DeploymentsOn": IDQuery{gpu0}, "DeploymentsOf": IDQuery{"m1"},
		"ModelLineage": IDQuery{"m1"}, "ModelsTrainedOn": IDQuery{gpu0}, "ModelsExposedTo": ExposureQuery{Asset: gpu0},
		"ListDatasets": PageQuery{}, "ListModels": PageQuery{Limit: 1}, "ListDeployments": PageQuery{}, "GetRemediation": IDQuery{"none"}, "ListRemediations": PageQuery{},
		// ds-lab keeps no private metadata: not found, for every role.
		"GetDatasetPrivate": IDQuery{"ds-lab"}, "VerifyDatasetPrivate": Disclosure{Dataset: "ds-lab", Data: []byte(`{}`)},
	}
	notFound := []string{"GetDeployment", "GetRemediation", "GetDatasetPrivate", "VerifyDatasetPrivate"}
	for _, f := range Functions() {
		if f.Write {
			continue
		}
		a, ok := args[f.Name]
		if !ok {
			t.Errorf("read function %s has no test argument", f.Name)
			continue
		}
		arg, _ := json.Marshal(a)
		for _, r := range Roles {
			_, err := f.Invoke(l.tx(r), arg)
			if errors.Is(err, ErrForbidden) || err != nil && !slices.Contains(notFound, f.Name) {
				t.Errorf("%s as %s = %v, want nil", f.Name, r, err)
			}
		}
		for _, c := range []Caller{{ID: "x", Role: ""}, {ID: "x", Role: "root"}, {ID: "", Role: RoleAuditor}} {
			tx := l.tx(RoleAuditor)
			tx.Caller = c
			if _, err := f.Invoke(tx, arg); !errors.Is(err, ErrForbidden) {
				t.Errorf("%s as %+v = %v, want ErrForbidden", f.Name, c, err)
			}
		}
	}
}

// TestStatusTransitions covers who may move an asset between statuses.
func TestStatusTransitions(t *testing.T) {
	tests := []struct {
		from, to AssetStatus
		role     Role
		want     error
	}{
		{StatusInService, StatusQuarantined, RoleSecurity, nil},
		{StatusInService, StatusQuarantined, RoleService, nil},
		{StatusInService, StatusQuarantined, RoleAdmin, nil},
		{StatusInService, StatusQuarantined, RoleAssetManager, ErrForbidden},
		{StatusInService, StatusQuarantined, RoleMaintenance, ErrForbidden},
		{StatusQuarantined, StatusInService, RoleSecurity, nil},
		{StatusQuarantined, StatusInService, RoleAdmin, nil},
		{StatusQuarantined, StatusInService, RoleAssetManager, ErrForbidden},
		{StatusQuarantined, StatusInService, RoleService, ErrForbidden},
		{StatusQuarantined, StatusMaintenance, RoleMaintenance, ErrForbidden},
		{StatusQuarantined, StatusRetired, RoleAssetManager, ErrForbidden},
		{StatusQuarantined, StatusRetired, RoleSecurity, nil},
		{StatusInService, StatusMaintenance, RoleMaintenance, nil},
		{StatusInService, StatusMaintenance, RoleAssetManager, nil},
		{StatusInService, StatusMaintenance, RoleSecurity, ErrForbidden},
		{StatusInService, StatusMaintenance, RoleMLEngineer, ErrForbidden},
		{StatusMaintenance, StatusInService, RoleMaintenance, nil},
		{StatusMaintenance, StatusInTransit, RoleMaintenance, ErrForbidden},
		{StatusMaintenance, StatusInTransit, RoleAssetManager, nil},
		{StatusInService, StatusInTransit, RoleAssetManager, nil},
		{StatusInService, StatusInTransit, RoleService, ErrForbidden},
		{StatusInService, StatusRetired, RoleAssetManager, nil},
		{StatusInService, StatusRetired, RoleAuditor, ErrForbidden},
		{StatusInService, StatusRetired, RoleGateway, ErrForbidden},
		{StatusRetired, StatusInService, RoleAdmin, ErrConflict},
		{StatusRetired, StatusInService, RoleAuditor, ErrForbidden},
		{StatusRetired, StatusRetired, RoleAssetManager, nil},
		{StatusInService, "broken", RoleAdmin, ErrInvalid},
	}
	for _, tt := range tests {
		l := world(t)
		if tt.from != StatusInService {
			must(l, RoleAdmin, func(tx *Tx) (Asset, error) {
				return SetAssetStatus(tx, StatusChange{Asset: gpu0, Status: tt.from})
			})
		}
		before := must(l, RoleAuditor, func(tx *Tx) (Asset, error) { return GetAsset(tx, gpu0) })
		got, err := do(l, tt.role, func(tx *Tx) (Asset, error) {
			return SetAssetStatus(tx, StatusChange{Asset: gpu0, Status: tt.to, Reason: "test"})
		})
		wantErr(t, "SetAssetStatus("+string(tt.from)+" -> "+string(tt.to)+" as "+string(tt.role)+")", err, tt.want)
		after := must(l, RoleAuditor, func(tx *Tx) (Asset, error) { return GetAsset(tx, gpu0) })
		wantRev := before.Revision + 1
		if tt.from == tt.to {
			wantRev-- // setting the status an asset has changes nothing
		}
		switch {
		case tt.want == nil && (got.Status != tt.to || after.Status != tt.to || after.Revision != wantRev):
			t.Errorf("after %s -> %s: status %s revision %d, want %s revision %d", tt.from, tt.to, after.Status, after.Revision, tt.to, wantRev)
		case tt.want != nil && after.Status != tt.from:
			t.Errorf("refused %s -> %s left status %s", tt.from, tt.to, after.Status)
		}
	}
}

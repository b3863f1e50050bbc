// Package ledgertest is the contract every ledger.Ledger backend passes:
// Run(t, open) exercises registrations, roles, the anchor chain, hardware
// evidence with gateway-signed envelopes, datasets, models, attestations,
// the deployment gate and the lineage queries through the interface only.
package ledgertest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/wire"
)

// As returns ctx acting as a caller with role.
func As(role core.Role) context.Context {
	return ledger.WithCaller(context.Background(), core.Caller{ID: "test-" + string(role), Role: role})
}

// IsCaller reports whether a record's By names the caller id: the id
// itself (the embedded ledger), or a Fabric identity whose subject CN is id
// ("x509::CN=id,OU=...::CN=issuer...").
func IsCaller(by, id string) bool {
	return by == id || strings.HasPrefix(by, "x509::CN="+id+",") || strings.HasPrefix(by, "x509::CN="+id+"::")
}

// Hash is the hex SHA-256 of s, a valid record hash.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// GatewayKey is the Ed25519 key of the gateway the suite registers.
var GatewayKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, 32))

type suiteCase struct {
	name string
	f    func(t *testing.T, l ledger.Ledger)
}

// Run runs the contract suite. open returns a fresh, empty ledger for each
// subtest; the suite closes it.
func Run(t *testing.T, open func(t *testing.T) ledger.Ledger) {
	run(t, open, []suiteCase{
		{"Assets", testAssets},
		{"Anchors", testAnchors},
		{"AnchorChains", testAnchorChains},
		{"Evidence", testEvidence},
		{"Provenance", testProvenance},
		{"Remediation", testRemediation},
		{"Concurrent", testConcurrent},
	})
}

// RunAnchors runs the suite's anchor cases only, for a path that carries
// the anchoring calls alone (a ledgerlink client); open's ledger must have
// OnChain (a *ledger.Client).
func RunAnchors(t *testing.T, open func(t *testing.T) ledger.Ledger) {
	run(t, open, []suiteCase{{"Anchors", testAnchors}, {"AnchorChains", testAnchorChains}})
}

func run(t *testing.T, open func(t *testing.T) ledger.Ledger, cases []suiteCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t)
			t.Cleanup(func() {
				if err := l.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.f(t, l)
		})
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}

// Must wraps a ledger call the test needs to succeed:
// Must[core.Asset](t, "RegisterAsset")(l.RegisterAsset(...)).
func Must[T any](t testing.TB, what string) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func gpu(id string) core.AssetRegistration {
	return core.AssetRegistration{ID: id, Kind: "gpu", FingerprintHash: Hash("fp " + id)}
}

func testAssets(t *testing.T, l ledger.Ledger) {
	am := As(core.RoleAssetManager)
	a := Must[core.Asset](t, "RegisterAsset")(l.RegisterAsset(am, gpu("srv-s1-001.gpu0")))
	if a.ID != "srv-s1-001.gpu0" || a.Status != core.StatusInService || a.Revision != 1 {
		t.Errorf("RegisterAsset = %+v, want id srv-s1-001.gpu0, in_service, revision 1", a)
	}
	got := Must[core.Asset](t, "GetAsset")(l.GetAsset(As(core.RoleAuditor), "srv-s1-001.gpu0"))
	if got.FingerprintHash != a.FingerprintHash || !IsCaller(got.Registered.By, "test-asset_manager") {
		t.Errorf("GetAsset = %+v, want the registration by test-asset_manager", got)
	}
	_, err := l.RegisterAsset(am, gpu("srv-s1-001.gpu0"))
	wantErr(t, "RegisterAsset(twice)", err, ledger.ErrConflict)
	_, err = l.RegisterAsset(As(core.RoleAuditor), gpu("srv-s1-001.gpu1"))
	wantErr(t, "RegisterAsset(as auditor)", err, ledger.ErrForbidden)
	_, err = l.RegisterAsset(context.Background(), gpu("srv-s1-001.gpu1"))
	wantErr(t, "RegisterAsset(no caller)", err, ledger.ErrForbidden)
	_, err = l.RegisterAsset(am, core.AssetRegistration{ID: "bad id!", Kind: "gpu", FingerprintHash: Hash("x")})
	wantErr(t, "RegisterAsset(bad id)", err, ledger.ErrInvalid)
	_, err = l.GetAsset(am, "nope")
	wantErr(t, "GetAsset(missing)", err, ledger.ErrNotFound)

	q := core.StatusChange{Asset: "srv-s1-001.gpu0", Status: core.StatusQuarantined, Reason: "substitution"}
	a = Must[core.Asset](t, "SetAssetStatus(quarantine)")(l.SetAssetStatus(As(core.RoleService), q))
	if a.Status != core.StatusQuarantined || a.Revision != 2 {
		t.Errorf("after quarantine = %s revision %d, want quarantined revision 2", a.Status, a.Revision)
	}
	back := core.StatusChange{Asset: "srv-s1-001.gpu0", Status: core.StatusInService, Reason: "cleared"}
	_, err = l.SetAssetStatus(am, back)
	wantErr(t, "SetAssetStatus(leave quarantine as asset_manager)", err, ledger.ErrForbidden)
	Must[core.Asset](t, "SetAssetStatus(leave quarantine as security)")(l.SetAssetStatus(As(core.RoleSecurity), back))
	h := Must[core.AssetHistory](t, "AssetHistory")(l.AssetHistory(am, "srv-s1-001.gpu0"))
	if fmt.Sprint(len(h.Changes)) != "3" {
		t.Errorf("AssetHistory has %d changes (%+v), want 3", len(h.Changes), h)
	}

	// A batch: the new ids recorded, gpu0 (registered above) named and
	// left as it is; a batch naming an id twice writes nothing.
	b := Must[core.RegisteredAssets](t, "RegisterAssets")(l.RegisterAssets(As(core.RoleService),
		[]core.AssetRegistration{gpu("srv-s1-002.gpu0"), gpu("srv-s1-001.gpu0"), gpu("srv-s1-002.gpu1")}))
	if len(b.Assets) != 2 || b.Assets[0].ID != "srv-s1-002.gpu0" || b.Assets[1].ID != "srv-s1-002.gpu1" || fmt.Sprint(b.Existing) != "[srv-s1-001.gpu0]" {
		t.Errorf("RegisterAssets = %+v, want srv-s1-002.gpu0 and .gpu1 recorded, srv-s1-001.gpu0 existing", b)
	}
	if a := Must[core.Asset](t, "GetAsset(batch)")(l.GetAsset(am, "srv-s1-002.gpu1")); a.Revision != 1 || a.FingerprintHash != Hash("fp srv-s1-002.gpu1") {
		t.Errorf("GetAsset after RegisterAssets = %+v, want revision 1 with its fingerprint", a)
	}
	if h := Must[core.AssetHistory](t, "AssetHistory")(l.AssetHistory(am, "srv-s1-001.gpu0")); len(h.Changes) != 3 {
		t.Errorf("srv-s1-001.gpu0 has %d changes after a batch naming it, want 3", len(h.Changes))
	}
	_, err = l.RegisterAssets(As(core.RoleService), []core.AssetRegistration{gpu("srv-s1-002.gpu2"), gpu("srv-s1-002.gpu2")})
	wantErr(t, "RegisterAssets(an id twice)", err, ledger.ErrInvalid)
	_, err = l.GetAsset(am, "srv-s1-002.gpu2")
	wantErr(t, "GetAsset(after a refused batch)", err, ledger.ErrNotFound)
	_, err = l.RegisterAssets(As(core.RoleAuditor), []core.AssetRegistration{gpu("srv-s1-002.gpu3")})
	wantErr(t, "RegisterAssets(as auditor)", err, ledger.ErrForbidden)
}

func anchorIn(first, last uint64, root string) core.AnchorInput {
	t0 := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	return core.AnchorInput{Root: root, FirstEvent: first, LastEvent: last, Size: last - first + 1,
		FirstTime: t0.Add(time.Duration(first) * time.Second), LastTime: t0.Add(time.Duration(last) * time.Second),
		TreeSize: last, TreeRoot: Hash(fmt.Sprint("tree ", last))}
}

func testAnchors(t *testing.T, l ledger.Ledger) {
	svc := As(core.RoleService)
	_, err := l.AnchorHead(svc)
	wantErr(t, "AnchorHead(empty)", err, ledger.ErrNotFound)
	a1 := Must[core.Anchor](t, "SubmitAnchor 1")(l.SubmitAnchor(svc, anchorIn(1, 10, Hash("b1"))))
	a2 := Must[core.Anchor](t, "SubmitAnchor 2")(l.SubmitAnchor(svc, anchorIn(11, 20, Hash("b2"))))
	if a1.Seq != 1 || a2.Seq != 2 || a2.Prev != a1.Hash || a1.Prev != "" {
		t.Errorf("anchors = (seq %d prev %q) (seq %d prev %q), want 1 with no prev then 2 after %s", a1.Seq, a1.Prev, a2.Seq, a2.Prev, a1.Hash)
	}
	if got := core.AnchorHash(&a2); got != a2.Hash {
		t.Errorf("AnchorHash(anchor 2) = %s, stored %s", got, a2.Hash)
	}
	again := Must[core.Anchor](t, "SubmitAnchor(again)")(l.SubmitAnchor(svc, anchorIn(11, 20, Hash("b2"))))
	if again.Seq != 2 || again.Hash != a2.Hash {
		t.Errorf("SubmitAnchor(same again) = seq %d hash %s, want anchor 2 unchanged", again.Seq, again.Hash)
	}
	_, err = l.SubmitAnchor(svc, anchorIn(11, 20, Hash("other")))
	wantErr(t, "SubmitAnchor(same range, other root)", err, ledger.ErrConflict)
	_, err = l.SubmitAnchor(svc, anchorIn(25, 30, Hash("gap")))
	wantErr(t, "SubmitAnchor(gap)", err, ledger.ErrConflict)
	_, err = l.SubmitAnchor(As(core.RoleAssetManager), anchorIn(21, 30, Hash("b3")))
	wantErr(t, "SubmitAnchor(as asset_manager)", err, ledger.ErrForbidden)
	bad := anchorIn(21, 30, Hash("b3"))
	bad.Size = 3
	_, err = l.SubmitAnchor(svc, bad)
	wantErr(t, "SubmitAnchor(wrong size)", err, ledger.ErrInvalid)

	for ev, want := range map[uint64]uint64{1: 1, 10: 1, 11: 2, 20: 2} {
		a, err := l.AnchorForEvent(As(core.RoleAuditor), ev)
		if err != nil || a.Seq != want {
			t.Errorf("AnchorForEvent(%d) = seq %d, %v, want seq %d", ev, a.Seq, err, want)
		}
	}
	_, err = l.AnchorForEvent(svc, 21)
	wantErr(t, "AnchorForEvent(past the head)", err, ledger.ErrNotFound)
	head := Must[core.Anchor](t, "AnchorHead")(l.AnchorHead(svc))
	if head.Seq != 2 {
		t.Errorf("AnchorHead = seq %d, want 2", head.Seq)
	}
	g := Must[core.Anchor](t, "GetAnchor")(l.GetAnchor(svc, 1))
	if g.Hash != a1.Hash || g.Root != Hash("b1") {
		t.Errorf("GetAnchor(1) = %+v, want anchor 1", g)
	}

	// Many anchors in one transaction: a repeat of the head, then three
	// new ones chained in the same call (Fabric shows a call none of its
	// own writes), all or nothing.
	many := Must[[]core.Anchor](t, "SubmitAnchors")(l.SubmitAnchors(svc, []core.AnchorInput{
		anchorIn(11, 20, Hash("b2")), anchorIn(21, 30, Hash("b3")), anchorIn(31, 35, Hash("b4")), anchorIn(36, 40, Hash("b5"))}))
	if len(many) != 4 || many[0].Hash != a2.Hash {
		t.Fatalf("SubmitAnchors = %d anchors, first %+v; want 4, the first anchor 2 unchanged", len(many), many)
	}
	for i := 1; i < 4; i++ {
		if many[i].Seq != uint64(2+i) || many[i].Prev != many[i-1].Hash || core.AnchorHash(&many[i]) != many[i].Hash {
			t.Errorf("SubmitAnchors[%d] = seq %d prev %s hash %s, want seq %d after %s", i, many[i].Seq, many[i].Prev, many[i].Hash, 2+i, many[i-1].Hash)
		}
	}
	if h := Must[core.Anchor](t, "AnchorHead")(l.AnchorHead(svc)); h.Seq != 5 || h.Hash != many[3].Hash {
		t.Errorf("AnchorHead after SubmitAnchors = seq %d, want 5", h.Seq)
	}
	if a := Must[core.Anchor](t, "AnchorForEvent(33)")(l.AnchorForEvent(svc, 33)); a.Seq != 4 {
		t.Errorf("AnchorForEvent(33) = seq %d, want 4", a.Seq)
	}
	_, err = l.SubmitAnchors(svc, []core.AnchorInput{anchorIn(41, 45, Hash("b6")), anchorIn(47, 50, Hash("gap"))})
	wantErr(t, "SubmitAnchors(gap in the second)", err, ledger.ErrConflict)
	_, err = l.SubmitAnchors(svc, []core.AnchorInput{anchorIn(41, 45, Hash("b6")), anchorIn(36, 40, Hash("b5"))})
	wantErr(t, "SubmitAnchors(a repeat after a new one)", err, ledger.ErrConflict)
	_, err = l.SubmitAnchors(svc, nil)
	wantErr(t, "SubmitAnchors(none)", err, ledger.ErrInvalid)
	if h := Must[core.Anchor](t, "AnchorHead")(l.AnchorHead(svc)); h.Seq != 5 {
		t.Errorf("AnchorHead after refused SubmitAnchors = seq %d, want 5 (nothing written)", h.Seq)
	}
}

// testAnchorChains interleaves two nodes' named anchor chains with the
// default chain in one ledger: each chain counts, links and answers on its
// own, as several twin-service nodes anchoring into one ledger need.
func testAnchorChains(t *testing.T, l ledger.Ledger) {
	c, ok := l.(interface{ OnChain(string) *ledger.Client })
	if !ok {
		t.Fatalf("%T has no OnChain", l)
	}
	svc := As(core.RoleService)
	n1, n2 := c.OnChain("node-1"), c.OnChain("node-2")
	var a1, b1 []core.Anchor
	for i := uint64(0); i < 3; i++ {
		a := Must[[]core.Anchor](t, "SubmitAnchors(node-1)")(n1.SubmitAnchors(svc, []core.AnchorInput{anchorIn(i*10+1, i*10+10, Hash(fmt.Sprint("a", i)))}))
		b := Must[core.Anchor](t, "SubmitAnchor(node-2)")(n2.SubmitAnchor(svc, anchorIn(i*5+1, i*5+5, Hash(fmt.Sprint("b", i)))))
		a1, b1 = append(a1, a[0]), append(b1, b)
		if i == 1 {
			Must[core.Anchor](t, "SubmitAnchor(default)")(l.SubmitAnchor(svc, anchorIn(1, 4, Hash("d"))))
		}
	}
	for _, ch := range []struct {
		name string
		as   []core.Anchor
	}{{"node-1", a1}, {"node-2", b1}} {
		for i, a := range ch.as {
			if a.Chain != ch.name || a.Seq != uint64(i+1) || core.AnchorHash(&a) != a.Hash || (i > 0 && a.Prev != ch.as[i-1].Hash) {
				t.Errorf("%s anchor %d = chain %q seq %d prev %s, want seq %d after the chain's previous anchor", ch.name, i, a.Chain, a.Seq, a.Prev, i+1)
			}
		}
	}
	if _, err := n2.SubmitAnchor(svc, anchorIn(4, 10, Hash("overlap"))); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("SubmitAnchor(node-2 overlapping its own chain) = %v, want a conflict", err)
	}
	if h := Must[core.Anchor](t, "AnchorHead(node-1)")(n1.AnchorHead(svc)); h.Hash != a1[2].Hash {
		t.Errorf("AnchorHead(node-1) = seq %d, want 3", h.Seq)
	}
	if h := Must[core.Anchor](t, "AnchorHead(default)")(l.AnchorHead(svc)); h.Seq != 1 || h.Chain != "" {
		t.Errorf("AnchorHead(default) = seq %d chain %q, want the default chain's anchor 1", h.Seq, h.Chain)
	}
	if g := Must[core.Anchor](t, "GetAnchor(node-2, 2)")(n2.GetAnchor(svc, 2)); g.Hash != b1[1].Hash {
		t.Errorf("GetAnchor(node-2, 2) = %s, want %s", g.Hash, b1[1].Hash)
	}
	if a := Must[core.Anchor](t, "AnchorForEvent(node-1, 15)")(n1.AnchorForEvent(As(core.RoleAuditor), 15)); a.Hash != a1[1].Hash {
		t.Errorf("AnchorForEvent(node-1, 15) = seq %d of %q, want node-1's anchor 2", a.Seq, a.Chain)
	}
	_, err := n2.AnchorForEvent(svc, 16)
	wantErr(t, "AnchorForEvent(node-2, past its head)", err, ledger.ErrNotFound)
	_, err = l.AnchorForEvent(svc, 5)
	wantErr(t, "AnchorForEvent(default, past its head)", err, ledger.ErrNotFound)
	_, err = c.OnChain("no/such").AnchorHead(svc)
	wantErr(t, "AnchorHead(bad chain name)", err, ledger.ErrInvalid)
}

// firmwareEnvelope is a real signed wire envelope naming asset.
func firmwareEnvelope(t *testing.T, key ed25519.PrivateKey, seq uint64, asset, vbios string) []byte {
	t.Helper()
	inv := wire.Inventory{Host: wire.HostInfo{Asset: "srv-s1-001"}, GPUs: []wire.GPUIdentity{{Asset: asset, UUID: "GPU-1", Serial: "S1", PCIBusID: "0000:01:00.0", VBIOS: vbios}}}
	raw, err := wire.Seal(key, "gw-srv-s1-001", seq, time.Date(2026, 11, 25, 16, 0, int(seq), 0, time.UTC), wire.KindFirmware, inv)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func testEvidence(t *testing.T, l ledger.Ledger) {
	am := As(core.RoleAssetManager)
	svc := As(core.RoleService)
	pub := hex.EncodeToString(GatewayKey.Public().(ed25519.PublicKey))
	Must[core.Asset](t, "RegisterAsset(gateway)")(l.RegisterAsset(am, core.AssetRegistration{ID: "gw-srv-s1-001", Kind: core.AssetKindGateway, FingerprintHash: Hash("gw"), PublicKey: pub}))
	Must[core.Asset](t, "RegisterAsset(gpu)")(l.RegisterAsset(am, gpu("srv-s1-001.gpu3")))

	env := firmwareEnvelope(t, GatewayKey, 7, "srv-s1-001.gpu3", "96.00.89.00.01")
	ev := Must[core.Evidence](t, "RecordEvidence")(l.RecordEvidence(svc, core.EvidenceInput{Asset: "srv-s1-001.gpu3", Kind: core.EvidenceFirmware, Envelope: env, EventID: 12, Revision: 3}))
	if ev.Gateway != "gw-srv-s1-001" || ev.Seq != 7 || ev.EnvelopeKind != "firmware" || !bytes.Equal(ev.Envelope, env) {
		t.Errorf("RecordEvidence = gateway %q seq %d kind %q, want gw-srv-s1-001 7 firmware and the envelope", ev.Gateway, ev.Seq, ev.EnvelopeKind)
	}
	// The service cannot invent evidence: a changed body or another key fails.
	forged := bytes.Replace(env, []byte("96.00.89.00.01"), []byte("96.00.89.00.02"), 1)
	_, err := l.RecordEvidence(svc, core.EvidenceInput{Asset: "srv-s1-001.gpu3", Kind: core.EvidenceFirmware, Envelope: forged})
	wantErr(t, "RecordEvidence(changed body)", err, ledger.ErrInvalid)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	_, err = l.RecordEvidence(svc, core.EvidenceInput{Asset: "srv-s1-001.gpu3", Kind: core.EvidenceFirmware, Envelope: firmwareEnvelope(t, other, 8, "srv-s1-001.gpu3", "x")})
	wantErr(t, "RecordEvidence(signed by another key)", err, ledger.ErrInvalid)
	_, err = l.RecordEvidence(svc, core.EvidenceInput{Asset: "srv-s1-001.gpu9", Kind: core.EvidenceFirmware, Envelope: firmwareEnvelope(t, GatewayKey, 9, "srv-s1-001.gpu9", "x")})
	wantErr(t, "RecordEvidence(unregistered asset)", err, ledger.ErrNotFound)
	_, err = l.RecordEvidence(am, core.EvidenceInput{Asset: "srv-s1-001.gpu3", Kind: core.EvidenceFirmware, Envelope: env})
	wantErr(t, "RecordEvidence(as asset_manager)", err, ledger.ErrForbidden)
	list := Must[[]core.Evidence](t, "ListEvidence")(l.ListEvidence(svc, "srv-s1-001.gpu3"))
	if len(list) != 1 || list[0].EnvelopeHash != ev.EnvelopeHash {
		t.Errorf("ListEvidence = %d records, want the one recorded", len(list))
	}
}

func testProvenance(t *testing.T, l ledger.Ledger) {
	am, eng, svc := As(core.RoleAssetManager), As(core.RoleMLEngineer), As(core.RoleService)
	for _, id := range []string{"srv-s1-001.gpu0", "srv-s1-001.gpu1"} {
		Must[core.Asset](t, "RegisterAsset")(l.RegisterAsset(am, gpu(id)))
	}
	consent := core.Consent{PolicyRef: "consent-v2", Licence: "CC-BY-4.0", UseScope: []string{"training"}, RetentionDays: 365}
	raw := Must[core.Dataset](t, "RegisterDataset(raw)")(l.RegisterDataset(eng, core.DatasetInput{
		ID: "ds-raw", ContentHash: Hash("raw"), Sources: []core.Source{{Kind: core.SourceSystem, Ref: "s3://bucket/raw"}}, Consent: consent}))
	if raw.Registered.Role != core.RoleMLEngineer {
		t.Errorf("RegisterDataset stamp role = %q, want ml_engineer", raw.Registered.Role)
	}
	Must[core.Dataset](t, "RegisterDataset(clean)")(l.RegisterDataset(eng, core.DatasetInput{
		ID: "ds-clean", ContentHash: Hash("clean"), Consent: consent,
		Transform: &core.Transformation{Step: "dedupe", Parents: []string{"ds-raw"}, OutputHash: Hash("clean")}}))
	_, err := l.RegisterDataset(eng, core.DatasetInput{ID: "ds-orphan", ContentHash: Hash("o"), Consent: consent,
		Transform: &core.Transformation{Step: "x", Parents: []string{"ds-missing"}, OutputHash: Hash("o")}})
	wantErr(t, "RegisterDataset(missing parent)", err, ledger.ErrNotFound)
	_, err = l.RegisterDataset(As(core.RoleAuditor), core.DatasetInput{ID: "ds-x", ContentHash: Hash("x"), Consent: consent})
	wantErr(t, "RegisterDataset(as auditor)", err, ledger.ErrForbidden)
	ds := Must[core.Dataset](t, "AddQualityChecks")(l.AddQualityChecks(eng, core.QualityChecksInput{Dataset: "ds-clean",
		Checks: []core.QualityCheckInput{{Name: "dup_rate", Value: 0.001, Threshold: 0.01, Compare: core.AtMost}}}))
	if len(ds.Checks) != 1 || !ds.Checks[0].Pass {
		t.Errorf("AddQualityChecks = %+v, want one passing check", ds.Checks)
	}

	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	m := Must[core.Model](t, "RegisterModel")(l.RegisterModel(eng, core.ModelInput{ID: "model-a", ArtifactHash: Hash("model-a"),
		Datasets: []string{"ds-clean"}, Training: core.TrainingRun{
			Hardware: []core.HardwareUse{{Asset: "srv-s1-001.gpu0", RevisionStart: 1, RevisionEnd: 1}},
			CodeRef:  "git@example/train@abc123", ConfigHash: Hash("cfg"), Start: t0, End: t0.Add(time.Hour)}}))
	if m.ID != "model-a" {
		t.Errorf("RegisterModel = %+v", m)
	}
	Must[core.Model](t, "AddEvaluation")(l.AddEvaluation(eng, core.EvaluationInput{Model: "model-a", Name: "holdout", Metrics: []core.Metric{{Name: "accuracy", Value: 0.93}}}))
	Must[core.Policy](t, "SetPolicy")(l.SetPolicy(As(core.RoleCompliance), core.PolicyInput{ID: "prod",
		RequiredRoles: []core.Role{core.RoleMLLead, core.RoleSecurity},
		Thresholds:    []core.Threshold{{Metric: "accuracy", Compare: core.AtLeast, Value: 0.9}}}))

	dep := core.DeploymentInput{ID: "dep-1", Model: "model-a", Policy: "prod", Targets: []string{"srv-s1-001.gpu1"},
		BinaryHash: Hash("bin"), ContainerHash: Hash("ctr"), ConfigHash: Hash("dcfg"),
		Environment: core.Environment{HardwareClass: "h100-sxm-80g", Drivers: []core.ToolVersion{{Name: "nvidia", Version: "550.54"}}}}
	d := Must[core.Deployment](t, "RequestDeployment(no sign-offs)")(l.RequestDeployment(eng, dep))
	if d.Allowed || !hasReason(d.Reasons, core.ReasonAttestationMissing) {
		t.Errorf("RequestDeployment without sign-offs = allowed %v reasons %+v, want refused for attestation_missing", d.Allowed, d.Reasons)
	}
	for _, role := range []core.Role{core.RoleMLLead, core.RoleSecurity} {
		Must[core.Attestation](t, "Attest")(l.Attest(As(role), core.AttestationInput{SubjectKind: core.SubjectModel, Subject: "model-a",
			SubjectHash: Hash("model-a"), Decision: core.Approve, Metrics: []core.Metric{{Name: "accuracy", Value: 0.93}}}))
	}
	_, err = l.Attest(eng, core.AttestationInput{SubjectKind: core.SubjectModel, Subject: "model-a", SubjectHash: Hash("model-a"), Decision: core.Approve})
	wantErr(t, "Attest(as ml_engineer)", err, ledger.ErrForbidden)
	_, err = l.Attest(As(core.RoleMLLead), core.AttestationInput{SubjectKind: core.SubjectModel, Subject: "model-a", SubjectHash: Hash("other bytes"), Decision: core.Approve})
	wantErr(t, "Attest(wrong subject hash)", err, ledger.ErrConflict)
	atts := Must[[]core.Attestation](t, "ListAttestations")(l.ListAttestations(svc, core.SubjectModel, "model-a"))
	if len(atts) != 2 {
		t.Errorf("ListAttestations = %d, want 2", len(atts))
	}
	dep.ID = "dep-2"
	d = Must[core.Deployment](t, "RequestDeployment(signed off)")(l.RequestDeployment(eng, dep))
	if !d.Allowed || len(d.Reasons) != 0 {
		t.Errorf("RequestDeployment with sign-offs = allowed %v reasons %+v, want allowed", d.Allowed, d.Reasons)
	}
	Must[core.Asset](t, "quarantine")(l.SetAssetStatus(svc, core.StatusChange{Asset: "srv-s1-001.gpu1", Status: core.StatusQuarantined, Reason: "xid 79"}))
	dep.ID = "dep-3"
	d = Must[core.Deployment](t, "RequestDeployment(quarantined target)")(l.RequestDeployment(eng, dep))
	if d.Allowed || !hasReason(d.Reasons, core.ReasonTargetQuarantined) {
		t.Errorf("RequestDeployment to a quarantined target = allowed %v reasons %+v, want refused for target_quarantined", d.Allowed, d.Reasons)
	}
	// The targets' environment (twin-service takes it from the twins) is
	// kept on the record, and a policy's driver range and hardware classes
	// are enforced on it.
	Must[core.Policy](t, "SetPolicy(driver range)")(l.SetPolicy(As(core.RoleCompliance), core.PolicyInput{ID: "prod-h100",
		RequiredRoles: []core.Role{core.RoleMLLead, core.RoleSecurity}, HardwareClasses: []string{"h100-sxm-80g"}, DriverMin: "550.54", DriverMax: "555"}))
	envDep := dep
	envDep.Policy, envDep.Targets = "prod-h100", []string{"srv-s1-001.gpu0"}
	for _, tc := range []struct{ id, driver, want string }{{"dep-env-old", "535.104.05", "driver_range"}, {"dep-env-ok", "550.54.15", ""}} {
		envDep.ID = tc.id
		envDep.Environment.Assets = []core.AssetEnvironment{{Asset: "srv-s1-001.gpu0", GPUModel: "NVIDIA H100 80GB HBM3",
			UUID: "GPU-1", Serial: "1654", VBIOS: "96.00.74.00.0D", Driver: tc.driver}}
		Must[core.Deployment](t, "RequestDeployment(environment)")(l.RequestDeployment(eng, envDep))
		got := Must[core.Deployment](t, "GetDeployment(environment)")(l.GetDeployment(svc, tc.id))
		if got.Allowed != (tc.want == "") || tc.want != "" && !hasReason(got.Reasons, core.ReasonDriverRange) ||
			len(got.Environment.Assets) != 1 || got.Environment.Assets[0] != envDep.Environment.Assets[0] {
			t.Errorf("deployment with driver %s = allowed %v reasons %+v environment %+v, want %q and the environment kept",
				tc.driver, got.Allowed, got.Reasons, got.Environment.Assets, tc.want)
		}
	}
	if got := Must[core.Deployment](t, "GetDeployment")(l.GetDeployment(svc, "dep-2")); !got.Allowed {
		t.Errorf("GetDeployment(dep-2) = %+v, want the allowed deployment", got)
	}
	on := Must[[]core.Deployment](t, "DeploymentsOn")(l.DeploymentsOn(svc, "srv-s1-001.gpu1"))
	if len(on) != 1 || on[0].ID != "dep-2" {
		t.Errorf("DeploymentsOn(gpu1) = %d deployments, want only the allowed dep-2", len(on))
	}
	if got := Must[core.Deployment](t, "GetDeployment")(l.GetDeployment(svc, "dep-3")); got.Allowed || len(got.Reasons) == 0 {
		t.Errorf("GetDeployment(dep-3) = %+v, want the refusal with its reasons", got)
	}
	// Every request of a model, allowed or refused, in id order.
	var of []string
	for _, d := range Must[[]core.Deployment](t, "DeploymentsOf")(l.DeploymentsOf(As(core.RoleAuditor), "model-a")) {
		of = append(of, fmt.Sprintf("%s:%v", d.ID, d.Allowed))
	}
	if want := "dep-1:false dep-2:true dep-3:false dep-env-ok:true dep-env-old:false"; strings.Join(of, " ") != want {
		t.Errorf("DeploymentsOf(model-a) = %v, want %s", of, want)
	}
	if of := Must[[]core.Deployment](t, "DeploymentsOf")(l.DeploymentsOf(svc, "no-such-model")); len(of) != 0 {
		t.Errorf("DeploymentsOf(an unknown model) = %+v, want none", of)
	}

	dsp := Must[core.Page[core.Dataset]](t, "ListDatasets")(l.ListDatasets(As(core.RoleAuditor), core.PageQuery{Limit: 1}))
	if len(dsp.Items) != 1 || dsp.Items[0].ID != "ds-clean" || dsp.Next != "ds-clean" {
		t.Errorf("ListDatasets(limit 1) = %+v, want ds-clean and a next page", dsp)
	}
	dsp = Must[core.Page[core.Dataset]](t, "ListDatasets")(l.ListDatasets(As(core.RoleAuditor), core.PageQuery{After: dsp.Next}))
	if len(dsp.Items) != 1 || dsp.Items[0].ID != "ds-raw" || dsp.Next != "" {
		t.Errorf("ListDatasets(after ds-clean) = %+v, want only ds-raw", dsp)
	}
	mp := Must[core.Page[core.Model]](t, "ListModels")(l.ListModels(As(core.RoleAuditor), core.PageQuery{}))
	if len(mp.Items) == 0 || mp.Items[0].ID != "model-a" {
		t.Errorf("ListModels = %+v, want model-a first", mp)
	}
	var depIDs []string // every decision, allowed or refused, paged in id order
	for q := (core.PageQuery{Limit: 2}); ; {
		p := Must[core.Page[core.Deployment]](t, "ListDeployments")(l.ListDeployments(As(core.RoleAuditor), q))
		for _, d := range p.Items {
			depIDs = append(depIDs, d.ID)
		}
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	if want := "[dep-1 dep-2 dep-3 dep-env-ok dep-env-old]"; fmt.Sprint(depIDs) != want {
		t.Errorf("ListDeployments (pages of 2) = %v, want %s", depIDs, want)
	}
	lin := Must[core.Lineage](t, "ModelLineage")(l.ModelLineage(svc, "model-a"))
	var ids []string
	for _, d := range lin.Datasets {
		ids = append(ids, d.ID)
	}
	if fmt.Sprint(ids) != "[ds-clean ds-raw]" || len(lin.Hardware) != 1 || lin.Hardware[0].Asset.ID != "srv-s1-001.gpu0" {
		t.Errorf("ModelLineage = datasets %v hardware %+v, want [ds-clean ds-raw] on srv-s1-001.gpu0", ids, lin.Hardware)
	}
	trained := Must[[]core.Model](t, "ModelsTrainedOn")(l.ModelsTrainedOn(svc, "srv-s1-001.gpu0"))
	if len(trained) != 1 || trained[0].ID != "model-a" {
		t.Errorf("ModelsTrainedOn(gpu0) = %d models, want model-a", len(trained))
	}
	if none := Must[[]core.Model](t, "ModelsTrainedOn")(l.ModelsTrainedOn(svc, "srv-s1-001.gpu1")); len(none) != 0 {
		t.Errorf("ModelsTrainedOn(gpu1) = %d models, want none", len(none))
	}
	_, err = l.GetModel(svc, "model-zzz")
	wantErr(t, "GetModel(missing)", err, ledger.ErrNotFound)
}

func hasReason(rs []core.Reason, code core.ReasonCode) bool {
	for _, r := range rs {
		if r.Code == code {
			return true
		}
	}
	return false
}

func testConcurrent(t *testing.T, l ledger.Ledger) {
	am := As(core.RoleAssetManager)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := l.RegisterAsset(am, gpu(fmt.Sprintf("srv-c-%d.gpu%d", w, i))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent RegisterAsset: %v", err)
	}
	for w := 0; w < 4; w++ {
		for i := 0; i < 10; i++ {
			if _, err := l.GetAsset(am, fmt.Sprintf("srv-c-%d.gpu%d", w, i)); err != nil {
				t.Errorf("GetAsset after concurrent registration: %v", err)
			}
		}
	}
}

// Records writes one record of each type a record bundle proves (asset,
// dataset, model, policy, deployment, remediation), each but the policy
// changed after it was first written (the deployment paused by the executed
// remediation, which has a stop recorded), and returns their type and id pairs.
func Records(t *testing.T, l ledger.Ledger) [][2]string {
	t.Helper()
	am, eng := As(core.RoleAssetManager), As(core.RoleMLEngineer)
	Must[core.Asset](t, "RegisterAsset")(l.RegisterAsset(am, gpu("rec-srv.gpu0")))
	Must[core.Asset](t, "SetAssetStatus")(l.SetAssetStatus(As(core.RoleSecurity), core.StatusChange{Asset: "rec-srv.gpu0", Status: core.StatusQuarantined, Reason: "probe"}))
	consent := core.Consent{PolicyRef: "consent-v2", Licence: "CC-BY-4.0", UseScope: []string{"training"}, RetentionDays: 365}
	Must[core.Dataset](t, "RegisterDataset")(l.RegisterDataset(eng, core.DatasetInput{ID: "rec-ds", ContentHash: Hash("rec-ds"), Consent: consent,
		Sources: []core.Source{{Kind: core.SourceSystem, Ref: "s3://bucket/rec"}}}))
	Must[core.Dataset](t, "AddQualityChecks")(l.AddQualityChecks(eng, core.QualityChecksInput{Dataset: "rec-ds",
		Checks: []core.QualityCheckInput{{Name: "nulls", Value: 0, Threshold: 0.01, Compare: core.AtMost}}}))
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	Must[core.Model](t, "RegisterModel")(l.RegisterModel(eng, core.ModelInput{ID: "rec-model", ArtifactHash: Hash("rec-model"),
		Datasets: []string{"rec-ds"}, Training: core.TrainingRun{Hardware: []core.HardwareUse{{Asset: "rec-srv.gpu0", RevisionStart: 1, RevisionEnd: 1}},
			CodeRef: "git@example/train@abc", ConfigHash: Hash("cfg"), Start: t0, End: t0.Add(time.Hour)}}))
	Must[core.Model](t, "AddEvaluation")(l.AddEvaluation(eng, core.EvaluationInput{Model: "rec-model", Name: "holdout", Metrics: []core.Metric{{Name: "accuracy", Value: 0.9}}}))
	Must[core.Policy](t, "SetPolicy")(l.SetPolicy(As(core.RoleCompliance), core.PolicyInput{ID: "rec-policy", RequiredRoles: []core.Role{core.RoleMLLead}}))
	Must[core.Attestation](t, "Attest")(l.Attest(As(core.RoleMLLead), core.AttestationInput{SubjectKind: core.SubjectModel, Subject: "rec-model",
		SubjectHash: Hash("rec-model"), Decision: core.Approve}))
	Must[core.Asset](t, "RegisterAsset")(l.RegisterAsset(am, gpu("rec-srv.gpu1"))) // the target: gpu0 is quarantined
	Must[core.Deployment](t, "RequestDeployment")(l.RequestDeployment(eng, core.DeploymentInput{ID: "rec-dep", Model: "rec-model", Policy: "rec-policy",
		Targets: []string{"rec-srv.gpu1"}, BinaryHash: Hash("bin"), ContainerHash: Hash("ctr"), ConfigHash: Hash("dcfg"),
		Environment: core.Environment{HardwareClass: "h100-sxm-80g", Drivers: []core.ToolVersion{{Name: "nvidia", Version: "550.54"}}}}))
	Must[core.Remediation](t, "ProposeRemediation")(l.ProposeRemediation(As(core.RoleService), core.RemediationInput{ID: "rec-rem", Model: "rec-model",
		Reason: "probe", Steps: []core.RemediationStep{{Action: core.ActionPause, Deployment: "rec-dep"}}}))
	Must[core.Remediation](t, "DecideRemediation")(l.DecideRemediation(As(core.RoleMLLead), core.RemediationApproval{ID: "rec-rem", Decision: core.Approve}))
	rem := Must[core.Remediation](t, "ExecuteRemediation")(l.ExecuteRemediation(As(core.RoleService), "rec-rem"))
	RecordStop(t, l, rem, "rec-gw", "rec-srv", "rec-srv.gpu1")
	return [][2]string{{"asset", "rec-srv.gpu0"}, {"dataset", "rec-ds"}, {"model", "rec-model"}, {"policy", "rec-policy"}, {"deployment", "rec-dep"}, {"remediation", "rec-rem"}}
}

// Org is one organisation's side of a ledger: its MSP id, the ledger as it
// reaches it and how its callers act (on the embedded ledger the caller's
// MSP; on Fabric the org's own identities).
type Org struct {
	MSP string
	L   ledger.Ledger
	As  func(core.Role) context.Context
	// Sync, when set, waits until the org's ledger has every block the
	// other org's has (Fabric: its peer caught up) before it acts.
	Sync func()
}

func (o Org) as(r core.Role) context.Context {
	if o.Sync != nil {
		o.Sync()
	}
	return o.As(r)
}

// Custody runs the custody rules across two organisations: a registers an
// asset and offers it to b, which alone may accept it; neither may act for
// the other; on arrival b's service compares the observed fingerprint: a
// match puts the asset in service, a mismatch records a substitution and
// quarantines it.
func Custody(t *testing.T, a, b Org) {
	fp := Hash("cust-fp")
	asset := Must[core.Asset](t, "RegisterAsset(a)")(a.L.RegisterAsset(a.as(core.RoleAssetManager), core.AssetRegistration{ID: "cust-1", Kind: "gpu", FingerprintHash: fp}))
	if asset.OwnerOrg != a.MSP {
		t.Fatalf("RegisterAsset owner = %q, want %s", asset.OwnerOrg, a.MSP)
	}
	_, err := b.L.RegisterAsset(b.as(core.RoleAssetManager), core.AssetRegistration{ID: "cust-x", Kind: "gpu", FingerprintHash: fp, OwnerOrg: a.MSP})
	wantErr(t, "RegisterAsset(for another org)", err, ledger.ErrForbidden)
	_, err = b.L.OfferCustody(b.as(core.RoleAssetManager), core.CustodyOffer{Asset: "cust-1", To: b.MSP})
	wantErr(t, "OfferCustody(by a non-owner)", err, ledger.ErrForbidden)
	_, err = b.L.AcceptCustody(b.as(core.RoleAssetManager), core.CustodyAccept{Asset: "cust-1"})
	wantErr(t, "AcceptCustody(nothing offered)", err, ledger.ErrConflict)
	_, err = a.L.OfferCustody(a.as(core.RoleAuditor), core.CustodyOffer{Asset: "cust-1", To: b.MSP})
	wantErr(t, "OfferCustody(as auditor)", err, ledger.ErrForbidden)
	off := Must[core.Asset](t, "OfferCustody")(a.L.OfferCustody(a.as(core.RoleAssetManager), core.CustodyOffer{Asset: "cust-1", To: b.MSP, Reason: "PO-7"}))
	if off.Status != core.StatusInTransit || off.Pending == nil || off.Pending.To != b.MSP || off.OwnerOrg != a.MSP {
		t.Errorf("OfferCustody = status %s pending %+v owner %s; want in_transit, pending to %s, owner still %s", off.Status, off.Pending, off.OwnerOrg, b.MSP, a.MSP)
	}
	_, err = a.L.AcceptCustody(a.as(core.RoleAssetManager), core.CustodyAccept{Asset: "cust-1"})
	wantErr(t, "AcceptCustody(by the offering org)", err, ledger.ErrForbidden)
	_, err = b.L.RecordArrival(b.as(core.RoleService), core.Arrival{Asset: "cust-1", FingerprintHash: fp})
	wantErr(t, "RecordArrival(before accepting)", err, ledger.ErrForbidden)
	acc := Must[core.Asset](t, "AcceptCustody")(b.L.AcceptCustody(b.as(core.RoleAssetManager), core.CustodyAccept{Asset: "cust-1"}))
	if acc.OwnerOrg != b.MSP || acc.Pending != nil || !IsCaller(acc.Updated.By, "test-asset_manager") || acc.Updated.MSP != b.MSP {
		t.Errorf("AcceptCustody = owner %s pending %+v updated %+v; want owner %s stamped by its asset manager", acc.OwnerOrg, acc.Pending, acc.Updated, b.MSP)
	}
	_, err = a.L.OfferCustody(a.as(core.RoleAssetManager), core.CustodyOffer{Asset: "cust-1", To: a.MSP})
	wantErr(t, "OfferCustody(by the former owner)", err, ledger.ErrForbidden)
	arr := Must[core.Asset](t, "RecordArrival(match)")(b.L.RecordArrival(b.as(core.RoleService), core.Arrival{Asset: "cust-1", FingerprintHash: fp, Site: "s2"}))
	if arr.Status != core.StatusInService || arr.FingerprintHash != fp {
		t.Errorf("RecordArrival(same fingerprint) = %s %s, want in_service with the ledger's fingerprint", arr.Status, arr.FingerprintHash)
	}

	// A second asset arrives with another fingerprint: substitution in transit.
	Must[core.Asset](t, "RegisterAsset(a, 2)")(a.L.RegisterAsset(a.as(core.RoleAssetManager), core.AssetRegistration{ID: "cust-2", Kind: "gpu", FingerprintHash: fp}))
	Must[core.Asset](t, "OfferCustody(2)")(a.L.OfferCustody(a.as(core.RoleAssetManager), core.CustodyOffer{Asset: "cust-2", To: b.MSP}))
	Must[core.Asset](t, "AcceptCustody(2)")(b.L.AcceptCustody(b.as(core.RoleAssetManager), core.CustodyAccept{Asset: "cust-2"}))
	other := Hash("swapped in transit")
	sub := Must[core.Asset](t, "RecordArrival(mismatch)")(b.L.RecordArrival(b.as(core.RoleService), core.Arrival{Asset: "cust-2", FingerprintHash: other, Site: "s2"}))
	if sub.Status != core.StatusQuarantined || sub.FingerprintHash != fp {
		t.Errorf("RecordArrival(other fingerprint) = %s %s, want quarantined, the ledger's fingerprint kept", sub.Status, sub.FingerprintHash)
	}
	h := Must[core.AssetHistory](t, "AssetHistory")(b.L.AssetHistory(b.as(core.RoleAuditor), "cust-2"))
	last := h.Changes[len(h.Changes)-1]
	if last.Type != core.ChangeSubstitution || last.Old != fp || last.New != other || last.Stamp.MSP != b.MSP {
		t.Errorf("last history entry = %+v, want a substitution from %s to %s recorded by %s", last, fp, other, b.MSP)
	}
	var types []core.ChangeType
	for _, c := range h.Changes {
		types = append(types, c.Type)
	}
	if fmt.Sprint(types) != "[registered custody_offered custody_accepted substitution]" {
		t.Errorf("history = %v, want registered, custody_offered, custody_accepted, substitution", types)
	}
}

// PrivateSecret is a string only the private metadata Private writes holds:
// a backend's test checks that no block shows it.
const PrivateSecret = "supplier contract SC-2291, 40 EUR/hour annotation"

// Private runs the private dataset metadata rules across two
// organisations: a's dataset keeps its sensitive metadata in a's private
// collection; b sees that it exists (the hash in the dataset record),
// cannot read it or write it, and checks a copy a disclosed against the
// ledger's hash: the exact copy matches, an edited one does not. It
// returns the dataset as PutDatasetPrivate left it.
func Private(t *testing.T, a, b Org) core.Dataset {
	consent := core.Consent{PolicyRef: "consent-v3", Licence: "proprietary", UseScope: []string{"training"}, RetentionDays: 90}
	Must[core.Dataset](t, "RegisterDataset")(a.L.RegisterDataset(a.as(core.RoleMLEngineer), core.DatasetInput{
		ID: "ds-priv", ContentHash: Hash("priv"), Sources: []core.Source{{Kind: core.SourceSystem, Ref: "vendor-feed"}}, Consent: consent}))
	meta := core.DatasetMeta{Sources: []string{"site A camera 3, 2026-10", PrivateSecret}, Consent: "signed forms CF-1..CF-88",
		Licensing: "exclusive to the owner until 2027"}
	_, err := b.L.PutDatasetPrivate(b.as(core.RoleMLEngineer), "ds-priv", meta)
	wantErr(t, "PutDatasetPrivate(by another org)", err, ledger.ErrForbidden)
	_, err = a.L.PutDatasetPrivate(a.as(core.RoleAuditor), "ds-priv", meta)
	wantErr(t, "PutDatasetPrivate(as auditor)", err, ledger.ErrForbidden)
	_, err = a.L.PutDatasetPrivate(a.as(core.RoleMLEngineer), "ds-priv", core.DatasetMeta{})
	wantErr(t, "PutDatasetPrivate(empty)", err, ledger.ErrInvalid)
	_, err = a.L.PutDatasetPrivate(a.as(core.RoleMLEngineer), "ds-none", meta)
	wantErr(t, "PutDatasetPrivate(no such dataset)", err, ledger.ErrNotFound)
	ds := Must[core.Dataset](t, "PutDatasetPrivate")(a.L.PutDatasetPrivate(a.as(core.RoleCompliance), "ds-priv", meta))
	canonical := []byte(`{"sources":["site A camera 3, 2026-10","` + PrivateSecret + `"],"consent":"signed forms CF-1..CF-88","licensing":"exclusive to the owner until 2027"}`)
	sum := sha256.Sum256(canonical)
	if ds.Private == nil || ds.Private.Org != a.MSP || ds.Private.Collection != core.PrivateCollection(a.MSP) || ds.Private.Hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("PutDatasetPrivate private = %+v, want %s's collection and the hash %x of %s", ds.Private, a.MSP, sum, canonical)
	}
	if strings.Contains(fmt.Sprintf("%+v", ds), PrivateSecret) {
		t.Errorf("PutDatasetPrivate's result shows the private metadata: %+v", ds)
	}
	rec := Must[core.PrivateRecord](t, "GetDatasetPrivate(owner)")(a.L.GetDatasetPrivate(a.as(core.RoleAuditor), "ds-priv"))
	if !bytes.Equal(rec.Data, canonical) || rec.Ref.Hash != ds.Private.Hash {
		t.Errorf("GetDatasetPrivate = %s (hash %s), want %s", rec.Data, rec.Ref.Hash, canonical)
	}
	// The partner: sees the record and its hash, not the metadata.
	seen := Must[core.Dataset](t, "GetDataset(partner)")(b.L.GetDataset(b.as(core.RoleAuditor), "ds-priv"))
	if seen.Private == nil || seen.Private.Hash != ds.Private.Hash {
		t.Errorf("partner's GetDataset private = %+v, want the hash %s", seen.Private, ds.Private.Hash)
	}
	_, err = b.L.GetDatasetPrivate(b.as(core.RoleAdmin), "ds-priv")
	wantErr(t, "GetDatasetPrivate(partner)", err, ledger.ErrForbidden)
	ok := Must[core.DisclosureCheck](t, "VerifyDatasetPrivate(disclosed copy)")(b.L.VerifyDatasetPrivate(b.as(core.RoleAuditor), core.Disclosure{Dataset: "ds-priv", Data: rec.Data}))
	if !ok.Match || ok.DisclosedHash != ds.Private.Hash || (ok.ChannelHash != "" && ok.ChannelHash != ds.Private.Hash) {
		t.Errorf("VerifyDatasetPrivate(the disclosed copy) = %+v, want a match with %s", ok, ds.Private.Hash)
	}
	edited := bytes.Replace(rec.Data, []byte("until 2027"), []byte("until 2030"), 1)
	bad := Must[core.DisclosureCheck](t, "VerifyDatasetPrivate(edited copy)")(b.L.VerifyDatasetPrivate(b.as(core.RoleAuditor), core.Disclosure{Dataset: "ds-priv", Data: edited}))
	if bad.Match || bad.DisclosedHash == ds.Private.Hash {
		t.Errorf("VerifyDatasetPrivate(an edited copy) = %+v, want no match", bad)
	}
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, rec.Data, "", "  ")
	ok = Must[core.DisclosureCheck](t, "VerifyDatasetPrivate(indented copy)")(b.L.VerifyDatasetPrivate(b.as(core.RoleAuditor), core.Disclosure{Dataset: "ds-priv", Data: pretty.Bytes()}))
	if !ok.Match {
		t.Errorf("VerifyDatasetPrivate(the copy indented) = %+v, want a match: whitespace outside strings does not count", ok)
	}
	return ds
}

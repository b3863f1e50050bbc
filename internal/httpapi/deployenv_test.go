package httpapi

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"twinchain/chaincode/core"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

// TestDeploymentEnvironmentFromTwin: POST /ledger/deployments records each
// target's environment as the twin shows it (GPU model, UUID, serial,
// VBIOS, driver from the gateway's inventory), whatever the request said,
// and the policy's driver range is judged on it.
func TestDeploymentEnvironmentFromTwin(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	l, _, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	e := newEnv(t, Options{Ledger: &LedgerDeps{Ledger: l, Caller: func(c *fiber.Ctx) (core.Caller, error) {
		role := c.Get("X-Test-Role")
		if role == "" {
			return core.Caller{}, errors.New("no role")
		}
		return core.Caller{ID: "test-" + role, Role: core.Role(role)}, nil
	}}}, func(_ *Options, reg *registry.Registry) {
		if err := reg.Put(registry.Gateway{ID: "gw-1", PublicKey: gwKey("gw-1").Public().(ed25519.PublicKey), Site: "s1", Assets: []string{"srv-1", "srv-1.gpu0"}}); err != nil {
			t.Fatal(err)
		}
	})
	inv := wire.Inventory{Host: wire.HostInfo{Asset: "srv-1"}, GPUs: []wire.GPUIdentity{{Asset: "srv-1.gpu0", Name: "NVIDIA H100 80GB HBM3",
		UUID: "GPU-aaaa-bbbb", Serial: "1654000001", VBIOS: "96.00.74.00.0D", Driver: "535.104.05"}}}
	p, err := wire.Seal(gwKey("gw-1"), "gw-1", 1, time.Now().Add(-time.Minute), wire.KindFirmware, inv)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.in.Submit(ingest.Source{}, wire.Topic("gw-1", wire.KindFirmware), p); err != nil || !out.Accepted() {
		t.Fatalf("inventory: %v %v", err, out.Err)
	}

	h := ledgertest.Hash
	as := ledgertest.As
	steps := []error{}
	for _, id := range []string{"srv-1.gpu0", "trainer.gpu0"} {
		_, err = l.RegisterAsset(as(core.RoleAssetManager), core.AssetRegistration{ID: id, Kind: "gpu", FingerprintHash: h("fp " + id)})
		steps = append(steps, err)
	}
	consent := core.Consent{PolicyRef: "c", Licence: "CC0-1.0", UseScope: []string{"training"}, RetentionDays: 30}
	_, err = l.RegisterDataset(as(core.RoleMLEngineer), core.DatasetInput{ID: "ds", ContentHash: h("ds"), Consent: consent,
		Sources: []core.Source{{Kind: core.SourceSystem, Ref: "s3://x"}}})
	steps = append(steps, err)
	_, err = l.AddQualityChecks(as(core.RoleMLEngineer), core.QualityChecksInput{Dataset: "ds", Checks: []core.QualityCheckInput{{Name: "n", Value: 0, Threshold: 1, Compare: core.AtMost}}})
	steps = append(steps, err)
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	_, err = l.RegisterModel(as(core.RoleMLEngineer), core.ModelInput{ID: "m", ArtifactHash: h("m"), Datasets: []string{"ds"},
		Training: core.TrainingRun{Hardware: []core.HardwareUse{{Asset: "trainer.gpu0", RevisionStart: 1, RevisionEnd: 1}}, CodeRef: "git@x/y@1", ConfigHash: h("cfg"), Start: t0, End: t0.Add(time.Hour)}})
	steps = append(steps, err)
	_, err = l.SetPolicy(as(core.RoleCompliance), core.PolicyInput{ID: "prod", RequiredRoles: []core.Role{core.RoleMLLead}, DriverMin: "550.54"})
	steps = append(steps, err)
	_, err = l.Attest(as(core.RoleMLLead), core.AttestationInput{SubjectKind: core.SubjectModel, Subject: "m", SubjectHash: h("m"), Decision: core.Approve})
	steps = append(steps, err)
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}

	// The request claims a good driver; the twin says 535: the twin wins.
	body, _ := json.Marshal(core.DeploymentInput{ID: "d1", Model: "m", Policy: "prod", Targets: []string{"srv-1.gpu0"},
		BinaryHash: h("b"), ContainerHash: h("c"), ConfigHash: h("cf"), Environment: core.Environment{HardwareClass: "h100-sxm-80g",
			Drivers: []core.ToolVersion{{Name: "nvidia", Version: "550.54.15"}}, Assets: []core.AssetEnvironment{{Asset: "srv-1.gpu0", Driver: "550.54.15"}}}})
	code, resp := call(t, e.srv, http.MethodPost, "/api/v1/ledger/deployments", "ml_engineer", string(body))
	var d core.Deployment
	if code != http.StatusCreated || json.Unmarshal([]byte(resp), &d) != nil {
		t.Fatalf("POST deployments = %d %s", code, resp)
	}
	want := core.AssetEnvironment{Asset: "srv-1.gpu0", GPUModel: "NVIDIA H100 80GB HBM3", UUID: "GPU-aaaa-bbbb", Serial: "1654000001", VBIOS: "96.00.74.00.0D", Driver: "535.104.05"}
	if len(d.Environment.Assets) != 1 || d.Environment.Assets[0] != want {
		t.Errorf("recorded environment %+v, want the twin's %+v", d.Environment.Assets, want)
	}
	if d.Allowed || len(d.Reasons) != 1 || d.Reasons[0].Code != core.ReasonDriverRange {
		t.Errorf("deployment on driver 535 under driver_min 550.54 = allowed %v reasons %+v, want refused for driver_range", d.Allowed, d.Reasons)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/anchor"
	"twinchain/internal/ledger/fabricledger"
	"twinchain/internal/ledger/fabricledger/fabrictest"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/signkey"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestSubstitutionInTransit: a seller organisation registers a GPU with
// its fingerprint on the embedded ledger and hands its custody to this
// site's organisation, which accepts it (two organisations as callers).
// The GPU that arrives reports another identity: when twin-service first
// sees it, the ledger records a substitution and quarantines it, and the
// service raises a critical substitution alert carrying both fingerprints
// and the gateway message, in the alert list and an incident, whose proof
// bundle (its anchored events) verifies.
func TestSubstitutionInTransit(t *testing.T) {
	const site, seller = "DC1MSP", "SellerMSP"
	dir := t.TempDir()
	// The transfer, on the ledger twin-service will open.
	key, err := signkey.LoadOrCreate(filepath.Join(dir, "service.key"))
	if err != nil {
		t.Fatal(err)
	}
	led, _, err := fileledger.OpenLedger(fileledger.Options{Dir: filepath.Join(dir, "ledger", "blocks"), Key: key, Org: site})
	if err != nil {
		t.Fatal(err)
	}
	as := func(msp string) context.Context {
		return ledger.WithCaller(context.Background(), core.Caller{ID: "am@" + msp, MSP: msp, Role: core.RoleAssetManager})
	}
	shipped := transfer(t, led, as(seller), led, as(site), site, nil)
	if err := led.Close(); err != nil {
		t.Fatal(err)
	}
	substitutionInTransit(t, dir, "ledger:\n  org: "+site+"\n  anchor: {interval: 50ms}\n", seller, shipped)
}

// TestSubstitutionInTransitFabric is TestSubstitutionInTransit on a real
// Fabric network with two organisations (FABRIC_BIN and network.env;
// skipped otherwise): Org2 registers the GPU and offers it through its own
// peer, Org1 accepts it, and a twin-service of Org1 on that channel sees
// another GPU arrive. Its alert's bundle, with the Fabric blocks of the
// anchors, verifies offline.
func TestSubstitutionInTransitFabric(t *testing.T) {
	c1, c2, sync := fabrictest.TwoOrgs(t)
	as := func(r core.Role) context.Context {
		return ledger.WithCaller(context.Background(), core.Caller{ID: "test-" + string(r), Role: r})
	}
	b1 := c1.Backend().(*fabricledger.Backend)
	shipped := transfer(t, c2, as(core.RoleAssetManager), c1, as(core.RoleAssetManager), "Org1MSP", sync)
	cfg := fmt.Sprintf(`ledger:
  backend: fabric
  anchor: {interval: 50ms}
  fabric:
    peer_endpoint: %q
    peer_host_override: %q
    tls_ca_cert: %q
    channel: %q
    chaincode: %q
    msp_id: Org1MSP
    cert_file: %q
    key_file: %q
    identity_dir: %q
`, os.Getenv("TWINCHAIN_FABRIC_PEER"), os.Getenv("TWINCHAIN_FABRIC_PEER_HOST"), os.Getenv("TWINCHAIN_FABRIC_TLS_CA"), b1.Channel(), b1.Chaincode(),
		os.Getenv("TWINCHAIN_FABRIC_CERT"), os.Getenv("TWINCHAIN_FABRIC_KEY"), os.Getenv("TWINCHAIN_FABRIC_IDENTITIES"))
	substitutionInTransit(t, t.TempDir(), cfg, "Org2MSP", shipped)
}

const substGPU = "srv-s1-001.gpu0"

// transfer registers the GPU as the seller with the fingerprint it
// shipped, offers it to the site's organisation, which accepts it, and
// returns that fingerprint. sync, when set, waits until both
// organisations' peers have the same blocks.
func transfer(t *testing.T, seller ledger.Ledger, sellerCtx context.Context, site ledger.Ledger, siteCtx context.Context, siteOrg string, sync func()) string {
	t.Helper()
	if sync == nil {
		sync = func() {}
	}
	shipped := anchor.FingerprintHash(&twin.Identity{UUID: "GPU-SHIPPED", Serial: "S-SHIPPED"})
	if _, err := seller.RegisterAsset(sellerCtx, core.AssetRegistration{ID: substGPU, Kind: "gpu", FingerprintHash: shipped}); err != nil {
		t.Fatal(err)
	}
	if _, err := seller.OfferCustody(sellerCtx, core.CustodyOffer{Asset: substGPU, To: siteOrg, Reason: "PO-4471"}); err != nil {
		t.Fatal(err)
	}
	sync()
	if _, err := site.AcceptCustody(siteCtx, core.CustodyAccept{Asset: substGPU}); err != nil {
		t.Fatal(err)
	}
	sync()
	return shipped
}

// substitutionInTransit starts twin-service in dir with cfg, on a ledger
// where the GPU's custody was transferred from seller with fingerprint
// shipped, lets another GPU arrive and checks the alert, the ledger
// record and the alert's proof.
func substitutionInTransit(t *testing.T, dir, cfg, seller, shipped string) {
	const gpu = substGPU
	gwKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	reg := registry.File{Gateways: []registry.Gateway{{ID: "gw-srv-s1-001", PublicKey: gwKey.Public().(ed25519.PublicKey), Site: "s1"}}}
	if err := registry.WriteFile(filepath.Join(dir, "registry.json"), reg); err != nil {
		t.Fatal(err)
	}
	token := "security-secret"
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{
		Config:  cfg,
		Tokens:  []testsvc.Token{{Name: "test-security", Role: "security", Secret: token}},
		DataDir: dir,
	})
	c := mqtt.NewClient(testsvc.GatewayOptions("tcp://"+svc.MQTTAddr, "gw-srv-s1-001", gwKey))
	if tok := c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	inv := wire.Inventory{Host: wire.HostInfo{Asset: "srv-s1-001"}, GPUs: []wire.GPUIdentity{
		{Asset: gpu, UUID: "GPU-ARRIVED", Serial: "S-ARRIVED", PCIBusID: "0000:01:00.0", VBIOS: "96.00.01"}}}
	raw, err := wire.Seal(gwKey, "gw-srv-s1-001", 1, time.Now(), wire.KindFirmware, inv)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(wire.Topic("gw-srv-s1-001", wire.KindFirmware), 1, false, raw); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	type alertJSON struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Asset    string `json:"asset"`
		Severity string `json:"severity"`
		Incident string `json:"incident"`
		Evidence []struct {
			Evidence struct {
				Events   []struct{ ID uint64 } `json:"events"`
				Messages []struct {
					Gateway string `json:"gateway"`
					Seq     uint64 `json:"seq"`
				} `json:"messages"`
				Values map[string]string `json:"values"`
			} `json:"evidence"`
		} `json:"evidence"`
	}
	var sub alertJSON
	testsvc.Eventually(t, 30*time.Second, "a substitution alert for "+gpu, func() bool {
		var list struct{ Items []alertJSON }
		get(t, svc.URL+"/api/v1/alerts?type=substitution", token, &list)
		for _, a := range list.Items {
			if a.Type == "substitution" && a.Asset == gpu {
				sub = a
				return true
			}
		}
		return false
	})
	if sub.Severity != "critical" || len(sub.Evidence) == 0 {
		t.Fatalf("substitution alert = %+v, want critical with evidence", sub)
	}
	ev := sub.Evidence[0].Evidence
	if ev.Values["ledger_fingerprint"] != shipped || ev.Values["observed_fingerprint"] == "" || ev.Values["observed_fingerprint"] == shipped ||
		ev.Values["observed_uuid"] != "GPU-ARRIVED" || ev.Values["registered_by"] != seller {
		t.Errorf("alert evidence values = %v, want the shipped fingerprint %s, another observed one (GPU-ARRIVED) and the registrar %s", ev.Values, shipped, seller)
	}
	if len(ev.Events) != 1 || len(ev.Messages) != 1 || ev.Messages[0].Gateway != "gw-srv-s1-001" || ev.Messages[0].Seq != 1 {
		t.Errorf("alert evidence events %v messages %v, want the asset's first event and gateway message gw-srv-s1-001 #1", ev.Events, ev.Messages)
	}
	// The ledger recorded it: the asset is quarantined, its history ends in
	// the substitution with both fingerprints.
	var hist core.AssetHistory
	get(t, svc.URL+"/api/v1/ledger/assets/"+gpu+"/history", token, &hist)
	if n := len(hist.Changes); hist.Asset.Status != core.StatusQuarantined || n == 0 || hist.Changes[n-1].Type != core.ChangeSubstitution ||
		hist.Changes[n-1].Old != shipped || hist.Changes[n-1].New != ev.Values["observed_fingerprint"] {
		t.Errorf("ledger history of %s = %+v, want quarantined after a substitution from %s to the observed fingerprint", gpu, hist, shipped)
	}
	for _, c := range hist.Changes {
		t.Logf("ledger history of %s: %-16s by %s (%s) tx %.16s old %.12s new %.12s", gpu, c.Type, c.Stamp.MSP, c.Stamp.Role, c.Stamp.TxID, c.Old, c.New)
	}
	// It is in an incident, like a detector's alert.
	var inc struct {
		ID     string   `json:"id"`
		Alerts []string `json:"alerts"`
	}
	if sub.Incident == "" || get(t, svc.URL+"/api/v1/incidents/"+sub.Incident, token, &inc) != 200 || len(inc.Alerts) == 0 || inc.Alerts[0] != sub.ID {
		t.Errorf("substitution alert %s: incident %q = %+v, want one holding the alert", sub.ID, sub.Incident, inc)
	}
	// Its raise is anchored: the alert bundle verifies.
	pub, err := os.ReadFile(filepath.Join(dir, "service.pub"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cli := func(args ...string) error {
		out.Reset()
		return run(context.Background(), args, func(k string) string {
			return map[string]string{"TWINCHAIN_TOKEN": token, "TWINCHAIN_SERVER": svc.URL, "TWINCHAIN_VERIFY_KEY": strings.TrimSpace(string(pub))}[k]
		}, &out)
	}
	bundle := filepath.Join(dir, "substitution.json")
	testsvc.Eventually(t, 30*time.Second, "the alert's events to be anchored", func() bool {
		err = cli("ledger", "proof", "-alert", sub.ID, "-o", bundle)
		return err == nil || !strings.Contains(err.Error(), "409")
	})
	if err != nil {
		t.Fatalf("proof of the substitution alert: %v", err)
	}
	verify := func(path string) error {
		out.Reset()
		return runVerify(context.Background(), []string{"-key", strings.TrimSpace(string(pub)), path}, func(string) string { return "" }, &out, io.Discard)
	}
	if err := verify(bundle); err != nil {
		t.Errorf("verify of the substitution alert's bundle: %v\n%s", err, out.String())
	}
	t.Logf("twin-service verify %s:\n%s", bundle, out.String())
	// On Fabric the anchors' proof is Fabric's own: the block, checked offline.
	fabric := strings.Contains(cfg, "backend: fabric")
	if fabric && !strings.Contains(out.String(), "fabric block") {
		t.Errorf("verify of a Fabric-backed alert bundle checks no Fabric block:\n%s", out.String())
	}
	// The event that reported the arrived GPU, proven alone.
	evBundle := filepath.Join(dir, "arrival-event.json")
	if err := cli("ledger", "proof", "-event", fmt.Sprint(ev.Events[0].ID), "-o", evBundle); err != nil {
		t.Fatalf("proof of event %d: %v", ev.Events[0].ID, err)
	}
	if err := verify(evBundle); err != nil || fabric && !strings.Contains(out.String(), "fabric endorsements") {
		t.Errorf("verify of event %d's bundle = %v:\n%s\nwant verified (on Fabric: its block and endorsements)", ev.Events[0].ID, err, out.String())
	}
	t.Logf("twin-service ledger proof -event %d -o %s && twin-service verify %s:\n%s", ev.Events[0].ID, evBundle, evBundle, out.String())
}

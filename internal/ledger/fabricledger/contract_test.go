package fabricledger_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger/fabricledger"

	"twinchain/internal/ledger"
	"twinchain/internal/ledger/fabricledger/fabrictest"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/ledger/proofbundle"
)

// TestContract runs the ledger contract suite against a real Fabric network
// running the twinchain chaincode. Peers and orderers cannot be installed
// here, so it runs only where FABRIC_BIN points at Fabric 2.5 binaries and a
// network started from them is described by TWINCHAIN_FABRIC_* variables.
// Each subtest takes a test channel no earlier run used (fabrictest.Fresh),
// so the suite runs again on the same network while channels last.
func TestContract(t *testing.T) {
	fabrictest.Skip(t)
	ledgertest.Run(t, func(t *testing.T) ledger.Ledger { return fabrictest.Fresh(t) })
}

// TestHeight reads the channel's block height from the peer: a committed
// transaction adds a block.
func TestHeight(t *testing.T) {
	c := fabrictest.Fresh(t)
	defer c.Close()
	b := c.Backend().(*fabricledger.Backend)
	ctx := context.Background()
	h1, err := b.Height(ctx)
	if err != nil || h1 < 2 {
		t.Fatalf("Height = %d, %v; want the genesis block, the chaincode definition and the claim at least", h1, err)
	}
	if _, err := c.RegisterAsset(ledgertest.As(core.RoleAssetManager), core.AssetRegistration{ID: "height-probe", Kind: "gpu", FingerprintHash: ledgertest.Hash("p")}); err != nil {
		t.Fatal(err)
	}
	if h2, err := b.Height(ctx); err != nil || h2 != h1+1 {
		t.Errorf("Height after one transaction = %d, %v; want %d", h2, err, h1+1)
	}
	// A write with a receipt says where it was committed.
	var rc ledger.Receipt
	a, err := c.SetAssetStatus(ledger.WithReceipt(ledgertest.As(core.RoleSecurity), &rc), core.StatusChange{Asset: "height-probe", Status: core.StatusQuarantined, Reason: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	h3, _ := b.Height(ctx)
	if rc.TxID == "" || rc.TxID != a.Updated.TxID || rc.Block != h3-1 || rc.Channel == "" {
		t.Errorf("receipt = %+v, want the asset's transaction %s in block %d", rc, a.Updated.TxID, h3-1)
	}
}

// TestRecordBundles: on Fabric a record bundle (asset, dataset, model,
// policy, deployment) carries the block of the transaction that wrote the
// record's current value, and verifies offline.
func TestRecordBundles(t *testing.T) {
	c := fabrictest.Fresh(t)
	defer c.Close()
	b := c.Backend().(*fabricledger.Backend)
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	x := &proofbundle.Exporter{Key: key.Public().(ed25519.PublicKey), FabricTxBlock: b.BlockOfTx, FabricBlock: b.Block, Channel: b.Channel(), Chaincode: b.Chaincode(),
		Records: proofbundle.LedgerRecords(c, core.Caller{ID: "test-service", Role: core.RoleService})}
	for _, r := range ledgertest.Records(t, c) {
		bd, err := x.Record(context.Background(), r[0], r[1])
		if err != nil {
			t.Errorf("Record(%s, %s): %v", r[0], r[1], err)
			continue
		}
		raw, _ := json.Marshal(bd)
		rep := proofbundle.VerifyJSON(raw, key.Public().(ed25519.PublicKey))
		if !rep.Verified() || bd.Record.Fabric == nil || len(rep.Unproven()) != 0 {
			t.Errorf("Record(%s, %s) did not verify: failed %+v, not proven %+v", r[0], r[1], rep.Failed(), rep.Unproven())
			continue
		}
		for _, c := range rep.Checks {
			if c.Name == "fabric endorsements" {
				t.Logf("%s %s: transaction %s, block %d: %s", r[0], r[1], bd.Record.Fabric.TxID, bd.Record.Fabric.Block, c.Detail)
			}
		}
	}
}

// TestCustody runs the custody rules across network.sh's two
// organisations, each through its own peer with its own identities: every
// asset key carries its owner's endorsement policy, so the accepting and
// arriving transactions need the owner's peer as the gateway finds it.
func TestCustody(t *testing.T) {
	c1 := fabrictest.Fresh(t)
	defer c1.Close()
	c2 := fabrictest.Org2(t, c1)
	defer c2.Close()
	as := func(r core.Role) context.Context {
		return ledger.WithCaller(context.Background(), core.Caller{ID: "test-" + string(r), Role: r})
	}
	// Each org's peer commits blocks on its own time: an org acts once its
	// peer has every block the other's has.
	b1, b2 := c1.Backend().(*fabricledger.Backend), c2.Backend().(*fabricledger.Backend)
	sync := func() {
		for i := 0; i < 200; i++ {
			h1, err1 := b1.Height(context.Background())
			h2, err2 := b2.Height(context.Background())
			if err1 == nil && err2 == nil && h1 == h2 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("the two orgs' peers did not reach the same height")
	}
	ledgertest.Custody(t, ledgertest.Org{MSP: "Org1MSP", L: c1, As: as, Sync: sync}, ledgertest.Org{MSP: "Org2MSP", L: c2, As: as, Sync: sync})
}

// twoOrgs connects to a fresh test channel as Org1 and as Org2, each
// through its own peer, with a Sync that waits until both peers have the
// same blocks.
func twoOrgs(t *testing.T) (a, b ledgertest.Org) {
	c1 := fabrictest.Fresh(t)
	t.Cleanup(func() { c1.Close() })
	c2 := fabrictest.Org2(t, c1)
	t.Cleanup(func() { c2.Close() })
	as := func(r core.Role) context.Context {
		return ledger.WithCaller(context.Background(), core.Caller{ID: "test-" + string(r), Role: r})
	}
	b1, b2 := c1.Backend().(*fabricledger.Backend), c2.Backend().(*fabricledger.Backend)
	sync := func() {
		for i := 0; i < 200; i++ {
			h1, err1 := b1.Height(context.Background())
			h2, err2 := b2.Height(context.Background())
			if err1 == nil && err2 == nil && h1 == h2 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("the two orgs' peers did not reach the same height")
	}
	return ledgertest.Org{MSP: "Org1MSP", L: c1, As: as, Sync: sync}, ledgertest.Org{MSP: "Org2MSP", L: c2, As: as, Sync: sync}
}

// TestPrivate runs the private dataset metadata rules across network.sh's
// two organisations: the metadata goes to Org1MSPPrivate as transient
// data, Org2 checks a disclosed copy against the channel's hash
// (GetPrivateDataHash on its own peer, which holds no private value), and
// the block of the transaction, as both peers serve it, holds only the
// hash.
func TestPrivate(t *testing.T) {
	a, b := twoOrgs(t)
	ds := ledgertest.Private(t, a, b)
	rec, err := a.L.GetDatasetPrivate(a.As(core.RoleAuditor), ds.ID)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := b.L.VerifyDatasetPrivate(b.As(core.RoleAuditor), core.Disclosure{Dataset: ds.ID, Data: rec.Data})
	if err != nil || !ok.Match || ok.ChannelHash != ds.Private.Hash {
		t.Errorf("VerifyDatasetPrivate on Org2's peer = %+v, %v; want a match with the channel's hash %s", ok, err, ds.Private.Hash)
	}
	for _, o := range []ledgertest.Org{a, b} {
		block, err := o.L.(*ledger.Client).Backend().(*fabricledger.Backend).BlockOfTx(context.Background(), ds.Private.Stamp.TxID)
		if err != nil {
			t.Fatalf("%s: block of %s: %v", o.MSP, ds.Private.Stamp.TxID, err)
		}
		if bytes.Contains(block, []byte(ledgertest.PrivateSecret)) {
			t.Errorf("%s's peer serves a block holding the private metadata", o.MSP)
		}
	}
}

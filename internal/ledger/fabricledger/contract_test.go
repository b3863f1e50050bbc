package fabricledger_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"

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
	a, b := twoOrgs(t)
	ledgertest.Custody(t, a, b)
}

// twoOrgs is fabrictest.TwoOrgs as the two ledgertest organisations,
// their callers acting through their own identities.
func twoOrgs(t *testing.T) (a, b ledgertest.Org) {
	c1, c2, sync := fabrictest.TwoOrgs(t)
	as := func(r core.Role) context.Context {
		return ledger.WithCaller(context.Background(), core.Caller{ID: "test-" + string(r), Role: r})
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

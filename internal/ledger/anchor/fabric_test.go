package anchor

import (
	"context"
	"crypto/ed25519"
	"testing"

	"twinchain/internal/ledger/fabricledger"
	"twinchain/internal/ledger/fabricledger/fabrictest"
	"twinchain/internal/ledger/proofbundle"
)

// TestFabricEventBundle anchors on a real Fabric network (FABRIC_BIN and
// network.env; skipped otherwise) and exports an event bundle carrying the
// anchor's Fabric transaction, block number and block: it verifies offline,
// the block check included, and fails once a byte of the block changes.
func TestFabricEventBundle(t *testing.T) {
	c := fabrictest.Fresh(t)
	r := newRigOn(t, Config{}, c)
	r.inventory("GPU-b1", "v0")
	r.inventory("GPU-b1", "v1")
	r.waitAnchored("on Fabric")
	x := &proofbundle.Exporter{Tree: r.tree, Anchors: auditorAnchors{r.led}, Key: serviceKey.Public().(ed25519.PublicKey),
		Receipts: r.a.Receipt, FabricBlock: c.Backend().(*fabricledger.Backend).Block}
	b, err := x.Event(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if b.Event.Fabric == nil || len(b.Event.FabricBlock) == 0 {
		t.Fatalf("event bundle on Fabric carries no Fabric receipt or block: %+v", b.Event.Fabric)
	}
	rep := proofbundle.Verify(b, serviceKey.Public().(ed25519.PublicKey))
	found := false
	for _, ch := range rep.Checks {
		found = found || ch.Name == "fabric block" && ch.OK
	}
	if !rep.OK() || !found {
		t.Fatalf("bundle does not verify with its Fabric block: %+v", rep.Checks)
	}
	b.Event.FabricBlock[len(b.Event.FabricBlock)/2] ^= 1
	if rep := proofbundle.Verify(b, serviceKey.Public().(ed25519.PublicKey)); rep.OK() {
		t.Error("a bundle whose Fabric block was changed still verifies")
	}
}

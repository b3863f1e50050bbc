package proofbundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"

	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
)

// chainNode is one twin-service node anchoring its own event tree, signed
// by its own key, on its own chain of a ledger another node keeps.
type chainNode struct {
	tree *eventtree.Tree
	key  ed25519.PrivateKey
	led  *ledger.Client
	x    *Exporter
}

func (n *chainNode) anchorBatch(t *testing.T, first, last uint64) {
	t.Helper()
	anchorEvents(t, n.tree, n.key, n.led, first, last)
}

// TestNamedChainBundles: two nodes anchor interleaved batches on their
// own chains of one embedded ledger whose blocks a third key signs; each
// node's event bundles verify offline under the pinned node and ledger
// keys, name their chain, and fail when the chain is changed.
func TestNamedChainBundles(t *testing.T) {
	ledgerKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	led, fl, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: ledgerKey, Org: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	nodes := map[string]*chainNode{}
	for i, name := range []string{"node-1", "node-2"} {
		tree, err := eventtree.Open(t.TempDir(), eventtree.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tree.Close() })
		n := &chainNode{tree: tree, key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(20 + i)}, 32)), led: led.OnChain(name)}
		n.x = &Exporter{Tree: tree, Anchors: anchorsAs{n.led}, Blocks: fl, Key: n.key.Public().(ed25519.PublicKey)}
		nodes[name] = n
	}
	nodes["node-1"].anchorBatch(t, 1, 4)
	nodes["node-2"].anchorBatch(t, 1, 6)
	nodes["node-1"].anchorBatch(t, 5, 9)
	nodes["node-2"].anchorBatch(t, 7, 7)
	ledgerPub := ledgerKey.Public().(ed25519.PublicKey)
	for name, n := range nodes {
		pub := n.key.Public().(ed25519.PublicKey)
		for _, id := range []uint64{1, 5, 7} {
			b, err := n.x.Event(context.Background(), id)
			if err != nil {
				t.Fatalf("%s Event(%d): %v", name, id, err)
			}
			if !bytes.Equal(b.LedgerKey, ledgerPub) {
				t.Errorf("%s bundle of event %d has ledger key %x, want the ledger node's", name, id, b.LedgerKey)
			}
			data, _ := json.Marshal(b)
			pb, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			var sb strings.Builder
			r := VerifyKeys(pb, pub, ledgerPub)
			r.Write(&sb)
			if !r.Verified() || !strings.Contains(sb.String(), "of chain "+name) {
				t.Errorf("VerifyKeys(%s event %d) verified %v, want verified on chain %s:\n%s", name, id, r.Verified(), name, sb.String())
			}
			if r := Verify(pb, pub); !r.OK() || r.Verified() {
				t.Errorf("Verify(%s event %d, ledger key not pinned) = ok %v verified %v, want consistent but not trusted", name, id, r.OK(), r.Verified())
			}
			if r := VerifyKeys(pb, pub, pub); r.Verified() {
				t.Errorf("VerifyKeys(%s event %d, wrong ledger key) verified", name, id)
			}
			// The chain is covered by the anchor's hash and names its key
			// in the block: another chain's name fails.
			other := "node-1"
			if name == other {
				other = "node-2"
			}
			forged := bytes.Replace(data, []byte(`"chain":"`+name+`"`), []byte(`"chain":"`+other+`"`), 1)
			if bytes.Equal(forged, data) {
				t.Fatalf("%s bundle names no chain: %s", name, data)
			}
			if r := VerifyJSON(forged, pub); r.OK() {
				t.Errorf("bundle of %s event %d with its chain renamed %s still checks", name, id, other)
			}
		}
	}
}

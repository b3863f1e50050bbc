package twinnode

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/anchor"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/proofbundle"
)

// Anchoring says how a node anchors its events into the one ledger: its
// own event tree (in its data directory, checkpoints signed by Key) on its
// own anchor chain, named by the node's id (ledger.Client.OnChain), so
// nodes anchor side by side without racing on one chain head. The ledger
// is a designated node's embedded ledger: that node's own client, or a
// ledgerlink client on every other node.
type Anchoring struct {
	Ledger   *ledger.Client
	Blocks   proofbundle.BlockSource // the ledger's signed blocks for proof bundles (fileledger.Ledger or ledgerlink.Client); nil: none
	Gateways anchor.GatewayKeys      // the gateways' keys (registry.Registry)
	Key      ed25519.PrivateKey      // the node's key: signs its checkpoints
	Config   anchor.Config
}

// anchoring is a node's running anchoring part.
type anchoring struct {
	tree     *eventtree.Tree
	anchorer *anchor.Anchorer
	proofs   *proofbundle.Exporter
	key      ed25519.PublicKey
}

// openAnchoring opens the node's event tree and anchor queue in dir.
func (n *Node) openAnchoring(a *Anchoring, dir string) (*anchoring, error) {
	if a.Ledger == nil || a.Gateways == nil || len(a.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("twinnode: anchoring needs a ledger, the gateways' keys and the node's key")
	}
	pub := a.Key.Public().(ed25519.PublicKey)
	tree, err := eventtree.Open(filepath.Join(dir, "events"), eventtree.Options{Key: pub, Log: n.log.With("component", "eventtree")})
	if err != nil {
		return nil, err
	}
	led := a.Ledger.OnChain(n.cfg.ID)
	an, err := anchor.Open(a.Config, filepath.Join(dir, "anchor.db"), anchor.Deps{Events: n.store, Wake: n.in, Gateways: a.Gateways,
		Tree: tree, Ledger: led, Key: a.Key, Log: n.log.With("component", "anchor")})
	if err != nil {
		_ = tree.Close()
		return nil, err
	}
	caller := core.Caller{ID: n.cfg.ID, Role: core.RoleService}
	return &anchoring{tree: tree, anchorer: an, key: pub,
		proofs: &proofbundle.Exporter{Tree: tree, Anchors: chainReader{led, caller}, Blocks: a.Blocks, Key: pub}}, nil
}

func (a *anchoring) close() error {
	return errors.Join(a.anchorer.Close(), a.tree.Close())
}

// chainReader reads the node's chain as the node.
type chainReader struct {
	l      *ledger.Client
	caller core.Caller
}

func (r chainReader) AnchorForEvent(ctx context.Context, id uint64) (core.Anchor, error) {
	return r.l.AnchorForEvent(ledger.WithCaller(ctx, r.caller), id)
}

// AnchorStatus is what the node says of its anchoring.
type AnchorStatus struct {
	Node      string       `json:"node"`
	Chain     string       `json:"chain"`
	Key       string       `json:"key"`        // hex: the node's checkpoint key
	LastEvent uint64       `json:"last_event"` // the node's event log
	Stats     anchor.Stats `json:"stats"`
}

// AnchorStatus is the node's anchoring status, ok false when it does not
// anchor.
func (n *Node) AnchorStatus() (AnchorStatus, bool) {
	if n.anc == nil {
		return AnchorStatus{}, false
	}
	return AnchorStatus{Node: n.cfg.ID, Chain: n.cfg.ID, Key: hex.EncodeToString(n.anc.key),
		LastEvent: n.store.LastEventID(), Stats: n.anc.anchorer.Stats()}, true
}

// ProofHandler serves the node's anchoring: GET /anchoring is its
// AnchorStatus, GET /proof/event/{id} the proof bundle of the node's event
// id (404 not in its log, 409 not anchored yet, 503 the ledger cannot be
// reached). It answers 404 to everything on a node that does not anchor.
func (n *Node) ProofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /anchoring", func(w http.ResponseWriter, r *http.Request) {
		st, ok := n.AnchorStatus()
		if !ok {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /proof/event/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil || n.anc == nil {
			http.NotFound(w, r)
			return
		}
		b, err := n.anc.proofs.Event(r.Context(), id)
		switch {
		case errors.Is(err, proofbundle.ErrPending):
			http.Error(w, err.Error(), http.StatusConflict)
		case errors.Is(err, ledger.ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
		case errors.Is(err, ledger.ErrUnavailable):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		case err != nil:
			http.Error(w, fmt.Sprintf("proof of event %d: %v", id, err), http.StatusInternalServerError)
		default:
			writeJSON(w, b)
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v) // the client is gone
}

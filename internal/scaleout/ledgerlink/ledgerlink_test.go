package ledgerlink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/scaleout/natslog"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
)

var ledgerKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))

func svc(id string) context.Context {
	return ledger.WithCaller(context.Background(), core.Caller{ID: id, Role: core.RoleService})
}

// start runs a real embedded nats-server, the ledger node's embedded
// ledger and the link's server; it returns a client connection for nodes.
func start(t *testing.T) (*nats.Conn, *Server, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := natslog.Start(ctx, natslog.Config{Dir: filepath.Join(t.TempDir(), "js"), MQTTAddr: testsvc.Addr(testsvc.FreePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	_, fl, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: ledgerKey, Org: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(s.NC, fl, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := fl.Close(); err != nil {
			t.Errorf("close the ledger: %v", err)
		}
	})
	nc, err := nats.Connect("", nats.InProcessServer(s.NS)) // a connection of its own, as a node has
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, srv, cancel
}

func event(id uint64) []byte {
	at := time.Date(2026, 12, 6, 3, 0, 0, int(id), time.UTC)
	b, _ := json.Marshal(twin.Event{ID: id, Asset: fmt.Sprintf("srv-s1-001.gpu%d", id%8), Revision: 1, Type: twin.EventHealthChanged,
		Time: at, Recorded: at, Changes: []twin.Change{{Field: "health.state", Old: "ok", New: "warning"}}})
	return b
}

// node anchors batches of its own event tree on its own chain through the
// link.
type node struct {
	id   string
	key  ed25519.PrivateKey
	tree *eventtree.Tree
	led  *ledger.Client
}

func (n *node) anchor(first, last uint64) (core.Anchor, error) {
	var leaves [][]byte
	for id := first; id <= last; id++ {
		leaves = append(leaves, event(id))
	}
	if _, err := n.tree.Append(leaves...); err != nil {
		return core.Anchor{}, err
	}
	root, size, _ := n.tree.Root()
	if err := n.tree.AddCheckpoint(eventtree.SignCheckpoint(n.key, "twinchain/events", size, root, time.Unix(int64(size), 0))); err != nil {
		return core.Anchor{}, err
	}
	batch, err := n.tree.RootOfRange(first-1, last)
	if err != nil {
		return core.Anchor{}, err
	}
	var ev twin.Event
	_ = json.Unmarshal(event(first), &ev)
	as, err := n.led.SubmitAnchors(svc(n.id), []core.AnchorInput{{Root: hex.EncodeToString(batch), FirstEvent: first, LastEvent: last,
		Size: last - first + 1, FirstTime: ev.Time, LastTime: ev.Time.Add(time.Duration(last - first)), TreeSize: size, TreeRoot: hex.EncodeToString(root)}})
	if err != nil {
		return core.Anchor{}, err
	}
	return as[0], nil
}

type auditorAnchors struct{ l *ledger.Client }

func (a auditorAnchors) AnchorForEvent(ctx context.Context, id uint64) (core.Anchor, error) {
	return a.l.AnchorForEvent(ledger.WithCaller(ctx, core.Caller{ID: "exporter", Role: core.RoleAuditor}), id)
}

// TestContractAnchors runs the ledger suite's anchor cases, two chains
// interleaving among them, through the link into a real embedded ledger.
func TestContractAnchors(t *testing.T) {
	ledgertest.RunAnchors(t, func(t *testing.T) ledger.Ledger {
		nc, _, _ := start(t)
		return ledger.New(NewClient(nc))
	})
}

// TestTwoNodesAnchorThroughTheLink: two nodes anchor at once, each on its
// own chain, into the ledger node's embedded ledger over a real
// nats-server; each chain links on its own, their bundles verify offline
// under the node's and the ledger node's keys, and the ledger's errors
// reach the caller as its sentinels.
func TestTwoNodesAnchorThroughTheLink(t *testing.T) {
	nc, srv, stop := start(t)
	link := NewClient(nc)
	var nodes []*node
	for i, id := range []string{"node-1", "node-2"} {
		tree, err := eventtree.Open(t.TempDir(), eventtree.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tree.Close() })
		nodes = append(nodes, &node{id: id, key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(30 + i)}, 32)), tree: tree, led: ledger.New(link).OnChain(id)})
	}
	const batches = 20
	var wg sync.WaitGroup
	chains := make([][]core.Anchor, len(nodes))
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() {
			for b := range uint64(batches) {
				a, err := n.anchor(b*5+1, b*5+5)
				if err != nil {
					errs[i] = fmt.Errorf("%s batch %d: %w", n.id, b, err)
					return
				}
				chains[i] = append(chains[i], a)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		for j, a := range chains[i] {
			if a.Chain != n.id || a.Seq != uint64(j+1) || (j > 0 && a.Prev != chains[i][j-1].Hash) || core.AnchorHash(&a) != a.Hash {
				t.Fatalf("%s anchor %d = chain %q seq %d prev %s, want seq %d after its own chain's previous", n.id, j, a.Chain, a.Seq, a.Prev, j+1)
			}
		}
		head, err := n.led.AnchorHead(svc(n.id))
		if err != nil || head.Seq != batches {
			t.Errorf("%s AnchorHead = seq %d, %v; want %d", n.id, head.Seq, err, batches)
		}
		x := &proofbundle.Exporter{Tree: n.tree, Anchors: auditorAnchors{n.led}, Blocks: link, Key: n.key.Public().(ed25519.PublicKey)}
		for _, id := range []uint64{1, 52, 100} {
			b, err := x.Event(context.Background(), id)
			if err != nil {
				t.Fatalf("%s export event %d: %v", n.id, id, err)
			}
			data, _ := json.Marshal(b)
			pb, err := proofbundle.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			r := proofbundle.VerifyKeys(pb, n.key.Public().(ed25519.PublicKey), ledgerKey.Public().(ed25519.PublicKey))
			if !r.Verified() {
				var sb strings.Builder
				r.Write(&sb)
				t.Errorf("%s bundle of event %d does not verify:\n%s", n.id, id, sb.String())
			}
		}
	}

	// The ledger's errors, through the link.
	n := nodes[0]
	_, err := n.led.SubmitAnchor(svc(n.id), core.AnchorInput{Root: strings.Repeat("ab", 32), FirstEvent: 50, LastEvent: 60, Size: 11,
		FirstTime: time.Unix(1, 0), LastTime: time.Unix(2, 0)})
	if !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("SubmitAnchor(overlapping its chain) = %v, want ErrConflict", err)
	}
	if _, err := n.led.GetAnchor(svc(n.id), 99); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("GetAnchor(99) = %v, want ErrNotFound", err)
	}
	if _, err := n.led.RegisterDataset(svc(n.id), core.DatasetInput{ID: "ds"}); !errors.Is(err, ledger.ErrForbidden) {
		t.Errorf("RegisterDataset through the link = %v, want ErrForbidden (not served)", err)
	}
	auditor := ledger.WithCaller(context.Background(), core.Caller{ID: "a", Role: core.RoleAuditor})
	if _, err := n.led.SubmitAnchor(auditor, core.AnchorInput{}); !errors.Is(err, ledger.ErrForbidden) {
		t.Errorf("SubmitAnchor as auditor through the link = %v, want ErrForbidden", err)
	}
	if _, err := nc.Request(Subject, []byte("{not json"), 5*time.Second); err != nil {
		t.Errorf("a bad request got no answer: %v", err)
	}
	st := srv.Stats()
	if st.Refused != 3 || st.Served < 2*batches || st.Failed != 2 {
		t.Errorf("server stats = %+v, want 3 refused, 2 failed, at least %d served", st, 2*batches)
	}

	// The ledger node gone: a call ends within its deadline, unavailable.
	stop()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(svc(n.id), 2*time.Second)
	defer cancel()
	t0 := time.Now()
	if _, err := n.led.AnchorHead(ctx); !errors.Is(err, ledger.ErrUnavailable) || time.Since(t0) > 3*time.Second {
		t.Errorf("AnchorHead with the ledger node gone = %v after %s, want ErrUnavailable within the deadline", err, time.Since(t0))
	}
}

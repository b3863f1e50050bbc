package proofbundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
)

// ErrPending is returned for an event that is stored but not anchored and
// checkpointed yet; asking again later works.
var ErrPending = errors.New("event not anchored yet")

// AnchorFinder finds the anchor that covers an event.
type AnchorFinder interface {
	AnchorForEvent(ctx context.Context, event uint64) (core.Anchor, error)
}

// BlockSource reads the embedded ledger's signed blocks (fileledger.Engine).
type BlockSource interface {
	BlockOfTx(id string) (fileledger.Block, error)
	BlockWriting(key string) (fileledger.Block, error)
	PublicKey() ed25519.PublicKey
}

// Exporter builds bundles.
type Exporter struct {
	Tree    *eventtree.Tree
	Anchors AnchorFinder
	Blocks  BlockSource       // nil on a ledger without local blocks (Fabric)
	Key     ed25519.PublicKey // the service key that signs checkpoints
	// Receipts, when set, gives where the anchor ending at an event was
	// committed on Fabric (the anchorer's record of it).
	Receipts func(lastEvent uint64) (ledger.Receipt, bool)
	// FabricBlock, when set, reads a Fabric block for the bundle.
	FabricBlock func(ctx context.Context, n uint64) ([]byte, error)
	// On a ledger without local blocks (Fabric), record bundles need
	// Records, which reads a record's current JSON, and FabricTxBlock, which
	// reads the block holding a transaction (qscc GetBlockByTxID); Channel
	// and Chaincode name where they are.
	Records            func(ctx context.Context, typ, id string) ([]byte, error)
	FabricTxBlock      func(ctx context.Context, txID string) ([]byte, error)
	Channel, Chaincode string
}

// ledgerKey is the key of the embedded ledger's blocks where it is not the
// service key (the ledger is another node's), else nil.
func (x *Exporter) ledgerKey() eventtree.Hash {
	if x.Blocks == nil {
		return nil
	}
	if k := x.Blocks.PublicKey(); len(k) > 0 && !bytes.Equal(k, x.Key) {
		return eventtree.Hash(k)
	}
	return nil
}

// Event builds the bundle of twin event id.
func (x *Exporter) Event(ctx context.Context, id uint64) (*Bundle, error) {
	if id == 0 || id > x.Tree.Size() {
		return nil, fmt.Errorf("event %d is not in the event tree: %w", id, ledger.ErrNotFound)
	}
	cp, ok, err := x.Tree.LatestCheckpoint()
	if err != nil {
		return nil, err
	}
	if !ok || cp.Size < id {
		return nil, fmt.Errorf("event %d: no checkpoint covers it: %w", id, ErrPending)
	}
	anchor, err := x.Anchors.AnchorForEvent(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("event %d: %w", id, ErrPending)
	}
	if err != nil {
		return nil, err
	}
	ep := &EventProof{EventID: id, LeafIndex: id - 1, Checkpoint: cp, BatchIndex: id - anchor.FirstEvent}
	if ep.Leaf, err = x.Tree.Leaf(id - 1); err != nil {
		return nil, err
	}
	incl, err := x.Tree.InclusionProof(id-1, cp.Size)
	if err != nil {
		return nil, err
	}
	ep.Inclusion = hashes(incl)
	batch, err := x.Tree.RangeInclusionProof(anchor.FirstEvent-1, anchor.LastEvent, id-1)
	if err != nil {
		return nil, fmt.Errorf("event %d batch proof: %w", id, err)
	}
	ep.BatchInclusion = hashes(batch)
	if anchor.TreeSize != 0 && anchor.TreeSize != cp.Size {
		cons, err := x.Tree.ConsistencyProof(anchor.TreeSize, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("event %d anchor consistency: %w", id, err)
		}
		ep.AnchorConsistency = hashes(cons)
	}
	if ep.Anchor, err = json.Marshal(anchor); err != nil {
		return nil, err
	}
	if x.Blocks != nil {
		b, err := x.Blocks.BlockOfTx(anchor.Stamp.TxID)
		if err != nil {
			return nil, fmt.Errorf("event %d: block of anchor %d: %w", id, anchor.Seq, err)
		}
		w, err := findWrite(&b, core.AnchorKey(anchor.Chain, anchor.Seq))
		if err != nil {
			return nil, err
		}
		ep.Anchor, ep.Block = w.Value, &b
	}
	if x.Receipts != nil {
		if rc, ok := x.Receipts(anchor.LastEvent); ok {
			ep.Fabric = &rc
			if x.FabricBlock != nil {
				if ep.FabricBlock, err = x.FabricBlock(ctx, rc.Block); err != nil {
					return nil, fmt.Errorf("event %d: Fabric block %d: %w", id, rc.Block, err)
				}
				if ep.FabricConfig, err = x.configOf(ctx, ep.FabricBlock); err != nil {
					return nil, fmt.Errorf("event %d: %w", id, err)
				}
			}
		}
	}
	return &Bundle{Version: Version, Kind: KindEvent, ServiceKey: eventtree.Hash(x.Key), LedgerKey: x.ledgerKey(), Event: ep}, nil
}

// Alert builds the bundle of an alert record (its JSON as the alert store
// gives it): an event proof for each twin event in its evidence and for
// each of its lifecycle events. A step not recorded on the event log yet
// is ErrPending; one that could not be recorded is left for Verify to
// report.
func (x *Exporter) Alert(ctx context.Context, raw []byte) (*Bundle, error) {
	a, events, err := parseAlert(raw)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ledger.ErrInvalid)
	}
	ids := make([]uint64, 0, len(events)+len(a.Lifecycle))
	for _, e := range events {
		ids = append(ids, e.ID)
	}
	for _, l := range a.Lifecycle {
		switch {
		case l.Event != 0:
			ids = append(ids, l.Event)
		case l.Error == "":
			return nil, fmt.Errorf("alert %s: step %s not on the event log yet: %w", a.ID, l.Step, ErrPending)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("alert %s has no twin events in its evidence or lifecycle to prove: %w", a.ID, ledger.ErrNotFound)
	}
	ap := &AlertProof{Alert: raw}
	for _, id := range ids {
		if id > x.Tree.Size() {
			// On the event log (the alert store says so), not in the tree yet.
			return nil, fmt.Errorf("alert %s: event %d not anchored yet: %w", a.ID, id, ErrPending)
		}
		b, err := x.Event(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("alert %s: %w", a.ID, err)
		}
		ap.Events = append(ap.Events, *b.Event)
	}
	return &Bundle{Version: Version, Kind: KindAlert, ServiceKey: eventtree.Hash(x.Key), LedgerKey: x.ledgerKey(), Alert: ap}, nil
}

// Record types a record bundle can prove, and their world-state keys. The
// layout is the chaincode core's (core/keys.go); keys_test.go checks it
// against a real ledger.
var recordPrefixes = map[string]string{
	"asset": "asset/", "dataset": "dataset/", "model": "model/", "policy": "policy/", "deployment": "deploy/",
	"remediation": "remediation/",
}

// RecordKey is the world-state key of a record, or "" for an unknown type.
func RecordKey(typ, id string) string {
	p, ok := recordPrefixes[typ]
	if !ok || !core.ValidID(id) {
		return ""
	}
	return p + id
}

// Record builds the bundle of a ledger record (asset, dataset, model,
// policy, deployment, remediation): the block that wrote its current value, signed by
// the service key on the embedded ledger, the Fabric block of the
// transaction that wrote it on Fabric.
func (x *Exporter) Record(ctx context.Context, typ, id string) (*Bundle, error) {
	key := RecordKey(typ, id)
	if key == "" {
		return nil, fmt.Errorf("record %s %q: unknown type or bad id: %w", typ, id, ledger.ErrInvalid)
	}
	if x.Blocks == nil {
		return x.fabricRecord(ctx, typ, id, key)
	}
	b, err := x.Blocks.BlockWriting(key)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", typ, id, err)
	}
	w, err := findWrite(&b, key)
	if err != nil {
		return nil, err
	}
	if w.Delete {
		return nil, fmt.Errorf("%s %s was deleted: %w", typ, id, ledger.ErrNotFound)
	}
	return &Bundle{Version: Version, Kind: KindRecord, ServiceKey: eventtree.Hash(x.Blocks.PublicKey()),
		Record: &RecordProof{Type: typ, ID: id, Key: key, Value: w.Value, Block: &b}}, nil
}

// fabricRecord finds, among the transactions the record's stamps name
// (newest first), the one whose write at key is the record as the ledger
// holds it now, and proves the record by that transaction's block.
func (x *Exporter) fabricRecord(ctx context.Context, typ, id, key string) (*Bundle, error) {
	if x.Records == nil || x.FabricTxBlock == nil {
		return nil, fmt.Errorf("record bundles need the ledger's blocks: %w", ledger.ErrUnavailable)
	}
	cur, err := x.Records(ctx, typ, id)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", typ, id, err)
	}
	var want any
	if err := json.Unmarshal(cur, &want); err != nil {
		return nil, fmt.Errorf("%s %s: %w", typ, id, err)
	}
	for _, tx := range stampTxs(want) {
		raw, err := x.FabricTxBlock(ctx, tx)
		if err != nil {
			return nil, fmt.Errorf("%s %s: block of transaction %s: %w", typ, id, tx, err)
		}
		n, value, err := FabricWrite(raw, tx, x.Chaincode, key)
		if err != nil {
			continue // a stamp of a transaction that wrote other keys (e.g. a parent's)
		}
		var got any
		if json.Unmarshal(value, &got) != nil || !reflect.DeepEqual(got, want) {
			continue // an earlier value of the record
		}
		cfg, err := x.configOf(ctx, raw)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", typ, id, err)
		}
		return &Bundle{Version: Version, Kind: KindRecord, ServiceKey: eventtree.Hash(x.Key),
			Record: &RecordProof{Type: typ, ID: id, Key: key, Value: value,
				Fabric:      &ledger.Receipt{TxID: tx, Block: n, Channel: x.Channel, Chaincode: x.Chaincode},
				FabricBlock: raw, FabricConfig: cfg}}, nil
	}
	return nil, fmt.Errorf("%s %s: no transaction its stamps name writes its current value: %w", typ, id, ledger.ErrNotFound)
}

// configOf reads the channel config block in force for a Fabric block
// (nil without FabricBlock): the org CAs verify checks endorsements with.
func (x *Exporter) configOf(ctx context.Context, block []byte) ([]byte, error) {
	if x.FabricBlock == nil {
		return nil, nil
	}
	n, err := LastConfigIndex(block)
	if err != nil {
		return nil, err
	}
	cfg, err := x.FabricBlock(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("Fabric config block %d: %w", n, err)
	}
	return cfg, nil
}

// LedgerRecords reads records through l as caller, for Exporter.Records.
func LedgerRecords(l ledger.Ledger, caller core.Caller) func(ctx context.Context, typ, id string) ([]byte, error) {
	return func(ctx context.Context, typ, id string) ([]byte, error) {
		ctx = ledger.WithCaller(ctx, caller)
		var v any
		var err error
		switch typ {
		case "asset":
			v, err = l.GetAsset(ctx, id)
		case "dataset":
			v, err = l.GetDataset(ctx, id)
		case "model":
			v, err = l.GetModel(ctx, id)
		case "policy":
			v, err = l.GetPolicy(ctx, id)
		case "deployment":
			v, err = l.GetDeployment(ctx, id)
		case "remediation":
			v, err = l.GetRemediation(ctx, id)
		default:
			return nil, fmt.Errorf("record type %q: %w", typ, ledger.ErrInvalid)
		}
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}
}

// stampTxs lists the transaction ids of the stamps in a decoded record
// (objects with tx_id and time), newest first, each once.
func stampTxs(v any) []string {
	type stamp struct{ tx, time string }
	var all []stamp
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if tx, ok := v["tx_id"].(string); ok && tx != "" {
				tm, _ := v["time"].(string)
				all = append(all, stamp{tx, tm})
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(v)
	sort.SliceStable(all, func(i, j int) bool { return laterStamp(all[i].time, all[j].time) })
	seen := map[string]bool{}
	var out []string
	for _, s := range all {
		if !seen[s.tx] {
			seen[s.tx] = true
			out = append(out, s.tx)
		}
	}
	return out
}

// laterStamp orders RFC 3339 stamp times, newest first; an unreadable time
// sorts last.
func laterStamp(a, b string) bool {
	ta, ea := time.Parse(time.RFC3339Nano, a)
	tb, eb := time.Parse(time.RFC3339Nano, b)
	if ea != nil || eb != nil {
		return ea == nil && eb != nil
	}
	return ta.After(tb)
}

func findWrite(b *fileledger.Block, key string) (fileledger.Write, error) {
	var body fileledger.BlockBody
	if err := json.Unmarshal(b.Body, &body); err != nil {
		return fileledger.Write{}, fmt.Errorf("block body: %w", err)
	}
	for _, w := range body.Writes {
		if w.Key == key {
			return w, nil
		}
	}
	return fileledger.Write{}, fmt.Errorf("block %d does not write %s", body.Height, key)
}

// writeHolds reports whether the block's write set has key = value exactly.
func writeHolds(body *fileledger.BlockBody, key string, value []byte) bool {
	for _, w := range body.Writes {
		if !w.Delete && (key == "" || w.Key == key) && bytes.Equal(w.Value, value) {
			return true
		}
	}
	return false
}

// Package proofbundle exports and checks proof bundles: self-contained JSON
// files that let anyone check, offline and without trusting the server, that
// a twin event or a ledger record is what the service recorded.
//
// # Event bundles
//
//	{
//	  "version": 1, "kind": "event",
//	  "service_key": "<hex Ed25519 public key>",
//	  "event": {
//	    "event_id": 42, "leaf_index": 41,
//	    "leaf": "<base64: the exact leaf bytes = canonical JSON of the twin.Event>",
//	    "checkpoint": {"origin":...,"size":N,"root":"<hex>","time":...,"key":"<hex>","sig":"<hex>"},
//	    "inclusion": ["<hex>", ...],          // leaf in the checkpoint's tree
//	    "anchor": {...},                      // the ledger's anchor record (core.Anchor JSON) covering the event
//	    "batch_index": 1,                     // event_id - anchor.first_event
//	    "batch_inclusion": ["<hex>", ...],    // leaf in the batch tree whose root is anchor.root
//	    "anchor_consistency": ["<hex>", ...], // tree at anchor.tree_size is a prefix of the checkpoint's tree
//	    "block": {"body":{...},"hash":"<hex>","key":"<hex>","sig":"<hex>"} // embedded ledger: the signed block that wrote the anchor
//	  }
//	}
//
// # Checking an event bundle (what Verify does, and what the dashboard's
// WebCrypto verifier repeats)
//
//  1. leaf hash = SHA-256(0x00 || leaf bytes). The leaf parses as a twin
//     event whose id is event_id, and leaf_index = event_id - 1.
//  2. The checkpoint's Ed25519 signature by service_key holds over
//     "twinchain-checkpoint-v1\n<origin>\n<size>\n<root hex>\n<unix ns>\n".
//  3. inclusion proves leaf_index in a tree of checkpoint.size leaves with
//     root checkpoint.root (RFC 9162 section 2.1.3.2; inner node =
//     SHA-256(0x01 || left || right); proof hashes ordered from the leaf up).
//  4. The anchor's hash is core.AnchorHash: hex SHA-256 of
//     "twinchain-anchor-v1", seq, root, first_event, last_event, first_time
//     and last_time (Unix ns), size, tree_size, tree_root, prev, joined by
//     NUL bytes, then, for an anchor of a named chain (anchor.chain, one
//     per node anchoring into a shared ledger), a NUL and the chain name;
//     first_event <= event_id <= last_event.
//  5. batch_inclusion proves batch_index in a tree of anchor.size leaves with
//     root anchor.root.
//  6. anchor.tree_root equals checkpoint.root when anchor.tree_size equals
//     checkpoint.size; otherwise anchor_consistency proves the tree of
//     anchor.tree_size leaves (root anchor.tree_root) is a prefix of the
//     checkpoint's tree (RFC 9162 section 2.1.4.2).
//  7. If a block is present: SHA-256("twinchain-block-v1\n" || body bytes)
//     equals block.hash, block.sig is the Ed25519 signature over that hash
//     by ledger_key (service_key when the bundle has none), and the block's
//     write set holds the anchor's exact bytes under the anchor's key:
//     anchor/<seq> (20 digits) on the default chain, anchorc/<chain>/<seq>
//     on a named one (core.AnchorKey).
//
// # Record bundles (datasets, models, deployments, attestations, assets)
//
//	{"version":1,"kind":"record","service_key":"<hex>",
//	 "record":{"type":"dataset","id":"ds-1","key":"dataset/ds-1","value":{...},"block":{...}}}
//
// The block is the embedded ledger's signed block that last wrote the
// record; Verify checks its hash and signature and that its write set holds
// key with exactly value. A bundle proves what the service signed at that
// height; a later block may supersede the record.
//
// # Alert bundles
//
//	{"version":1,"kind":"alert","service_key":"<hex>",
//	 "alert":{"alert":{...the alert record...},"events":[{...an event proof...}, ...]}}
//
// An alert record lives in the alert store, not on the ledger. What is
// anchored is the evidence behind it and its lifecycle: each step (raised,
// acknowledged, resolved) is a twin event on the alert's asset (type
// alert_raised, ...) whose note is alert.LifecycleNote: the alert id, step,
// who, type, severity, count, evidence hash ("sha256:" + hex SHA-256 of
// the evidence records' JSON) and facts hash (the SHA-256 of the JSON of
// alert.Facts: site, severity, state, summary, count, first and last seen,
// opened, history with who, when and comments, response, escalations) at
// that step. The record's lifecycle[] names those events and carries the
// facts. An alert bundle holds an event proof for every twin event in the
// alert's evidence and for every lifecycle event. Verify checks each
// proof, that each event in the alert is exactly the proven one, that each
// lifecycle event's asset, type and note are what the record says, that
// the last step is the alert's state, that the evidence hashes to the last
// step's hash when no finding was merged since (always, once resolved),
// and every field against the last step's facts: equal is proven; a change
// that merged findings, escalations or an automated response make between
// steps (a higher count, severity or last-seen time while not resolved)
// is reported as not proven (Check.Unproven, "n/p"); any other change
// fails. An open or acknowledged alert's state is proven as of its last
// step only: a later step would be a later event, so "state now" is n/p.
package proofbundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"twinchain/internal/detect/alert"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/twin"
)

// Version is the bundle format version.
const Version = 1

// Bundle kinds.
const (
	KindEvent  = "event"
	KindRecord = "record"
	KindAlert  = "alert"
)

// Bundle is a proof bundle; exactly one of Event and Record is set.
type Bundle struct {
	Version    int            `json:"version"`
	Kind       string         `json:"kind"`
	ServiceKey eventtree.Hash `json:"service_key"`
	// LedgerKey signs the embedded ledger's blocks when another node keeps
	// that ledger (a twin-service node anchoring on its own named chain
	// into a designated node's ledger); absent, service_key signs them.
	LedgerKey eventtree.Hash `json:"ledger_key,omitempty"`
	Event     *EventProof    `json:"event,omitempty"`
	Record    *RecordProof   `json:"record,omitempty"`
	Alert     *AlertProof    `json:"alert,omitempty"`
}

// AlertProof proves the twin events behind an alert.
type AlertProof struct {
	Alert  json.RawMessage `json:"alert"`
	Events []EventProof    `json:"events"`
}

// parseAlert reads an alert record and the twin events of its evidence
// (evidence[].evidence.events[]), each once.
func parseAlert(raw []byte) (a alert.Alert, events []twin.Event, err error) {
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, nil, fmt.Errorf("alert record: %w", err)
	}
	seen := map[uint64]bool{}
	for _, r := range a.Evidence {
		for _, e := range r.Evidence.Events {
			if e.ID != 0 && !seen[e.ID] {
				seen[e.ID] = true
				events = append(events, e)
			}
		}
	}
	return a, events, nil
}

// EventProof proves one twin event; see the package doc.
type EventProof struct {
	EventID           uint64               `json:"event_id"`
	LeafIndex         uint64               `json:"leaf_index"`
	Leaf              []byte               `json:"leaf"`
	Checkpoint        eventtree.Checkpoint `json:"checkpoint"`
	Inclusion         []eventtree.Hash     `json:"inclusion"`
	Anchor            json.RawMessage      `json:"anchor"`
	BatchIndex        uint64               `json:"batch_index"`
	BatchInclusion    []eventtree.Hash     `json:"batch_inclusion"`
	AnchorConsistency []eventtree.Hash     `json:"anchor_consistency,omitempty"`
	Block             *fileledger.Block    `json:"block,omitempty"`
	// Fabric, on a Fabric ledger, is where the anchor's transaction was
	// committed: its id (also the anchor's stamp tx_id), block and channel.
	Fabric *ledger.Receipt `json:"fabric,omitempty"`
	// FabricBlock is that block's protobuf bytes: verify checks its data
	// hash and that the transaction, marked valid, writes the anchor.
	FabricBlock []byte `json:"fabric_block,omitempty"`
	// FabricConfig is the channel's config block in force for that block:
	// the org CA certificates the endorsements are checked against.
	FabricConfig []byte `json:"fabric_config,omitempty"`
}

// RecordProof proves one ledger record by the block that wrote it: the
// embedded ledger's signed block, or on Fabric the transaction (Fabric) and
// its block's protobuf bytes (FabricBlock).
type RecordProof struct {
	Type         string            `json:"type"`
	ID           string            `json:"id"`
	Key          string            `json:"key"`
	Value        json.RawMessage   `json:"value"`
	Block        *fileledger.Block `json:"block,omitempty"`
	Fabric       *ledger.Receipt   `json:"fabric,omitempty"`
	FabricBlock  []byte            `json:"fabric_block,omitempty"`
	FabricConfig []byte            `json:"fabric_config,omitempty"`
}

// Parse reads a bundle.
func Parse(b []byte) (*Bundle, error) {
	var bd Bundle
	if err := json.Unmarshal(b, &bd); err != nil {
		return nil, fmt.Errorf("proof bundle: %w", err)
	}
	if bd.Version != Version {
		return nil, fmt.Errorf("proof bundle version %d, want %d", bd.Version, Version)
	}
	// The values whose exact bytes were hashed and signed are read back in
	// the form they were written, whatever whitespace and escapes the
	// file gained on its way (json.Indent, jq, a browser's pretty-print).
	var raws []*json.RawMessage
	addEvent := func(p *EventProof) {
		raws = append(raws, &p.Anchor)
		if p.Block != nil {
			raws = append(raws, &p.Block.Body)
		}
	}
	if bd.Event != nil {
		addEvent(bd.Event)
	}
	if bd.Record != nil {
		raws = append(raws, &bd.Record.Value)
		if bd.Record.Block != nil {
			raws = append(raws, &bd.Record.Block.Body)
		}
	}
	if bd.Alert != nil {
		for i := range bd.Alert.Events {
			addEvent(&bd.Alert.Events[i])
		}
	}
	for _, r := range raws {
		c, err := Canonical(*r)
		if err != nil {
			return nil, fmt.Errorf("proof bundle: %w", err)
		}
		*r = c
	}
	return &bd, nil
}

// Canonical writes a JSON value as encoding/json writes it: no whitespace
// between tokens, every string escaped as json.Marshal escapes it, numbers
// as written and keys in their order. What encoding/json wrote comes back
// unchanged; a pretty-printed copy comes back as those exact bytes.
func Canonical(raw []byte) ([]byte, error) {
	if raw == nil {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	out := make([]byte, 0, len(raw))
	type level struct {
		object bool
		n      int // tokens written at this level
	}
	var stack []level
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			out = append(out, byte(d))
			continue
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch {
			case top.object && top.n%2 == 1:
				out = append(out, ':')
			case top.n > 0:
				out = append(out, ',')
			}
			top.n++
		} else if len(out) > 0 {
			return nil, errors.New("more than one JSON value")
		}
		switch v := tok.(type) {
		case json.Delim:
			out = append(out, byte(v))
			stack = append(stack, level{object: v == '{'})
		case string:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		case json.Number:
			out = append(out, v...)
		case bool:
			out = strconv.AppendBool(out, v)
		case nil:
			out = append(out, "null"...)
		}
	}
	return out, nil
}

func hashes(hs [][]byte) []eventtree.Hash {
	out := make([]eventtree.Hash, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

func unhex(hs []eventtree.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

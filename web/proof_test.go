package web_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"

	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/twin"
)

type proofCase struct {
	name  string
	json  string
	valid bool
	shot  string
}

// proofCases makes inclusion proofs from a reference RFC 6962 tree (checked
// again in Go), and tampered copies of some of them.
func proofCases(t testing.TB) []proofCase {
	t.Helper()
	tree := testonly.New(rfc6962.DefaultHasher)
	for i := 0; i < 21; i++ {
		tree.AppendData([]byte(fmt.Sprintf(`{"event":%d}`, i+1)))
	}
	enc := func(m map[string]any) string {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var out []proofCase
	for _, c := range []struct{ index, size uint64 }{{0, 1}, {5, 13}, {12, 13}, {20, 21}, {7, 8}, {3, 21}} {
		path, err := tree.InclusionProof(c.index, c.size)
		if err != nil {
			t.Fatal(err)
		}
		leaf := tree.LeafHash(c.index)
		root := tree.HashAt(c.size)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, c.index, c.size, leaf, path, root); err != nil {
			t.Fatalf("reference proof %d/%d: %v", c.index, c.size, err)
		}
		hexPath := make([]string, len(path))
		for i, p := range path {
			hexPath[i] = hex.EncodeToString(p)
		}
		m := map[string]any{"leaf_index": c.index, "tree_size": c.size, "leaf_hash": hex.EncodeToString(leaf), "audit_path": hexPath, "root_hash": hex.EncodeToString(root)}
		name := fmt.Sprintf("leaf %d of %d", c.index, c.size)
		pc := proofCase{name: name, json: enc(m), valid: true}
		if c.index == 5 {
			pc.shot = "proof-valid"
		}
		out = append(out, pc)
		if len(path) > 0 {
			bad := append([]string(nil), hexPath...)
			b, _ := hex.DecodeString(bad[len(bad)/2])
			b[0] ^= 1
			bad[len(bad)/2] = hex.EncodeToString(b)
			m["audit_path"] = bad
			pc := proofCase{name: name + " with a tampered path", json: enc(m), valid: false}
			if c.index == 5 {
				pc.shot = "proof-tampered"
			}
			out = append(out, pc)
			m["audit_path"] = hexPath
		}
		// The same proof claimed for the neighbouring leaf must fail.
		m["leaf_hash"] = hex.EncodeToString(tree.LeafHash((c.index + 1) % tree.Size()))
		out = append(out, proofCase{name: name + " for another leaf", json: enc(m), valid: false})
	}
	return out
}

// eventBundle builds an event proof bundle in the format of the ledger's
// internal/ledger/proofbundle (its package doc), from a reference RFC 6962 tree, a
// real Ed25519 key and a signed block, so that the browser's checks can be
// held against every rule there: a true bundle holds, and each tampered copy
// fails the check it breaks. chain names the anchor's chain ("" the
// default); a ledger key other than priv signs the block, as when a node
// anchors into a designated node's ledger (the bundle's ledger_key).
func eventBundle(t testing.TB, priv, ledgerPriv ed25519.PrivateKey, chain string) (bundle map[string]any, keyHex string) {
	t.Helper()
	pub := priv.Public().(ed25519.PublicKey)
	base := time.Date(2026, 11, 25, 16, 0, 0, 123456789, time.UTC)
	var leaves [][]byte
	tree := testonly.New(rfc6962.DefaultHasher)
	for i := 1; i <= 10; i++ {
		ev := twin.Event{ID: uint64(i), Asset: "srv-s1-001.gpu3", Revision: uint64(i), Type: twin.EventHealthChanged,
			Time: base.Add(time.Duration(i) * time.Second), Recorded: base.Add(time.Duration(i) * time.Second),
			Changes: []twin.Change{{Field: "health.state", Old: "ok", New: "warning"}}}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, b)
		tree.AppendData(b)
	}
	const event, first, last, anchoredSize, size = 5, 4, 7, 7, 10
	batch := testonly.New(rfc6962.DefaultHasher)
	batch.AppendData(leaves[first-1 : last]...)
	batchPath, err := batch.InclusionProof(event-first, batch.Size())
	if err != nil {
		t.Fatal(err)
	}
	inclusion, err := tree.InclusionProof(event-1, size)
	if err != nil {
		t.Fatal(err)
	}
	consistency, err := tree.ConsistencyProof(anchoredSize, size)
	if err != nil {
		t.Fatal(err)
	}
	anchor := map[string]any{
		"seq": 3, "root": hex.EncodeToString(batch.Hash()), "first_event": first, "last_event": last,
		"first_time": base.Add(first * time.Second).Format(time.RFC3339Nano), "last_time": base.Add(last * time.Second).Format(time.RFC3339Nano),
		"size": last - first + 1, "tree_size": anchoredSize, "tree_root": hex.EncodeToString(tree.HashAt(anchoredSize)),
		"prev": strings.Repeat("ab", 32),
	}
	akey := fmt.Sprintf("anchor/%020d", 3)
	if chain != "" {
		anchor["chain"] = chain
		akey = fmt.Sprintf("anchorc/%s/%020d", chain, 3)
	}
	anchor["hash"] = anchorHash(anchor, base.Add(first*time.Second), base.Add(last*time.Second))
	anchor["stamp"] = map[string]any{"by": "twin-service", "role": "admin", "tx_id": "tx-3", "time": base.Format(time.RFC3339Nano)}
	anchorRaw, err := json.Marshal(anchor)
	if err != nil {
		t.Fatal(err)
	}
	writes := []map[string]any{{"key": akey, "value": anchorRaw}, {"key": "anchor/head", "value": []byte(`{"seq":3}`)}}
	body := map[string]any{"height": 9, "prev": strings.Repeat("00", 32), "time": base.Format(time.RFC3339Nano), "txs": []any{},
		"writes": writes, "writes_hash": hex.EncodeToString(writeSetHash(writes))}
	bodyRaw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	bh := sha256.Sum256(append([]byte("twinchain-block-v1\n"), bodyRaw...))
	cpTime := base.Add(11 * time.Second)
	root := tree.HashAt(size)
	signed := fmt.Sprintf("twinchain-checkpoint-v1\ntwinchain/events\n%d\n%x\n%d\n", size, root, cpTime.UnixNano())
	hexes := func(hs [][]byte) []string {
		out := make([]string, len(hs))
		for i, h := range hs {
			out[i] = hex.EncodeToString(h)
		}
		return out
	}
	keyHex = hex.EncodeToString(pub)
	bundle = map[string]any{"version": 1, "kind": "event", "service_key": keyHex, "event": map[string]any{
		"event_id": event, "leaf_index": event - 1, "leaf": leaves[event-1],
		"checkpoint": map[string]any{"origin": "twinchain/events", "size": size, "root": hex.EncodeToString(root),
			"time": cpTime.Format(time.RFC3339Nano), "key": keyHex, "sig": hex.EncodeToString(ed25519.Sign(priv, []byte(signed)))},
		"inclusion": hexes(inclusion), "anchor": json.RawMessage(anchorRaw), "batch_index": event - first,
		"batch_inclusion": hexes(batchPath), "anchor_consistency": hexes(consistency),
		"block": map[string]any{"body": json.RawMessage(bodyRaw), "hash": hex.EncodeToString(bh[:]), "key": hex.EncodeToString(ledgerPriv.Public().(ed25519.PublicKey)),
			"sig": hex.EncodeToString(ed25519.Sign(ledgerPriv, bh[:]))},
	}}
	if !ledgerPriv.Equal(priv) {
		bundle["ledger_key"] = hex.EncodeToString(ledgerPriv.Public().(ed25519.PublicKey))
	}
	return bundle, keyHex
}

// anchorHash is the ledger core's AnchorHash, written out from its doc.
func anchorHash(a map[string]any, firstTime, lastTime time.Time) string {
	parts := []string{"twinchain-anchor-v1", fmt.Sprint(a["seq"]), a["root"].(string), fmt.Sprint(a["first_event"]), fmt.Sprint(a["last_event"]),
		fmt.Sprint(firstTime.UnixNano()), fmt.Sprint(lastTime.UnixNano()), fmt.Sprint(a["size"]), fmt.Sprint(a["tree_size"]),
		a["tree_root"].(string), a["prev"].(string)}
	if c, ok := a["chain"].(string); ok {
		parts = append(parts, c)
	}
	s := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(s[:])
}

func writeSetHash(ws []map[string]any) []byte {
	h := sha256.New()
	var n [8]byte
	for _, w := range ws {
		k, v := w["key"].(string), w["value"].([]byte)
		binary.BigEndian.PutUint64(n[:], uint64(len(k)))
		h.Write(n[:])
		h.Write([]byte(k))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write(v)
	}
	return h.Sum(nil)
}

// nodeBundleCase is the case of a node's bundle with a ledger_key.
const nodeBundleCase = "a node's chain in another node's ledger"

type bundleCase struct {
	name      string
	json      string
	valid     bool
	failCheck string // the check a tampered bundle must fail
}

// bundleCases is the true bundle and tampered copies of it.
func bundleCases(t testing.TB) ([]bundleCase, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, key := eventBundle(t, priv, priv, "")
	enc := func(m map[string]any) string {
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	good := enc(b)
	cases := []bundleCase{{name: "true bundle", json: good, valid: true}}
	tamper := func(name, check string, f func(ev map[string]any)) {
		var m map[string]any
		if err := json.Unmarshal([]byte(good), &m); err != nil {
			t.Fatal(err)
		}
		f(m["event"].(map[string]any))
		cases = append(cases, bundleCase{name: name, json: enc(m), failCheck: check})
	}
	flip := func(s string) string {
		b, _ := hex.DecodeString(s)
		b[len(b)-1] ^= 1
		return hex.EncodeToString(b)
	}
	tamper("a changed event", "tree inclusion", func(ev map[string]any) {
		leaf, _ := base64.StdEncoding.DecodeString(ev["leaf"].(string))
		ev["leaf"] = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(leaf), `"new":"warning"`, `"new":"ok"`, 1)))
	})
	tamper("a forged checkpoint size", "checkpoint signature", func(ev map[string]any) {
		ev["checkpoint"].(map[string]any)["size"] = 11
	})
	tamper("a tampered inclusion path", "tree inclusion", func(ev map[string]any) {
		p := ev["inclusion"].([]any)
		p[0] = flip(p[0].(string))
	})
	tamper("a moved anchor range", "anchor", func(ev map[string]any) {
		var a map[string]any
		json.Unmarshal(mustJSON(t, ev["anchor"]), &a)
		a["last_event"] = 8.0
		ev["anchor"] = a
	})
	tamper("a tampered batch path", "batch inclusion", func(ev map[string]any) {
		p := ev["batch_inclusion"].([]any)
		p[len(p)-1] = flip(p[len(p)-1].(string))
	})
	tamper("a tampered consistency proof", "anchor tree", func(ev map[string]any) {
		p := ev["anchor_consistency"].([]any)
		p[0] = flip(p[0].(string))
	})
	tamper("a block with another body", "ledger block", func(ev map[string]any) {
		blk := ev["block"].(map[string]any)
		body := blk["body"].(map[string]any)
		body["height"] = 10.0
	})
	// The verifier checks the content, not the whitespace: the same bundle
	// pretty-printed (as jq, an editor or a browser writes it) holds, and
	// an edit made in the pretty-printed text still fails.
	indent := func(prefix, ind string) string {
		var out bytes.Buffer
		if err := json.Indent(&out, []byte(good), prefix, ind); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	pretty := indent("", "  ")
	cases = append(cases,
		bundleCase{name: "pretty-printed", json: pretty, valid: true},
		bundleCase{name: "pretty-printed with tabs", json: indent("", "\t"), valid: true},
		bundleCase{name: "pretty-printed, then a moved anchor range", json: strings.Replace(pretty, `"last_event": 7`, `"last_event": 8`, 1), failCheck: "anchor"},
	)
	// A node's bundle: its anchor on the node's own chain, in a block the
	// ledger node's key signs.
	_, ledgerPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nb, _ := eventBundle(t, priv, ledgerPriv, "node-2")
	node := enc(nb)
	cases = append(cases,
		bundleCase{name: nodeBundleCase, json: node, valid: true},
		bundleCase{name: "a node's anchor moved to another chain", json: strings.Replace(node, `"chain":"node-2"`, `"chain":"node-3"`, 1), failCheck: "anchor"},
		bundleCase{name: "a node's block under another ledger key", json: strings.ReplaceAll(node, nb["ledger_key"].(string), strings.Repeat("22", 32)), failCheck: "ledger block"},
	)
	return cases, key
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBundleCasesInGo holds the browser's bundle cases against the Go
// verifier (internal/ledger/proofbundle): both verifiers must agree on
// every case, the true ones and each tampered copy on the check it breaks.
func TestBundleCasesInGo(t *testing.T) {
	cases, key := bundleCases(t)
	pub, err := proofbundle.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		r := proofbundle.VerifyJSON([]byte(tc.json), pub)
		var failed []string
		for _, c := range r.Failed() {
			failed = append(failed, c.Name)
		}
		if r.OK() != tc.valid || (!tc.valid && !slices.Contains(failed, tc.failCheck)) {
			var sb strings.Builder
			r.Write(&sb)
			t.Errorf("%s: Go verifier ok %v failed %q, want ok %v failing %q:\n%s", tc.name, r.OK(), failed, tc.valid, tc.failCheck, sb.String())
		}
	}
}

package web_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
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

package httpapi

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/ledger/proofbundle"
)

// ledgerServer is the API over a real embedded ledger. Callers come from
// the X-Test-Role header (the real twin-service maps bearer tokens).
func ledgerServer(t *testing.T) *Server {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	c, fl, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tree, err := eventtree.Open(t.TempDir(), eventtree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	for i := 0; i < 5; i++ {
		tree.Append([]byte{byte(i)})
		root, size, _ := tree.Root()
		if err := tree.AddCheckpoint(eventtree.SignCheckpoint(key, "test", size, root, time.Unix(int64(i), 0))); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(Options{Ledger: &LedgerDeps{
		Ledger: c,
		Proofs: &proofbundle.Exporter{Tree: tree, Anchors: c, Blocks: fl, Key: key.Public().(ed25519.PublicKey)},
		Tree:   tree,
		Caller: func(c *fiber.Ctx) (core.Caller, error) {
			role := c.Get("X-Test-Role")
			if role == "" {
				return core.Caller{}, errors.New("no role")
			}
			return core.Caller{ID: "test-" + role, Role: core.Role(role)}, nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func call(t *testing.T, s *Server, method, path, role, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if role != "" {
		req.Header.Set("X-Test-Role", role)
	}
	resp, err := s.App().Test(req, int((10 * time.Second).Milliseconds()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLedgerRoutes(t *testing.T) {
	s := ledgerServer(t)
	h := ledgertest.Hash
	privSum := sha256.Sum256([]byte(`{"licensing":"L-7"}`))
	privHash := hex.EncodeToString(privSum[:])
	ds := `{"id":"ds-1","content_hash":"` + h("d") + `","sources":[{"kind":"system","ref":"s3://x"}],"consent":{"policy_ref":"p","licence":"CC0-1.0","use_scope":["training"],"retention_days":30}}`
	for _, tc := range []struct {
		method, path, role, body string
		want                     int
		code                     string // error code, or a text the answer holds
	}{
		{"GET", "/api/v1/ledger/datasets/ds-1", "", "", http.StatusUnauthorized, "unauthorized"},
		{"POST", "/api/v1/ledger/datasets", "auditor", ds, http.StatusForbidden, "forbidden"},
		{"POST", "/api/v1/ledger/datasets", "ml_engineer", ds, http.StatusCreated, `"id":"ds-1"`},
		{"POST", "/api/v1/ledger/datasets", "ml_engineer", ds, http.StatusConflict, "conflict"},
		{"POST", "/api/v1/ledger/datasets", "ml_engineer", `{"id":"ds-2","bogus":1}`, http.StatusBadRequest, "bad_request"},
		{"POST", "/api/v1/ledger/datasets", "ml_engineer", `{"id":"ds-2"}`, http.StatusBadRequest, "bad_request"},
		{"GET", "/api/v1/ledger/datasets/ds-1", "auditor", "", http.StatusOK, `"content_hash":"` + h("d")},
		{"POST", "/api/v1/ledger/datasets/ds-1/checks", "ml_engineer", `{"checks":[{"name":"nulls","value":0,"threshold":0.1,"compare":"max"}]}`, http.StatusCreated, `"pass":true`},
		{"GET", "/api/v1/ledger/datasets/nope", "auditor", "", http.StatusNotFound, "not_found"},
		{"GET", "/api/v1/ledger/datasets/ds-1/private", "auditor", "", http.StatusNotFound, "no private metadata"},
		{"PUT", "/api/v1/ledger/datasets/ds-1/private", "auditor", `{"licensing":"L-7"}`, http.StatusForbidden, "forbidden"},
		{"PUT", "/api/v1/ledger/datasets/ds-1/private", "ml_engineer", `{"licensing":"L-7","bogus":1}`, http.StatusBadRequest, "bad_request"},
		{"PUT", "/api/v1/ledger/datasets/ds-1/private", "ml_engineer", `{}`, http.StatusBadRequest, "empty"},
		{"PUT", "/api/v1/ledger/datasets/ds-1/private", "ml_engineer", `{"licensing":"L-7"}`, http.StatusOK, `"private":{"org":"twinchain","collection":"twinchainPrivate","hash":"` + privHash},
		{"GET", "/api/v1/ledger/datasets/ds-1", "auditor", "", http.StatusOK, `"hash":"` + privHash},
		{"GET", "/api/v1/ledger/datasets/ds-1/private", "auditor", "", http.StatusOK, `"data":{"licensing":"L-7"}`},
		{"POST", "/api/v1/ledger/datasets/ds-1/private/verify", "auditor", `{"data":{"licensing":"L-7"}}`, http.StatusOK, `"match":true`},
		{"POST", "/api/v1/ledger/datasets/ds-1/private/verify", "auditor", `{"data":{"licensing":"L-8"}}`, http.StatusOK, `"match":false`},
		{"POST", "/api/v1/ledger/datasets/ds-1/private/verify", "", `{"data":{}}`, http.StatusUnauthorized, "unauthorized"},
		{"GET", "/api/v1/ledger/datasets", "", "", http.StatusUnauthorized, "unauthorized"},
		{"GET", "/api/v1/ledger/datasets?limit=1", "auditor", "", http.StatusOK, `{"items":[{"id":"ds-1"`},
		{"GET", "/api/v1/ledger/datasets?after=ds-1", "auditor", "", http.StatusOK, `{"items":[]}`},
		{"GET", "/api/v1/ledger/datasets?limit=x", "auditor", "", http.StatusBadRequest, "bad_request"},
		{"GET", "/api/v1/ledger/datasets?limit=501", "auditor", "", http.StatusBadRequest, "bad_request"},
		{"GET", "/api/v1/ledger/models", "auditor", "", http.StatusOK, `{"items":[]}`},
		{"GET", "/api/v1/ledger/anchors/head", "auditor", "", http.StatusNotFound, "not_found"},
		{"GET", "/api/v1/ledger/anchors/x", "auditor", "", http.StatusBadRequest, "bad_request"},
		{"GET", "/api/v1/ledger/events/3/proof", "auditor", "", http.StatusConflict, "not anchored yet"},
		{"GET", "/api/v1/ledger/events/9/proof", "auditor", "", http.StatusNotFound, "not_found"},
		{"GET", "/api/v1/ledger/proofs/dataset/ds-1", "auditor", "", http.StatusOK, `"kind":"record"`},
		{"GET", "/api/v1/ledger/proofs/alien/ds-1", "auditor", "", http.StatusBadRequest, "bad_request"},
		{"GET", "/api/v1/ledger/assets/srv-1/models", "auditor", "", http.StatusOK, "[]"},
		{"GET", "/api/v1/ledger/checkpoint", "auditor", "", http.StatusOK, `"size":5`},
		{"GET", "/api/v1/ledger/consistency?from=3&to=5", "auditor", "", http.StatusOK, `"proof":["`},
		{"GET", "/api/v1/ledger/consistency?from=3&to=9", "auditor", "", http.StatusNotFound, "not_found"},
		{"GET", "/api/v1/ledger/consistency?from=x", "auditor", "", http.StatusBadRequest, "bad_request"},
	} {
		got, body := call(t, s, tc.method, tc.path, tc.role, tc.body)
		if got != tc.want || !strings.Contains(body, tc.code) {
			t.Errorf("%s %s as %q = %d %s, want %d with %q", tc.method, tc.path, tc.role, got, body, tc.want, tc.code)
		}
	}
	// The consistency proof from the API checks with the transparency-dev verifier.
	var cp eventtree.Checkpoint
	_, body := call(t, s, "GET", "/api/v1/ledger/checkpoint", "auditor", "")
	json.Unmarshal([]byte(body), &cp)
	var cons struct {
		Proof []eventtree.Hash `json:"proof"`
	}
	_, body = call(t, s, "GET", "/api/v1/ledger/consistency?from=3&to=5", "auditor", "")
	json.Unmarshal([]byte(body), &cons)
	root3 := rootOf(t, [][]byte{{0}, {1}, {2}})
	var p [][]byte
	for _, h := range cons.Proof {
		p = append(p, h)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 3, 5, p, root3, cp.Root); err != nil {
		t.Errorf("consistency proof 3->5 from the API: %v", err)
	}
	// A record bundle from the API verifies offline.
	_, body = call(t, s, "GET", "/api/v1/ledger/proofs/dataset/ds-1", "auditor", "")
	if rep := proofbundle.VerifyJSON([]byte(body), nil); !rep.OK() {
		t.Errorf("bundle from the API does not verify: %+v", rep.Failed())
	}
	var d core.Dataset
	_, body = call(t, s, "GET", "/api/v1/ledger/datasets/ds-1", "auditor", "")
	if err := json.Unmarshal([]byte(body), &d); err != nil || len(d.Checks) != 1 {
		t.Errorf("GET dataset after a check = %s, want one check", body)
	}
}

func TestLedgerNotConfigured(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, body := call(t, s, "GET", "/api/v1/ledger/status", "auditor", ""); got != http.StatusServiceUnavailable || !strings.Contains(body, "unavailable") {
		t.Errorf("GET /ledger/status without a ledger = %d %s, want 503 unavailable", got, body)
	}
}

// rootOf is the RFC 6962 root of a few leaves, by the library's reference tree.
func rootOf(t *testing.T, leaves [][]byte) []byte {
	t.Helper()
	tr := testonly.New(rfc6962.DefaultHasher)
	tr.AppendData(leaves...)
	return tr.Hash()
}

// TestLedgerPrincipalCaller: without a Caller the signed-in principal acts
// (NoAuth: an anonymous admin), and the ledger records it.
func TestLedgerPrincipalCaller(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	c, _, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := New(Options{Ledger: &LedgerDeps{Ledger: c}})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"id":"srv-9","kind":"server","fingerprint_hash":"` + ledgertest.Hash("x") + `"}`
	got, answer := call(t, s, "POST", "/api/v1/ledger/assets", "", body)
	if got != http.StatusCreated || !strings.Contains(answer, `"by":"anonymous","msp":"twinchain","role":"admin"`) {
		t.Errorf("POST /ledger/assets as the NoAuth principal = %d %s, want 201 stamped by anonymous admin", got, answer)
	}
}

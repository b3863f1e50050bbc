package httpapi

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/httpapi/auth"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/ledgertest"
)

// TestSignOffRoles: ml_lead and compliance API tokens reach the ledger as the
// core's ml_lead and compliance roles, so each may attest (the attestation
// records the role), while a viewer may not (403).
func TestSignOffRoles(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	c, _, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := auth.New(auth.Config{Tokens: []auth.TokenConfig{
		{Name: "lead", Role: auth.MLLead, SHA256: auth.HashToken("tc_lead")},
		{Name: "comp", Role: auth.Compliance, SHA256: auth.HashToken("tc_comp")},
		{Name: "view", Role: auth.Viewer, SHA256: auth.HashToken("tc_view")},
	}}, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{
		Auth:   NewAuth(a, false, slog.New(slog.NewTextHandler(io.Discard, nil))),
		Ledger: &LedgerDeps{Ledger: c},
	})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, token, body string) (int, string) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := s.App().Test(req, int((10 * time.Second).Milliseconds()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	h := ledgertest.Hash("signed data")
	ds := `{"id":"ds-sign","content_hash":"` + h + `","sources":[{"kind":"system","ref":"s3://x"}],"consent":{"policy_ref":"p","licence":"CC0-1.0","use_scope":["training"],"retention_days":30}}`
	if got, body := do("POST", "/api/v1/ledger/datasets", "tc_lead", ds); got != http.StatusCreated {
		t.Fatalf("POST /ledger/datasets as ml_lead = %d %s, want 201", got, body)
	}
	att := `{"subject_kind":"dataset","subject":"ds-sign","subject_hash":"` + h + `","decision":"approve"}`
	for _, tc := range []struct {
		token string
		want  int
		role  core.Role
	}{
		{"tc_lead", http.StatusCreated, core.RoleMLLead},
		{"tc_comp", http.StatusCreated, core.RoleCompliance},
		{"tc_view", http.StatusForbidden, ""},
	} {
		got, body := do("POST", "/api/v1/ledger/attestations", tc.token, att)
		if got != tc.want {
			t.Errorf("POST /ledger/attestations with %s = %d %s, want %d", tc.token, got, body, tc.want)
			continue
		}
		if tc.want != http.StatusCreated {
			continue
		}
		var a core.Attestation
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatal(err)
		}
		if a.Role != tc.role || a.Decision != core.Approve {
			t.Errorf("attestation by %s = role %q decision %q, want %q approve", tc.token, a.Role, a.Decision, tc.role)
		}
	}
	got, body := do("GET", "/api/v1/ledger/attestations?subject_kind=dataset&subject=ds-sign", "tc_view", "")
	var list []core.Attestation
	if err := json.Unmarshal([]byte(body), &list); got != http.StatusOK || err != nil {
		t.Fatalf("GET /ledger/attestations as viewer = %d %s", got, body)
	}
	var roles []core.Role
	for _, a := range list {
		roles = append(roles, a.Role)
	}
	if len(roles) != 2 || roles[0] != core.RoleMLLead || roles[1] != core.RoleCompliance {
		t.Errorf("attestation roles = %v, want [ml_lead compliance]", roles)
	}
}

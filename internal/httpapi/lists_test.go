package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/httpapi/auth"
)

// notLists are the GET routes without a path parameter that answer one
// object or a stream, not a list.
var notLists = map[string]string{
	"/healthz": "", "/readyz": "", "/metrics": "", v1 + "/auth/me": "", v1 + "/auth/policy": "",
	v1 + "/stats/assets": "", v1 + "/stats/ingest": "", v1 + "/stream": "", v1 + "/alerts/stream": "",
	v1 + "/ledger/status": "", v1 + "/ledger/anchors/head": "", v1 + "/ledger/checkpoint": "", v1 + "/ledger/consistency": "",
	v1 + "/ledger/attestations": "a subject's sign-offs, filtered by ?subject: one subject has a handful",
}

// TestEveryListRoutePages: every list route in the policy table answers
// {"items": [...]} and honours ?limit (a bad one is 400) and ?cursor (a
// bad one is 400), as the dashboard and the CLI page them.
func TestEveryListRoutePages(t *testing.T) {
	e := fullEnv(t)
	n := 0
	for _, r := range Routes() {
		if r.Method != "GET" || strings.Contains(r.Path, ":") {
			continue
		}
		if _, skip := notLists[r.Path]; skip {
			continue
		}
		n++
		code, body := e.as(t, auth.Admin, "GET", r.Path+"?limit=1", "")
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor *string           `json:"next_cursor"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &page) != nil || page.Items == nil || len(page.Items) > 1 {
			t.Errorf("GET %s?limit=1 = %d %s, want 200 and at most one item", r.Path, code, body)
		}
		for _, q := range []string{"?limit=abc", "?limit=100000", "?cursor=%25%25not-a-cursor"} {
			if code, body := e.as(t, auth.Admin, "GET", r.Path+q, ""); code != 400 {
				t.Errorf("GET %s%s = %d %s, want 400", r.Path, q, code, body)
			}
		}
	}
	if n < 9 {
		t.Errorf("checked %d list routes, want at least 9", n)
	}
}

// TestAlertAndIncidentSearch: q over the API is the dashboard's search:
// every word, in any case, in the id, type, site, asset, summary or
// assignee (incidents: also cause, scope, hosts and racks); assignee=
// filters by assignee.
func TestAlertAndIncidentSearch(t *testing.T) {
	srv, st := alertServer(t)
	now := time.Now().UTC()
	if _, err := st.Apply([]detect.Finding{
		{Type: detect.TypeXID, Asset: "srv-1.gpu0", Site: "s1", Host: "srv-1", Severity: detect.Critical, Time: now, Summary: "XID 79 on H100 srv-1.gpu0"},
		{Type: detect.TypeSensorDrift, Asset: "tag-7", Site: "s2", Severity: detect.Warning, Time: now, Summary: "drift"},
	}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AssignIncident("IN-2", "Dana", "sec", ""); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, want, not string
	}{
		{"/api/v1/alerts?q=h100", `"id":"AL-1"`, `"AL-2"`},
		{"/api/v1/alerts?q=XID+gpu0", `"id":"AL-1"`, `"AL-2"`},
		{"/api/v1/alerts?q=xid+tag", `"items":[]`, `AL-`},
		{"/api/v1/alerts?q=dana", `"id":"AL-2"`, `"AL-1"`},
		{"/api/v1/alerts?assignee=Dana", `"id":"AL-2"`, `"AL-1"`},
		{"/api/v1/incidents?q=host+srv-1", `"id":"IN-1"`, `"IN-2"`},
		{"/api/v1/incidents?q=TAG-7", `"id":"IN-2"`, `"IN-1"`},
		{"/api/v1/incidents?assignee=Dana", `"id":"IN-2"`, `"IN-1"`},
	} {
		code, body := alertCall(t, srv, "GET", tt.path, "")
		if code != 200 || !strings.Contains(body, tt.want) || strings.Contains(body, tt.not) {
			t.Errorf("GET %s = %d %s, want %s and not %s", tt.path, code, body, tt.want, tt.not)
		}
	}
}

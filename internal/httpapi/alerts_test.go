package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/detect/alertstore"
	"twinchain/internal/detect/workorder"
	"twinchain/internal/detect/workorderstore"
)

// detectStores are real alert and work-order stores in a fresh detect.db.
func detectStores(t testing.TB) (*alertstore.Store, *workorderstore.Store) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "detect.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := alertstore.NewStore(db, alert.DefaultConfig(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	wo, err := workorderstore.NewStore(db, workorder.DefaultPolicy(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return st, wo
}

func alertServer(t *testing.T) (*Server, *alertstore.Store) {
	t.Helper()
	st, wo := detectStores(t)
	srv, err := New(Options{Alerts: st, WorkOrders: wo, StreamHeartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return srv, st
}

func alertCall(t *testing.T, srv *Server, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.App().Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func TestAlertRoutes(t *testing.T) {
	srv, st := alertServer(t)
	now := time.Now().UTC()
	if _, err := st.Apply([]detect.Finding{
		{Type: detect.TypeXID, Asset: "g1", Site: "s1", Severity: detect.Critical, Time: now, Summary: "xid"},
		{Type: detect.TypeSensorDrift, Asset: "g2", Site: "s2", Severity: detect.Warning, Time: now, Summary: "drift"},
	}, nil, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/api/v1/alerts", "", 200, `"asset":"g2"`},
		{"GET", "/api/v1/alerts?severity=critical", "", 200, `"items":[{"id":"AL-1"`},
		{"GET", "/api/v1/alerts?site=s2&type=sensor_drift", "", 200, `"id":"AL-2"`},
		{"GET", "/api/v1/alerts?severity=dire", "", 400, `"code":"bad_request"`},
		{"GET", "/api/v1/alerts?state=gone", "", 400, `"code":"bad_request"`},
		{"GET", "/api/v1/alerts/AL-9", "", 404, `"code":"not_found"`},
		{"POST", "/api/v1/alerts/AL-1/ack", `{"comment":"on it"}`, 200, `"state":"acknowledged"`},
		{"POST", "/api/v1/alerts/AL-1/ack", `{}`, 409, `"code":"conflict"`},
		{"POST", "/api/v1/alerts/AL-1/resolve", `{"comment":"replaced"}`, 200, `"comment":"replaced"`},
		{"GET", "/api/v1/alerts?state=open", "", 200, `"id":"AL-2"`},
		{"POST", "/api/v1/alerts/AL-1/resolve", `not json`, 400, `"code":"bad_request"`},
		// Without sign-in every caller is the same anonymous admin, so the
		// two-person rule refuses its own approval.
		{"POST", "/api/v1/workorders", `{"asset":"srv-1","changes":[{"field":"firmware.vbios"}],"start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z"}`, 201, `"id":"WO-1"`},
		{"POST", "/api/v1/workorders", `{"asset":"srv-1","changes":[{"field":"colour"}],"start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z"}`, 400, `"code":"bad_request"`},
		{"POST", "/api/v1/workorders/WO-1/approve", `{}`, 403, `"code":"forbidden"`},
		{"GET", "/api/v1/workorders/WO-1", "", 200, `"state":"pending"`},
		{"GET", "/api/v1/workorders?state=pending", "", 200, `"created_by":"anonymous"`},
		{"POST", "/api/v1/workorders/WO-1/cancel", `{}`, 200, `"state":"cancelled"`},
		{"POST", "/api/v1/workorders/WO-7/cancel", `{}`, 404, `"code":"not_found"`},
	}
	for _, tt := range tests {
		code, body := alertCall(t, srv, tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s = %d %s, want %d containing %s", tt.method, tt.path, code, body, tt.code, tt.want)
		}
	}
	code, body := alertCall(t, srv, "GET", "/api/v1/alerts/AL-1", "")
	var a alert.Alert
	if code != 200 || json.Unmarshal([]byte(body), &a) != nil || a.State != alert.Resolved || a.History[1].By != "anonymous" {
		t.Errorf("GET AL-1 = %d %s, want resolved, acknowledged by the signed-in principal", code, body)
	}
}

// TestIncidentRoutes: two overheating GPUs of one rack and an XID elsewhere
// are two incidents; the list filters by state and severity and names the
// member alerts; one incident comes with its member alerts in full.
func TestIncidentRoutes(t *testing.T) {
	srv, st := alertServer(t)
	now := time.Now().UTC()
	if _, err := st.Apply([]detect.Finding{
		{Type: detect.TypeOverheating, Asset: "srv-1.gpu0", Site: "s1", Host: "srv-1", Rack: "r1", Severity: detect.Critical, Time: now, Summary: "hot"},
		{Type: detect.TypeThermalSlowdown, Asset: "srv-2.gpu3", Site: "s1", Host: "srv-2", Rack: "r1", Severity: detect.Warning, Time: now.Add(time.Minute), Summary: "slow"},
		{Type: detect.TypeRetiredPages, Asset: "srv-7.gpu1", Site: "s2", Host: "srv-7", Rack: "r7", Severity: detect.Warning, Time: now, Summary: "pages"},
	}, nil, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/incidents", 200, `"alerts":["AL-1","AL-2"]`},
		{"/api/v1/incidents?severity=critical", 200, `"items":[{"id":"IN-1","state":"open","severity":"critical","cause":"thermal","scope":"rack r1"`},
		{"/api/v1/incidents?severity=critical&limit=5", 200, `"assets":["srv-1.gpu0","srv-2.gpu3"]`},
		{"/api/v1/incidents?state=resolved", 200, `"items":[]`},
		{"/api/v1/incidents?state=acknowledged", 400, `"code":"bad_request"`},
		{"/api/v1/incidents?severity=dire", 400, `"code":"bad_request"`},
		{"/api/v1/incidents/IN-2", 200, `"member_alerts":[{"id":"AL-3"`},
		{"/api/v1/incidents/IN-9", 404, `"code":"not_found"`},
	}
	for _, tt := range tests {
		code, body := alertCall(t, srv, "GET", tt.path, "")
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d %s, want %d containing %s", tt.path, code, body, tt.code, tt.want)
		}
	}
	code, body := alertCall(t, srv, "GET", "/api/v1/incidents?severity=critical", "")
	var page struct{ Items []alert.Incident }
	if code != 200 || json.Unmarshal([]byte(body), &page) != nil || len(page.Items) != 1 {
		t.Fatalf("critical incidents = %d %s", code, body)
	}
	if in := page.Items[0]; !in.FirstSeen.Equal(now) || !in.LastSeen.Equal(now.Add(time.Minute)) || in.Summary == "" {
		t.Errorf("incident first/last seen %s/%s summary %q, want %s/%s and a summary", in.FirstSeen, in.LastSeen, in.Summary, now, now.Add(time.Minute))
	}
}

// TestIncidentAssignAndComment: assign and comment on an incident, and on
// one alert, over the API: the assignee shows on the incident and its
// member alerts with who did it; a new alert that joins the incident
// starts assigned; bad requests are 400, a resolved incident 409.
func TestIncidentAssignAndComment(t *testing.T) {
	srv, st := alertServer(t)
	now := time.Now().UTC()
	hot := func(asset string, at time.Time) detect.Finding {
		return detect.Finding{Type: detect.TypeOverheating, Asset: asset, Site: "s1", Host: "srv-1", Rack: "r1", Severity: detect.Critical, Time: at, Summary: "hot"}
	}
	if _, err := st.Apply([]detect.Finding{hot("srv-1.gpu0", now), hot("srv-1.gpu1", now)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/api/v1/incidents/IN-1/assign", `{"by":"alice","assignee":"bob","comment":"on call"}`, 200, `"assignee":"bob"`},
		{"/api/v1/incidents/IN-1/comment", `{"by":"bob","comment":"fan replaced"}`, 200, `"comment":"fan replaced"`},
		{"/api/v1/incidents/IN-1/comment", `{"by":"bob","comment":""}`, 400, `"code":"bad_request"`},
		{"/api/v1/incidents/IN-1/assign", `{"by":"bob","assignee":"a\nb"}`, 400, `"code":"bad_request"`},
		{"/api/v1/incidents/IN-9/assign", `{"by":"bob","assignee":"x"}`, 404, `"code":"not_found"`},
		{"/api/v1/alerts/AL-2/assign", `{"by":"bob","assignee":"dave"}`, 200, `"assignee":"dave"`},
		{"/api/v1/alerts/AL-2/comment", `{"by":"dave","comment":"mine"}`, 200, `"step":"commented"`},
	} {
		code, body := alertCall(t, srv, "POST", tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("POST %s %s = %d %s, want %d containing %s", tt.path, tt.body, code, body, tt.code, tt.want)
		}
	}
	a1, _ := st.Get("AL-1")
	if a1.Assignee != "bob" || len(a1.History) != 3 || a1.History[1].Step != alert.StepAssigned || a1.History[1].By != "anonymous" || a1.History[2].Comment != "fan replaced" {
		t.Errorf("AL-1 = assignee %q history %+v; want bob, assigned by the caller (anonymous: no sign-in here), then the comment", a1.Assignee, a1.History)
	}
	// A new member starts with the incident's assignee.
	if _, err := st.Apply([]detect.Finding{hot("srv-1.gpu2", now.Add(time.Minute))}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if a3, _ := st.Get("AL-3"); a3.Incident != "IN-1" || a3.Assignee != "bob" {
		t.Errorf("AL-3 joined %s assigned to %q, want IN-1 and bob", a3.Incident, a3.Assignee)
	}
	code, body := alertCall(t, srv, "GET", "/api/v1/incidents/IN-1", "")
	if code != 200 || !strings.Contains(body, `"assignee":"bob","history":[{"state":"open","step":"assigned","by":"anonymous"`) {
		t.Errorf("GET IN-1 = %d %s, want assignee bob and its history", code, body)
	}
	for _, id := range []string{"AL-1", "AL-2", "AL-3"} {
		if _, err := st.Resolve(id, "bob", "done"); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := alertCall(t, srv, "POST", "/api/v1/incidents/IN-1/comment", `{"by":"bob","comment":"late"}`); code != 409 {
		t.Errorf("comment on a resolved incident = %d %s, want 409", code, body)
	}
}

func TestAlertRoutesUnavailable(t *testing.T) {
	srv, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/api/v1/alerts", "/api/v1/workorders", "/api/v1/incidents"} {
		if code, body := alertCall(t, srv, "GET", p, ""); code != 503 || !strings.Contains(body, "unavailable") {
			t.Errorf("GET %s without detection = %d %s, want 503 unavailable", p, code, body)
		}
	}
}

func TestAlertStream(t *testing.T) {
	srv, st := alertServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/api/v1/alerts/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type = %q, want text/event-stream", ct)
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, ": twinchain alerts") {
		t.Fatalf("first line %q", line)
	}
	// The subscription is live once the preamble arrived (the handler
	// subscribes before writing it).
	if _, err := st.Apply([]detect.Finding{{Type: detect.TypeClone, Asset: "srv-9", Severity: detect.Critical, Time: time.Now(), Summary: "clone"}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	got := make(chan string, 1)
	go func() {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "data: ") {
				got <- line
				return
			}
		}
	}()
	select {
	case line := <-got:
		var n alert.Notification
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &n); err != nil || n.Event != "opened" || n.Alert.Asset != "srv-9" {
			t.Errorf("stream data %q (%v), want the opened clone alert on srv-9", line, err)
		}
	case <-deadline:
		t.Fatal("no alert on the stream")
	}
}

// TestIncidentAcknowledgeAndResolve: acknowledging an incident moves each
// member alert still open (not one already acknowledged) with an
// acknowledged step queued for anchoring, by the caller, with the comment;
// resolving it resolves every member not resolved and the incident; a
// resolved incident answers 409, as does acknowledging one with no open
// member left. Who may call the routes is the role matrix's
// (TestRouteRoleMatrix, testdata/route-role-matrix.txt).
func TestIncidentAcknowledgeAndResolve(t *testing.T) {
	srv, st := alertServer(t)
	st.RecordLifecycle()
	now := time.Now().UTC()
	hot := func(asset string) detect.Finding {
		return detect.Finding{Type: detect.TypeOverheating, Asset: asset, Site: "s1", Host: "srv-1", Rack: "r1", Severity: detect.Critical, Time: now, Summary: "hot"}
	}
	if _, err := st.Apply([]detect.Finding{hot("srv-1.gpu0"), hot("srv-1.gpu1"), hot("srv-1.gpu2"),
		{Type: detect.TypeXID, Asset: "srv-9.gpu0", Site: "s2", Host: "srv-9", Severity: detect.Warning, Time: now, Summary: "xid"}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if in, _ := st.Incident("IN-1"); len(in.Members) != 3 {
		t.Fatalf("IN-1 has %d members, want the 3 overheating alerts", len(in.Members))
	}
	if _, err := st.Acknowledge("AL-2", "bob", "mine"); err != nil { // already acknowledged: not stepped again
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/api/v1/incidents/IN-1/ack", `{"by":"alice","comment":"looking"}`, 200, `"history":[{"state":"acknowledged","by":"anonymous","at":`},
		{"/api/v1/incidents/IN-1/ack", `{"by":"alice"}`, 409, `"code":"conflict"`}, // every member acknowledged now
		{"/api/v1/incidents/IN-9/ack", `{"by":"alice"}`, 404, `"code":"not_found"`},
		{"/api/v1/incidents/IN-1/ack", `{"by":`, 400, `"code":"bad_request"`},
		{"/api/v1/incidents/IN-1/resolve", `{"by":"alice","comment":"` + strings.Repeat("x", 2001) + `"}`, 400, `"code":"bad_request"`},
		{"/api/v1/incidents/IN-1/resolve", `{"by":"carol","comment":"fans replaced"}`, 200, `"state":"resolved"`},
		{"/api/v1/incidents/IN-1/resolve", `{"by":"carol"}`, 409, `"code":"conflict"`},
		{"/api/v1/incidents/IN-1/ack", `{"by":"carol"}`, 409, `"code":"conflict"`},
		{"/api/v1/incidents/IN-1/assign", `{"by":"carol","assignee":"x"}`, 409, `"code":"conflict"`},
		{"/api/v1/incidents/IN-2/resolve", `{"by":"dave"}`, 200, `"state":"resolved"`}, // straight from open
	} {
		code, body := alertCall(t, srv, "POST", tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("POST %s %.60s = %d %.300s, want %d containing %s", tt.path, tt.body, code, body, tt.code, tt.want)
		}
	}
	// Each member's steps, in order, each queued for anchoring (a lifecycle
	// entry the recorder turns into a twin event), by the caller.
	want := map[string][]alert.Step{
		"AL-1": {"raised", "acknowledged", "resolved"},
		"AL-2": {"raised", "acknowledged", "resolved"}, // acknowledged by bob, not again by the incident
		"AL-3": {"raised", "acknowledged", "resolved"},
		"AL-4": {"raised", "resolved"},
	}
	for id, steps := range want {
		a, err := st.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		var got []alert.Step
		for _, l := range a.Lifecycle {
			got = append(got, l.Step)
		}
		if a.State != alert.Resolved || strings.Join(stepNames(got), ",") != strings.Join(stepNames(steps), ",") {
			t.Errorf("%s: state %s, steps %v; want resolved with %v", id, a.State, got, steps)
			continue
		}
		ack, res := a.History[1], a.History[len(a.History)-1]
		wantAck := "anonymous"
		if id == "AL-2" {
			wantAck = "bob"
		}
		if id != "AL-4" && (ack.State != alert.Acknowledged || ack.By != wantAck) {
			t.Errorf("%s acknowledged %+v, want by %s", id, ack, wantAck)
		}
		if id != "AL-4" && (res.State != alert.Resolved || res.By != "anonymous" || res.Comment != "fans replaced") {
			t.Errorf("%s resolved %+v, want by the caller with the comment", id, res)
		}
		if l := a.Lifecycle[len(a.Lifecycle)-1]; l.By != res.By || l.EvidenceHash == "" {
			t.Errorf("%s last step %+v, want by %s with the evidence hash", id, l, res.By)
		}
	}
	if a1, _ := st.Get("AL-1"); a1.History[1].Comment != "looking" {
		t.Errorf("AL-1 acknowledged with comment %q, want the incident's", a1.History[1].Comment)
	}
	in, err := st.Incident("IN-1")
	if err != nil || in.State != alert.Resolved || in.Resolved.IsZero() || len(in.History) != 2 ||
		in.History[0].State != alert.Acknowledged || in.History[1].State != alert.Resolved || in.History[1].Comment != "fans replaced" {
		t.Errorf("IN-1 = state %s resolved %s history %+v (%v); want resolved, history acknowledged then resolved with the comment", in.State, in.Resolved, in.History, err)
	}
	// A new finding of the same cause opens a new incident.
	if _, err := st.Apply([]detect.Finding{hot("srv-1.gpu3")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if a5, _ := st.Get("AL-5"); a5.Incident == "IN-1" || a5.Incident == "" {
		t.Errorf("a new overheating alert joined %q, want a new incident", a5.Incident)
	}
}

func stepNames(steps []alert.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = string(s)
	}
	return out
}

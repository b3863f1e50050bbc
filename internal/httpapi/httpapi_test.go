package httpapi

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

func gwKey(gw string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("httpapi test " + gw))
	return ed25519.NewKeyFromSeed(seed[:])
}

// env is the API over a real store, registry and running ingest.
type env struct {
	store *twinstore.Store
	reg   *registry.Registry
	in    *ingest.Ingest
	srv   *Server
	base  string // set by serve
	seq   uint64
}

// newEnv builds the API over a real store, registry and ingest; with
// (optional) sets more options that need the registry.
func newEnv(t *testing.T, opts Options, with ...func(*Options, *registry.Registry)) *env {
	t.Helper()
	store, err := twinstore.Open(filepath.Join(t.TempDir(), "twins.db"), twinstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New()
	reg.Persist(store)
	if err := reg.Put(registry.Gateway{ID: "gw-1", PublicKey: gwKey("gw-1").Public().(ed25519.PublicKey), Site: "s1", Assets: []string{}}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in, err := ingest.New(ingest.Config{CheckpointInterval: time.Nanosecond}, store, reg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; store.Close() })
	opts.Log, opts.Assets, opts.Events, opts.Ingest, opts.Gateways, opts.Changes = log, store, store, in, reg, in
	for _, f := range with {
		f(&opts, reg)
	}
	if opts.Metrics == nil {
		opts.Metrics = prometheus.NewRegistry()
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, reg: reg, in: in, srv: srv}
}

// serve runs the API on a loopback port until the test ends.
func (e *env) serve(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	e.base = "http://" + ln.Addr().String()
}

// status submits one gateway status through the ingest (an event when it
// flips the gateway's state).
func (e *env) status(t *testing.T, state string) {
	t.Helper()
	e.seq++
	p, err := wire.Seal(gwKey("gw-1"), "gw-1", e.seq, time.Now().Add(-time.Minute).Add(time.Duration(e.seq)*time.Millisecond), wire.KindStatus, wire.Status{State: state})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.in.Submit(ingest.Source{}, wire.Topic("gw-1", wire.KindStatus), p); err != nil || !out.Accepted() {
		t.Fatalf("Submit: %v %v", err, out.Err)
	}
}

// call sends a request to the app and decodes a JSON answer into v.
func (e *env) call(t *testing.T, method, path, body string, v any) int {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.App().Test(req, 10000)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if v != nil && len(data) > 0 {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

func TestErrors(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/api/v1/assets/nope", 404, CodeNotFound},
		{"GET", "/api/v1/assets/nope/events", 404, CodeNotFound},
		{"GET", "/api/v1/no-such-route", 404, CodeNotFound},
		{"GET", "/api/v1/assets?limit=0", 400, CodeBadRequest},
		{"GET", "/api/v1/assets?limit=x", 400, CodeBadRequest},
		{"GET", "/api/v1/assets?cursor=%25%25", 400, CodeBadRequest},
		{"GET", "/api/v1/assets?status=lost", 400, CodeBadRequest},
		{"GET", "/api/v1/assets/gw-1/events?cursor=x", 400, CodeBadRequest},
		{"GET", "/api/v1/stream?after=x", 400, CodeBadRequest},
		{"GET", "/api/v1/gateways/nope", 404, CodeNotFound},
	} {
		var body ErrorBody
		if got := e.call(t, tc.method, tc.path, "", &body); got != tc.status || body.Error.Code != tc.code || body.Error.Message == "" {
			t.Errorf("%s %s = %d %+v, want %d with code %q and a message", tc.method, tc.path, got, body, tc.status, tc.code)
		}
	}
}

func TestUnconfigured(t *testing.T) {
	srv, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/assets", "/api/v1/assets/x", "/api/v1/gateways", "/api/v1/stats/ingest", "/api/v1/stream", "/metrics"} {
		resp, err := srv.App().Test(httptest.NewRequest("GET", path, nil))
		if err != nil {
			t.Fatal(err)
		}
		var body ErrorBody
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != CodeUnavailable {
			t.Errorf("GET %s without its part = %d %+v, want 503 unavailable", path, resp.StatusCode, body)
		}
	}
	resp, _ := srv.App().Test(httptest.NewRequest("GET", "/healthz", nil))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", resp.StatusCode)
	}
}

func TestReadyz(t *testing.T) {
	ready := false
	e := newEnv(t, Options{Ready: func() error {
		if !ready {
			return fmt.Errorf("mqtt is not connected yet")
		}
		return nil
	}})
	var body ErrorBody
	if got := e.call(t, "GET", "/readyz", "", &body); got != 503 || body.Error.Code != CodeUnavailable {
		t.Errorf("GET /readyz before ready = %d %+v, want 503 unavailable", got, body)
	}
	ready = true
	if got := e.call(t, "GET", "/readyz", "", nil); got != 200 {
		t.Errorf("GET /readyz when ready = %d, want 200", got)
	}
}

func TestGatewayEditing(t *testing.T) {
	e := newEnv(t, Options{})
	key := base64.StdEncoding.EncodeToString(gwKey("gw-2").Public().(ed25519.PublicKey))
	body := `{"id":"gw-2","public_key":"` + key + `","site":"s2","assets":["srv-9"]}`
	var view GatewayView
	if got := e.call(t, "POST", "/api/v1/gateways", body, &view); got != 201 || view.ID != "gw-2" || view.Site != "s2" {
		t.Fatalf("POST /gateways = %d %+v, want 201 gw-2", got, view)
	}
	var errBody ErrorBody
	if got := e.call(t, "POST", "/api/v1/gateways", body, &errBody); got != 409 || errBody.Error.Code != CodeConflict {
		t.Errorf("POST existing = %d %+v, want 409 conflict", got, errBody)
	}
	if got := e.call(t, "PUT", "/api/v1/gateways/gw-2", `{"public_key":"`+key+`","site":"s3"}`, &view); got != 200 || view.Site != "s3" {
		t.Errorf("PUT /gateways/gw-2 = %d %+v, want 200 with site s3", got, view)
	}
	for _, bad := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/gateways/gw-3", `{"public_key":"AAAA"}`},
		{"PUT", "/api/v1/gateways/gw-3", `{"id":"gw-4","public_key":"` + key + `"}`},
		{"POST", "/api/v1/gateways", `{"id":"bad id","public_key":"` + key + `"}`},
		{"POST", "/api/v1/gateways", `not json`},
	} {
		if got := e.call(t, bad.method, bad.path, bad.body, &errBody); got != 400 || errBody.Error.Code != CodeBadRequest {
			t.Errorf("%s %s %s = %d %+v, want 400 bad_request", bad.method, bad.path, bad.body, got, errBody)
		}
	}
	var page Page[GatewayView]
	if e.call(t, "GET", "/api/v1/gateways", "", &page); len(page.Items) != 2 || page.Items[1].ID != "gw-2" || page.Items[1].Site != "s3" {
		t.Errorf("GET /gateways = %+v, want gw-1 and gw-2 (site s3)", page.Items)
	}
	stored, _ := e.store.Gateways()
	if len(stored) != 2 || stored[1].Site != "s3" {
		t.Errorf("stored registry = %+v, want gw-2 with site s3 persisted", stored)
	}
	// The ingest uses the edited registry: gw-2 may now publish.
	if _, site, ok := e.reg.Lookup("gw-2"); !ok || site != "s3" {
		t.Errorf("registry Lookup(gw-2) = %q, %v; want s3, true", site, ok)
	}
	if got := e.call(t, "DELETE", "/api/v1/gateways/gw-2", "", nil); got != 204 {
		t.Errorf("DELETE = %d, want 204", got)
	}
	if got := e.call(t, "DELETE", "/api/v1/gateways/gw-2", "", &errBody); got != 404 {
		t.Errorf("DELETE again = %d, want 404", got)
	}
	if stored, _ := e.store.Gateways(); len(stored) != 1 {
		t.Errorf("stored registry after DELETE = %d gateways, want 1", len(stored))
	}
}

func TestAssetsAndStats(t *testing.T) {
	e := newEnv(t, Options{})
	e.status(t, wire.StateOnline)
	e.status(t, wire.StateOffline)
	var page Page[json.RawMessage]
	if got := e.call(t, "GET", "/api/v1/assets?kind=gateway", "", &page); got != 200 || len(page.Items) != 1 {
		t.Fatalf("GET /assets?kind=gateway = %d, %d items; want 1", got, len(page.Items))
	}
	var events Page[json.RawMessage]
	if got := e.call(t, "GET", "/api/v1/assets/gw-1/events?limit=1", "", &events); got != 200 || len(events.Items) != 1 || events.NextCursor == "" {
		t.Errorf("GET events?limit=1 = %d %+v, want one event and a next cursor", got, events)
	}
	var rest Page[json.RawMessage]
	e.call(t, "GET", "/api/v1/assets/gw-1/events?cursor="+events.NextCursor, "", &rest)
	if len(rest.Items) != 2 {
		t.Errorf("events after the cursor = %d, want 2 (online, offline)", len(rest.Items))
	}
	var sum twinstore.Summary
	if got := e.call(t, "GET", "/api/v1/stats/assets", "", &sum); got != 200 || sum.Total != 1 || sum.ByKind["gateway"] != 1 || sum.ByHealth["offline"] != 1 {
		t.Errorf("GET /stats/assets = %d %+v, want 1 gateway, offline", got, sum)
	}
	var st ingest.Stats
	if got := e.call(t, "GET", "/api/v1/stats/ingest", "", &st); got != 200 || st.Accepted != 2 {
		t.Errorf("GET /stats/ingest = %d %+v, want accepted 2", got, st)
	}
	resp, _ := e.srv.App().Test(httptest.NewRequest("GET", "/metrics", nil))
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`twinchain_ingest_accepted_total 2`, `twinchain_ingest_rejected_total{reason="bad_signature"} 0`, `twinchain_ingest_gateways 1`, `twinchain_ingest_sequence_gaps_total 0`, `twinchain_http_streams 0`,
		`twinchain_ingest_stage_seconds_count{stage="check"} 2`, `twinchain_ingest_stage_seconds_count{stage="commit"} 2`, `twinchain_ingest_stage_seconds_bucket{stage="queue",le="+Inf"} 2`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(metrics), `gateway="gw-1"`) {
		t.Errorf("/metrics has a series per gateway:\n%s", metrics)
	}
}

// readEvent reads the next SSE event: its "event" and "data" fields.
func readEvent(t *testing.T, r *bufio.Reader) (name, data string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && name != "":
			return name, data
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// TestStream: live events arrive after wake-ups, and the server's loop ends
// when the client goes away.
func TestStream(t *testing.T) {
	e := newEnv(t, Options{StreamHeartbeat: 50 * time.Millisecond})
	e.serve(t)
	e.status(t, wire.StateOnline) // registered + online, before the client connects
	resp, err := http.Get(e.base + "/api/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	e.status(t, wire.StateOffline)
	name, data := readEvent(t, r)
	if name != "twin" || !strings.Contains(data, `"type":"gateway_offline"`) {
		t.Errorf("first live event = %s %s, want the gateway_offline event (the stream starts at the newest event)", name, data)
	}
	if n := e.srv.Streams(); n != 1 {
		t.Errorf("open streams = %d, want 1", n)
	}
	resp.Body.Close()
	testsvc.Eventually(t, 20*time.Second, "the stream loop to end after the client went away", func() bool { return e.srv.Streams() == 0 })
}

// TestStreamResync: a client too far behind is told to resync and moved to
// the newest event.
func TestStreamResync(t *testing.T) {
	e := newEnv(t, Options{StreamMaxLag: 3})
	e.serve(t)
	for i := range 8 {
		e.status(t, []string{wire.StateOnline, wire.StateOffline}[i%2])
	}
	resp, err := http.Get(e.base + "/api/v1/stream?after=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	name, data := readEvent(t, r)
	want := fmt.Sprintf(`{"last_event_id":%d}`, e.store.LastEventID())
	if name != "resync" || data != want {
		t.Errorf("first event of a client 9 events behind = %s %s, want resync %s", name, data, want)
	}
	e.status(t, wire.StateOnline)
	if name, data := readEvent(t, r); name != "twin" || !strings.Contains(data, fmt.Sprintf(`"id":%d`, e.store.LastEventID())) {
		t.Errorf("event after the resync = %s %s, want the newest event", name, data)
	}
}

func TestPatchCustody(t *testing.T) {
	e := newEnv(t, Options{})
	e.status(t, wire.StateOnline)
	var ev struct {
		Type     string `json:"type"`
		Revision uint64 `json:"revision"`
		Note     string `json:"note"`
		Source   struct {
			Actor string `json:"actor"`
		} `json:"source"`
	}
	if got := e.call(t, "PATCH", "/api/v1/assets/gw-1", `{"custody":{"status":"maintenance","holder":"bob"},"note":"work order 12"}`, &ev); got != 200 || ev.Type != "custody_changed" || ev.Note != "work order 12" || ev.Source.Actor != "anonymous" {
		t.Fatalf("PATCH custody = %d %+v, want 200 custody_changed by the (anonymous, no sign-in) principal with the note", got, ev)
	}
	a, _ := e.store.Asset("gw-1")
	if a.Custody.Status != "maintenance" || a.Custody.Holder != "bob" || a.Revision != ev.Revision {
		t.Errorf("twin after PATCH = %+v rev %d, want maintenance held by bob at revision %d", a.Custody, a.Revision, ev.Revision)
	}
	var errBody ErrorBody
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/api/v1/assets/nope", `{"custody":{"status":"retired"}}`, 404},
		{"/api/v1/assets/gw-1", `{"custody":{"status":"lost"}}`, 400},
		{"/api/v1/assets/gw-1", `{"custody":{"status":"maintenance"}}`, 400},
		{"/api/v1/assets/gw-1", `nope`, 400},
	} {
		if got := e.call(t, "PATCH", tc.path, tc.body, &errBody); got != tc.status {
			t.Errorf("PATCH %s %s = %d %+v, want %d", tc.path, tc.body, got, errBody, tc.status)
		}
	}
}

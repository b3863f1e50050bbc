package httpapi

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/httpapi/auth"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/registry"
	"twinchain/internal/registry/enrollment"
	"twinchain/internal/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/route-role-matrix.txt from what the API does")

// roleToken is the API token of each role in fullEnv.
func roleToken(r auth.Role) string { return "tc_matrix_" + string(r) }

// fullEnv is the API with every domain configured and sign-in on, with an
// API token per role (roleToken), served on a loopback port.
func fullEnv(t *testing.T) *env {
	t.Helper()
	var cfg auth.Config
	for _, r := range auth.Roles() {
		cfg.Tokens = append(cfg.Tokens, auth.TokenConfig{Name: "matrix-" + string(r), Role: r, SHA256: auth.HashToken(roleToken(r))})
	}
	a, err := auth.New(cfg, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	alerts, orders := detectStores(t)
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	lc, fl, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	tree, err := eventtree.Open(t.TempDir(), eventtree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	e := newEnv(t, Options{
		Auth:       NewAuth(a, false, slog.New(slog.DiscardHandler)),
		Alerts:     alerts,
		WorkOrders: orders,
		Ledger: &LedgerDeps{Ledger: lc, Tree: tree,
			Proofs: &proofbundle.Exporter{Tree: tree, Anchors: lc, Blocks: fl, Key: key.Public().(ed25519.PublicKey)}},
	}, func(o *Options, reg *registry.Registry) { o.Enroll = enrollment.NewService(reg, nil, time.Now) })
	e.serve(t)
	return e
}

// as sends a request with role's token over real HTTP.
func (e *env) as(t *testing.T, role auth.Role, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+roleToken(role))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, "" // a stream: its status is all we need
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEveryRouteInPolicy walks every route Fiber serves: each is a row of
// the policy table, and each row is served.
func TestEveryRouteInPolicy(t *testing.T) {
	e := fullEnv(t)
	served := map[string]bool{}
	for _, r := range e.srv.App().GetRoutes(true) {
		if r.Method == "HEAD" { // Fiber adds HEAD to every GET
			if _, ok := findRoute("GET", r.Path); ok {
				continue
			}
		}
		served[r.Method+" "+r.Path] = true
		if _, ok := findRoute(r.Method, r.Path); !ok {
			t.Errorf("route %s %s is served but not in the policy table", r.Method, r.Path)
		}
	}
	for _, r := range Routes() {
		if !served[r.Method+" "+r.Path] {
			t.Errorf("policy row %s %s is not served", r.Method, r.Path)
		}
	}
	// A route registered outside the table makes New fail.
	s := &Server{}
	router{s: s}.get("/not-in-the-table", func(*fiber.Ctx) error { return nil })
	if len(s.routeErrs) != 1 || !strings.Contains(s.routeErrs[0].Error(), "not in the policy table") {
		t.Errorf("registering a route outside the table: errors %v, want one naming the table", s.routeErrs)
	}
}

// TestRouteRoleMatrix calls every route as every role over real HTTP and
// compares who got through with testdata/route-role-matrix.txt (go test
// -run RouteRoleMatrix -update rewrites it; review the diff). In each cell:
// + passed the route's check, - refused by the policy table (403),
// L refused by the ledger's own roles (403), 401 with no credential.
func TestRouteRoleMatrix(t *testing.T) {
	e := fullEnv(t)
	roles := auth.Roles()
	var out strings.Builder
	fmt.Fprintf(&out, "%-7s %-40s", "method", "path")
	for _, r := range roles {
		fmt.Fprintf(&out, " %s", abbrev(r))
	}
	out.WriteString("  anonymous\n")
	for _, row := range Routes() {
		path := strings.NewReplacer(":id", "matrix-x", ":seq", "1", ":type", "asset").Replace(row.Path)
		body := "{}"
		if row.Path == v1+"/auth/login" || row.Path == v1+"/auth/logout" {
			continue // they check a password or a session, not a role
		}
		fmt.Fprintf(&out, "%-7s %-40s", row.Method, row.Path)
		for _, r := range roles {
			code, resp := e.as(t, r, row.Method, path, body)
			cell := "+"
			switch {
			case code == 403 && strings.Contains(resp, "it needs"):
				cell = "-"
			case code == 403:
				cell = "L"
			case code == 401:
				cell = "401"
			}
			fmt.Fprintf(&out, " %*s", len(abbrev(r)), cell)
		}
		code, _ := e.as(t, "", row.Method, path, body)
		anon := "+"
		if code == 401 {
			anon = "401"
		}
		fmt.Fprintf(&out, "  %s\n", anon)
	}
	golden := filepath.Join("testdata", "route-role-matrix.txt")
	if *update {
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("route x role matrix differs from %s (-update rewrites it):\n%s", golden, got)
	}
}

// abbrev is a role's column header in the matrix.
func abbrev(r auth.Role) string { return string(r) }

// The cases: asset_manager may not release a quarantine or
// re-key a gateway (the ledger reserves both for security and admin);
// security may quarantine and release over the API; maintenance may take
// an asset into maintenance but not quarantine it.
func TestQuarantineAndKeysByRole(t *testing.T) {
	e := fullEnv(t)
	e.status(t, wire.StateOnline) // makes the twin gw-1
	patch := func(role auth.Role, status string) int {
		code, body := e.as(t, role, "PATCH", v1+"/assets/gw-1", `{"custody":{"status":"`+status+`"}}`)
		if code != 200 && code != 403 {
			t.Fatalf("PATCH gw-1 to %s as %s = %d %s", status, role, code, body)
		}
		return code
	}
	for _, tc := range []struct {
		role   auth.Role
		status string
		want   int
	}{
		{auth.AssetManager, "quarantined", 403},
		{auth.Maintenance, "quarantined", 403},
		{auth.Security, "quarantined", 200},
		{auth.AssetManager, "in_service", 403}, // release
		{auth.Maintenance, "maintenance", 403}, // leaving quarantine, whatever the target
		{auth.Security, "in_service", 200},     // release
		{auth.Maintenance, "maintenance", 200},
		{auth.Security, "in_transit", 403}, // not security's
		{auth.Maintenance, "in_service", 200},
		{auth.AssetManager, "in_transit", 200},
		{auth.Admin, "quarantined", 200},
		{auth.Admin, "in_service", 200},
	} {
		if got := patch(tc.role, tc.status); got != tc.want {
			t.Errorf("PATCH custody status %s as %s = %d, want %d", tc.status, tc.role, got, tc.want)
		}
	}
	if a, _ := e.store.Asset("gw-1"); a.Custody.Status != "in_service" {
		t.Errorf("custody after the table = %s, want in_service", a.Custody.Status)
	}

	old := base64.StdEncoding.EncodeToString(gwKey("gw-1").Public().(ed25519.PublicKey))
	other := base64.StdEncoding.EncodeToString(gwKey("gw-other").Public().(ed25519.PublicKey))
	gw := func(key, site string) string {
		return `{"id":"gw-1","public_key":"` + key + `","site":"` + site + `","assets":[]}`
	}
	for _, tc := range []struct {
		role         auth.Role
		method, body string
		path         string
		want         int
	}{
		{auth.AssetManager, "PUT", gw(old, "s2"), "/gateways/gw-1", 200},   // site only
		{auth.AssetManager, "PUT", gw(other, "s2"), "/gateways/gw-1", 403}, // re-key
		{auth.Viewer, "PUT", gw(old, "s3"), "/gateways/gw-1", 403},
		{auth.AssetManager, "DELETE", "", "/gateways/gw-1", 403}, // revoke
		{auth.Security, "PUT", gw(other, "s2"), "/gateways/gw-1", 200},
		{auth.Security, "PUT", gw(old, "s2"), "/gateways/gw-1", 200},
		{auth.AssetManager, "POST", strings.ReplaceAll(gw(other, "s1"), "gw-1", "gw-new"), "/gateways", 201},
		{auth.Security, "DELETE", "", "/gateways/gw-new", 204},
	} {
		if got, body := e.as(t, tc.role, tc.method, v1+tc.path, tc.body); got != tc.want {
			t.Errorf("%s %s as %s = %d %s, want %d", tc.method, tc.path, tc.role, got, body, tc.want)
		}
	}
	if g, _ := e.reg.Get("gw-1"); !slices.Equal(g.PublicKey, gwKey("gw-1").Public().(ed25519.PublicKey)) {
		t.Errorf("gw-1's key after the table is not its own")
	}
}

// Ids with reserved URL characters are read and changed through their
// percent-encoding (decoded once; "%2F" is a slash in the id, not a path
// separator), and an invalid encoding is a 400. On main such an asset was
// "not found" to every route.
func TestReservedCharactersInIDs(t *testing.T) {
	e := fullEnv(t)
	const id = "rack A/slot#3?x=%1 & 100%"
	e.seq++
	p, err := wire.Seal(gwKey("gw-1"), "gw-1", e.seq, time.Now().Add(-time.Minute), wire.KindTelemetry,
		wire.Telemetry{Host: "host-1", GPUs: []wire.GPUSample{{Asset: id, UUID: "GPU-1", TempC: 40}}})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.in.Submit(ingest.Source{}, wire.Topic("gw-1", wire.KindTelemetry), p); err != nil || !out.Accepted() {
		t.Fatalf("Submit: %v %v", err, out.Err)
	}
	esc := url.PathEscape(id)
	if code, body := e.as(t, auth.Viewer, "GET", v1+"/assets/"+esc, ""); code != 200 || !strings.Contains(body, `"id":"rack A/slot#3?x=%1 \u0026 100%"`) {
		t.Errorf("GET /assets/%s = %d %s, want the asset %q", esc, code, body, id)
	}
	if code, body := e.as(t, auth.Viewer, "GET", v1+"/assets/"+esc+"/events", ""); code != 200 || !strings.Contains(body, `"items":[{`) {
		t.Errorf("GET /assets/%s/events = %d %s, want its events", esc, code, body)
	}
	if code, body := e.as(t, auth.Security, "PATCH", v1+"/assets/"+esc, `{"custody":{"status":"quarantined"}}`); code != 200 {
		t.Errorf("quarantine %s = %d %s, want 200", esc, code, body)
	}
	if a, err := e.store.Asset(id); err != nil || a.Custody.Status != "quarantined" {
		t.Errorf("asset %q after the quarantine = %+v, %v, want quarantined", id, a.Custody, err)
	}
	// net/http will not send an invalid escape: write the request by hand.
	rawGet := func(path string) (int, string) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: twin.test\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", path, roleToken(auth.Viewer))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, bad := range []string{"/assets/%zz", "/assets/a%2", "/gateways/%G1", "/ledger/assets/%/history"} {
		if code, body := rawGet(v1 + bad); code != 400 || !strings.Contains(body, "percent-encoded") {
			t.Errorf("GET %s = %d %s, want 400 naming the encoding", bad, code, body)
		}
	}
}

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"twinchain/internal/httpapi"
	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
)

// testToken is the API token the tests' services accept (role viewer).
const testToken = "e2e-test-token"

// viewer is testToken as the tests give it to testsvc.StartTwinService.
var viewer = testsvc.Token{Name: "e2e", Role: "viewer", Secret: testToken}

// testConfig writes a configuration file with testToken and returns its
// path, for the benchmark's in-process service.
func testConfig(t testing.TB, dir string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(testToken))
	path := filepath.Join(dir, "twin-test.yaml")
	text := fmt.Sprintf("auth:\n  tokens:\n    - {name: e2e, role: viewer, sha256: %s}\n", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// getJSON GETs url into v and returns the status code.
func getJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := authGet(context.Background(), url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && len(body) > 0 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, body)
		}
	}
	return resp.StatusCode
}

// simFleet is a small firmware-sim fleet and its registry file.
type simFleet struct {
	f        *fleet.Fleet
	registry string
	assets   []string
}

func newSimFleet(t *testing.T, dir string, servers int) *simFleet {
	t.Helper()
	f, err := fleet.New(fleet.Config{Sites: 1, ServersPerSite: servers, GPUsPerServer: 2, Seed: 7, SiteGateways: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &simFleet{f: f, registry: filepath.Join(dir, "registry.json")}
	if err := registry.WriteFile(s.registry, f.Registry()); err != nil {
		t.Fatal(err)
	}
	for _, g := range f.Registry().Gateways {
		s.assets = append(s.assets, g.Assets...)
	}
	return s
}

// publish runs the fleet's publisher against broker until the returned stop
// is called.
func (s *simFleet) publish(t *testing.T, broker string, rate float64) (p *fleet.Publisher, stop func()) {
	t.Helper()
	p, err := fleet.NewPublisher(s.f, fleet.PublishConfig{Broker: broker, Rate: rate}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("fleet publisher: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

// allAssets walks every page of /api/v1/assets with the given page size.
func allAssets(t *testing.T, base, query string, limit int) []twin.Asset {
	t.Helper()
	var out []twin.Asset
	cursor := ""
	for range 10000 {
		var page httpapi.Page[twin.Asset]
		url := fmt.Sprintf("%s/api/v1/assets?limit=%d&cursor=%s%s", base, limit, cursor, query)
		if code := getJSON(t, url, &page); code != http.StatusOK {
			t.Fatalf("GET %s = %d", url, code)
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
	t.Fatal("paging did not end")
	return nil
}

// waitLive waits until every asset of the fleet is served with telemetry on
// its GPUs, and returns the assets by id.
func waitLive(t *testing.T, base string, s *simFleet, minSamples uint64) map[string]twin.Asset {
	t.Helper()
	var byID map[string]twin.Asset
	missing := ""
	defer func() {
		if t.Failed() && missing != "" {
			t.Logf("the fleet was not live: %s", missing)
		}
	}()
	testsvc.Eventually(t, 60*time.Second, "every asset of the fleet served with telemetry", func() bool {
		byID = map[string]twin.Asset{}
		for _, a := range allAssets(t, base, "", 1000) {
			byID[a.ID] = a
		}
		missing = ""
		for _, id := range s.assets {
			a, ok := byID[id]
			switch {
			case !ok:
				missing = id + " absent"
			case a.Kind == twin.KindGPU && (a.Health.Samples < minSamples || a.Health.Latest == nil):
				missing = fmt.Sprintf("%s has %d samples", id, a.Health.Samples)
			}
			if missing != "" {
				break
			}
		}
		return missing == ""
	})
	return byID
}

// checkAPI exercises the read API against a live fleet.
func checkAPI(t *testing.T, base string, s *simFleet, live map[string]twin.Asset) {
	t.Helper()
	// Paging in small pages returns the same set as one big page.
	paged := allAssets(t, base, "", 3)
	if len(paged) < len(s.assets) {
		t.Errorf("paging by 3 returned %d assets, want at least %d", len(paged), len(s.assets))
	}
	seen := map[string]bool{}
	for _, a := range paged {
		if seen[a.ID] {
			t.Errorf("paging returned %s twice", a.ID)
		}
		seen[a.ID] = true
	}
	gpus := allAssets(t, base, "&kind=gpu", 1000)
	wantGPUs := 0
	for _, a := range live {
		if a.Kind == twin.KindGPU {
			wantGPUs++
		}
	}
	if len(gpus) != wantGPUs || wantGPUs == 0 {
		t.Errorf("GET /assets?kind=gpu = %d assets, want %d", len(gpus), wantGPUs)
	}
	gpu := gpus[0]
	var events httpapi.Page[twin.Event]
	if code := getJSON(t, base+"/api/v1/assets/"+gpu.ID+"/events", &events); code != http.StatusOK || len(events.Items) == 0 || events.Items[0].Type != twin.EventRegistered {
		t.Errorf("GET /assets/%s/events = %d, %+v; want 200 starting with registered", gpu.ID, code, events.Items)
	}
	var e httpapi.ErrorBody
	if code := getJSON(t, base+"/api/v1/assets/no-such-asset", &e); code != http.StatusNotFound || e.Error.Code != httpapi.CodeNotFound {
		t.Errorf("GET /assets/no-such-asset = %d %+v, want 404 not_found", code, e)
	}
	var st ingest.Stats
	getJSON(t, base+"/api/v1/stats/ingest", &st)
	if st.Accepted == 0 {
		t.Errorf("ingest stats accepted = 0")
	}
	for _, r := range ingest.Reasons {
		if r != ingest.ReasonDuplicate && st.Rejected[r] != 0 {
			t.Errorf("ingest stats rejected[%s] = %d for a clean fleet, want 0", r, st.Rejected[r])
		}
	}
	var gws httpapi.Page[httpapi.GatewayView]
	if getJSON(t, base+"/api/v1/gateways", &gws); len(gws.Items) != len(s.f.Gateways) {
		t.Errorf("GET /gateways = %d gateways, want %d", len(gws.Items), len(s.f.Gateways))
	}
	if resp, err := http.Get(base + "/metrics"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token = %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	if got := metric(t, base, testToken, "twinchain_ingest_accepted_total"); got == 0 {
		t.Errorf("/metrics twinchain_ingest_accepted_total = 0, want the fleet's messages")
	}
	// The stream replays from ?after= and ends when the client goes away.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := authGet(ctx, base+"/api/v1/stream?after=0")
	if err != nil {
		t.Fatalf("GET /stream: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("GET /stream content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var first twin.Event
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if err := json.Unmarshal([]byte(data), &first); err != nil {
				t.Fatalf("stream data %q: %v", data, err)
			}
			break
		}
	}
	resp.Body.Close()
	if first.ID != 1 || first.Type != twin.EventRegistered {
		t.Errorf("first streamed event = %+v, want id 1, registered", first)
	}
}

// TestFleetEmbedded: firmware-sim's fleet publishes to twin-service's
// embedded broker over TCP; every asset appears with live telemetry; after a
// restart state and revisions are still there and continue.
func TestFleetEmbedded(t *testing.T) {
	dir := t.TempDir()
	sim := newSimFleet(t, dir, 3)
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Tokens: []testsvc.Token{viewer}, DataDir: filepath.Join(dir, "data"), Registry: sim.registry})
	_, stopFleet := sim.publish(t, svc.MQTTURL(), 20)
	live := waitLive(t, svc.URL, sim, 3)
	checkAPI(t, svc.URL, sim, live)
	stopFleet()
	if err := svc.Stop(); err != nil {
		t.Errorf("twin-service after SIGTERM: %v", err)
	}
	before := storedAssets(t, svc.DataDir)

	svc.Restart(t)
	after := waitLive(t, svc.URL, sim, 3)
	for id, a := range before {
		b := after[id]
		if (b.Revision != a.Revision && !onlyAlertSteps(t, svc.URL, id, a.Revision, b.Revision)) || b.Health.Samples != a.Health.Samples {
			t.Errorf("%s after restart: revision %d samples %d, want %d and %d", id, b.Revision, b.Health.Samples, a.Revision, a.Health.Samples)
		}
	}
	_, stopFleet = sim.publish(t, svc.MQTTURL(), 20)
	gpu := ""
	for id, a := range before {
		if a.Kind == twin.KindGPU {
			gpu = id
			break
		}
	}
	testsvc.Eventually(t, 60*time.Second, gpu+" to get new samples after the restart", func() bool {
		var a twin.Asset
		getJSON(t, svc.URL+"/api/v1/assets/"+gpu, &a)
		return a.Health.Samples > before[gpu].Health.Samples
	})
	stopFleet()
	var gw twin.Asset
	getJSON(t, svc.URL+"/api/v1/assets/"+sim.f.Gateways[0].ID, &gw)
	if gw.Revision <= before[gw.ID].Revision {
		t.Errorf("gateway %s revision %d after restart and new traffic, want above %d", gw.ID, gw.Revision, before[gw.ID].Revision)
	}
}

// TestFleetMosquitto: the same through a real Mosquitto, with twin-service
// as its paho client (persistent session, manual acknowledgement).
func TestFleetMosquitto(t *testing.T) {
	mosq := testsvc.StartMosquitto(t, "")
	dir := t.TempDir()
	sim := newSimFleet(t, dir, 3)
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Tokens: []testsvc.Token{viewer}, Registry: sim.registry,
		Args: []string{"-mqtt-mode", "external", "-mqtt-url", mosq.URL(), "-mqtt-username", "twin-service@test"}})
	_, stopFleet := sim.publish(t, mosq.URL(), 20)
	live := waitLive(t, svc.URL, sim, 3)
	checkAPI(t, svc.URL, sim, live)
	stopFleet()
}

// storedAssets reads every twin from a stopped service's store.
// onlyAlertSteps reports whether asset id's revisions from+1..to are all
// alert lifecycle events (e.g. the step of a gateway_offline alert raised
// as the fleet stopped, recorded from its queue after the restart).
func onlyAlertSteps(t *testing.T, base, id string, from, to uint64) bool {
	var evs struct{ Items []twin.Event }
	getJSON(t, base+"/api/v1/assets/"+id+"/events", &evs)
	n := uint64(0)
	for _, e := range evs.Items {
		if e.Revision > from {
			if !strings.HasPrefix(string(e.Type), "alert_") {
				return false
			}
			n++
		}
	}
	return n == to-from
}

func storedAssets(t *testing.T, dataDir string) map[string]twin.Asset {
	t.Helper()
	store, err := twinstore.Open(filepath.Join(dataDir, "twins.db"), twinstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	out := map[string]twin.Asset{}
	err = store.ForEachTwin(func(a *twin.Asset, _ uint64) error {
		out[a.ID] = *a
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func getenvDefault(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// TestBinariesEndToEnd is `make run` in a test: the firmware-sim and
// twin-service binaries on ports the test chooses; firmware-sim writes the
// registry and publishes its fleet; every asset is served with telemetry.
func TestBinariesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	simBin := filepath.Join(testsvc.Programs(t, "firmware-sim"), "firmware-sim")
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.json")
	fleetArgs := []string{"fleet", "--sites", "1", "--servers", "2", "--gpus", "4", "--seed", "11"}
	if out, err := exec.Command(simBin, append(fleetArgs, "--registry", reg, "--registry-only")...).CombinedOutput(); err != nil {
		t.Fatalf("firmware-sim --registry-only: %v\n%s", err, out)
	}
	file, err := registry.LoadFile(reg)
	if err != nil {
		t.Fatal(err)
	}
	sim := &simFleet{registry: reg}
	for _, g := range file.Gateways {
		sim.assets = append(sim.assets, g.Assets...)
	}
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Tokens: []testsvc.Token{viewer}, Registry: reg, Args: []string{"-log-level", "info"}})
	testsvc.StartProcess(t, simBin, append(fleetArgs, "--broker", svc.MQTTURL(), "--rate", "5")...)
	waitLive(t, svc.URL, sim, 3)
	var gws httpapi.Page[httpapi.GatewayView]
	getJSON(t, svc.URL+"/api/v1/gateways", &gws)
	for _, g := range gws.Items {
		if g.Stream == nil || g.Stream.Accepted == 0 || g.Stream.State != "online" {
			t.Errorf("gateway %s stream = %+v, want accepted messages and online", g.ID, g.Stream)
		}
	}
	if err := svc.Stop(); err != nil {
		t.Errorf("twin-service after SIGTERM: %v", err)
	}
	if !strings.Contains(svc.Output(), "twin-service: dashboard at http://"+svc.HTTPAddr+"/") {
		t.Errorf("twin-service did not print its dashboard URL:\n%s", svc.Output())
	}
}

// authGet GETs url with the tests' API token.
func authGet(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	return http.DefaultClient.Do(req)
}

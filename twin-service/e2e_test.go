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
	"syscall"
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

// testToken is the API token the tests' configuration accepts (role viewer).
const testToken = "e2e-test-token"

// testConfig writes a configuration file with testToken and returns its path.
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

// inProcess is twin-service's run() inside the test, on chosen ports.
type inProcess struct {
	base   string // http://127.0.0.1:port
	cancel context.CancelFunc
	done   chan error
	stderr *testsvc.Buffer
}

func startInProcess(t *testing.T, args ...string) *inProcess {
	t.Helper()
	httpAddr := testsvc.Addr(testsvc.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{base: "http://" + httpAddr, cancel: cancel, done: make(chan error, 1), stderr: &testsvc.Buffer{}}
	args = append([]string{"-config", testConfig(t, t.TempDir()), "-http", httpAddr, "-log-level", "warn"}, args...)
	go func() { p.done <- run(ctx, args, func(string) string { return "" }, p.stderr) }()
	t.Cleanup(func() { p.stop(t) })
	waitReady(t, p.base, p.stderr)
	return p
}

func (p *inProcess) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("twin-service run: %v\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("twin-service did not stop within 30s\n%s", p.stderr)
	}
}

func waitReady(t *testing.T, base string, stderr fmt.Stringer) { waitReadyB(t, base, stderr) }

func waitReadyB(t testing.TB, base string, stderr fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("twin-service not ready after 30s (%v)\n%s", err, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getJSON GETs url into v and returns the status code.
func getJSON(t *testing.T, url string, v any) int { return getJSONB(t, url, v) }

func getJSONB(t testing.TB, url string, v any) int {
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
func waitLive(t *testing.T, base string, s *simFleet, minSamples uint64, stderr fmt.Stringer) map[string]twin.Asset {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		byID := map[string]twin.Asset{}
		for _, a := range allAssets(t, base, "", 1000) {
			byID[a.ID] = a
		}
		missing := ""
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
		if missing == "" {
			return byID
		}
		if time.Now().After(deadline) {
			var st ingest.Stats
			getJSON(t, base+"/api/v1/stats/ingest", &st)
			t.Fatalf("fleet not live after 60s: %s; ingest stats %+v\n%s", missing, st, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "twinchain_ingest_accepted_total") {
		t.Errorf("/metrics lacks twinchain_ingest_accepted_total")
	}
	// The stream replays from ?after= and ends when the client goes away.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err = authGet(ctx, base+"/api/v1/stream?after=0")
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
	mqttAddr := testsvc.Addr(testsvc.FreePort(t))
	args := []string{"-data", filepath.Join(dir, "data"), "-registry", sim.registry, "-mqtt-addr", mqttAddr}
	svc := startInProcess(t, args...)
	_, stopFleet := sim.publish(t, "tcp://"+mqttAddr, 20)
	live := waitLive(t, svc.base, sim, 3, svc.stderr)
	checkAPI(t, svc.base, sim, live)
	stopFleet()
	svc.stop(t)
	before := storedAssets(t, filepath.Join(dir, "data"))

	svc = startInProcess(t, args...)
	after := waitLive(t, svc.base, sim, 3, svc.stderr)
	for id, a := range before {
		b := after[id]
		if (b.Revision != a.Revision && !onlyAlertSteps(t, svc.base, id, a.Revision, b.Revision)) || b.Health.Samples != a.Health.Samples {
			t.Errorf("%s after restart: revision %d samples %d, want %d and %d", id, b.Revision, b.Health.Samples, a.Revision, a.Health.Samples)
		}
	}
	_, stopFleet = sim.publish(t, "tcp://"+mqttAddr, 20)
	gpu := ""
	for id, a := range before {
		if a.Kind == twin.KindGPU {
			gpu = id
			break
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var a twin.Asset
		getJSON(t, svc.base+"/api/v1/assets/"+gpu, &a)
		if a.Health.Samples > before[gpu].Health.Samples {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s got no new samples after the restart\n%s", gpu, svc.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopFleet()
	var gw twin.Asset
	getJSON(t, svc.base+"/api/v1/assets/"+sim.f.Gateways[0].ID, &gw)
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
	svc := startInProcess(t, "-data", filepath.Join(dir, "data"), "-registry", sim.registry, "-mqtt-mode", "external", "-mqtt-url", mosq.URL(), "-mqtt-client-id", "twin-service-test")
	_, stopFleet := sim.publish(t, mosq.URL(), 20)
	live := waitLive(t, svc.base, sim, 3, svc.stderr)
	checkAPI(t, svc.base, sim, live)
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
	svcBin, simBin := buildCommand(t, "twin-service"), buildCommand(t, "firmware-sim")
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
	httpAddr, mqttAddr := testsvc.Addr(testsvc.FreePort(t)), testsvc.Addr(testsvc.FreePort(t))
	base := "http://" + httpAddr
	svc := startProc(t, svcBin, base, "-config", testConfig(t, dir), "-data", filepath.Join(dir, "data"), "-registry", reg, "-http", httpAddr, "-mqtt-addr", mqttAddr)
	pub := exec.Command(simBin, append(fleetArgs, "--broker", "tcp://"+mqttAddr, "--rate", "5")...)
	pubOut := &testsvc.Buffer{}
	pub.Stdout, pub.Stderr = pubOut, pubOut
	pub.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		pub.Process.Signal(syscall.SIGTERM)
		pub.Wait()
	}()
	waitLive(t, base, sim, 3, svc.stderr)
	var gws httpapi.Page[httpapi.GatewayView]
	getJSON(t, base+"/api/v1/gateways", &gws)
	for _, g := range gws.Items {
		if g.Stream == nil || g.Stream.Accepted == 0 || g.Stream.State != "online" {
			t.Errorf("gateway %s stream = %+v, want accepted messages and online", g.ID, g.Stream)
		}
	}
	if err := svc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := svc.cmd.Wait(); err != nil {
		t.Errorf("twin-service after SIGTERM: %v\n%s", err, svc.stderr)
	}
	if !strings.Contains(svc.stderr.String(), "twin-service: dashboard at http://"+httpAddr+"/") {
		t.Errorf("twin-service did not print its dashboard URL:\n%s", svc.stderr)
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

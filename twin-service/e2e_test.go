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
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	if got, page := metric(t, base, testToken, "twinchain_store_page_bytes_total"), float64(os.Getpagesize()); got < page || math.Mod(got, page) != 0 {
		t.Errorf("/metrics twinchain_store_page_bytes_total = %v, want whole pages of %v bytes, at least one", got, page)
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

// TestMakeRun is `make run` in a test: scripts/run.sh with the built
// binaries on ports the test chooses and a fresh data directory (no
// registry.json). firmware-sim enrolls its fleet the way real agents do
// (a one-time token per gateway from twin-service, then the gateway's signed
// request); every gateway's messages are then stored, nothing is refused as
// an unknown gateway, a bad signature or an unbound asset, and no alert of
// those kinds opens.
func TestMakeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs make run")
	}
	bin, script, data, httpAddr, mqttAddr := makeRunSetup(t)
	out, stop := startMakeRun(t, script, bin, data, httpAddr, mqttAddr)
	base := "http://" + httpAddr
	if err := testsvc.WaitHTTP(base+"/readyz", 60*time.Second); err != nil {
		t.Fatalf("make run: %v", err)
	}
	f, err := fleet.New(fleet.DefaultConfig()) // run.sh's fleet
	if err != nil {
		t.Fatal(err)
	}
	get := makeRunAPI(t, base, data)
	pending := ""
	testsvc.Eventually(t, 90*time.Second, "every gateway of the fleet enrolled, bound to its assets and its messages stored", func() bool {
		var gws httpapi.Page[httpapi.GatewayView]
		get("/api/v1/gateways?limit=1000", &gws)
		byID := map[string]httpapi.GatewayView{}
		for _, g := range gws.Items {
			byID[g.ID] = g
		}
		pending = ""
		for _, want := range f.Gateways {
			g, ok := byID[want.ID]
			switch {
			case !ok:
				pending = want.ID + " not enrolled"
			case !g.PublicKey.Equal(want.PublicKey()) || g.Site != want.Site.ID || !slices.Equal(g.Assets, want.Assets()):
				pending = fmt.Sprintf("%s registered as %+v", want.ID, g.Gateway)
			case g.Stream == nil || g.Stream.Accepted < 3:
				pending = want.ID + " has fewer than 3 messages stored"
			}
			if pending != "" {
				return false
			}
		}
		return true
	})
	if pending != "" {
		t.Logf("last: %s", pending)
	}
	if _, err := os.Stat(filepath.Join(data, "registry.json")); err == nil {
		t.Error("make run wrote data/registry.json: the fleet should enroll, not be seeded")
	}
	var stats ingest.Stats
	get("/api/v1/stats/ingest", &stats)
	for _, r := range []ingest.Reason{"unknown_gateway", "bad_signature", "unbound_asset"} {
		if n := stats.Rejected[r]; n != 0 {
			t.Errorf("ingest rejected %d messages as %s", n, r)
		}
	}
	var alerts struct {
		Items []struct{ Type, Summary string }
	}
	get("/api/v1/alerts?limit=500", &alerts)
	for _, a := range alerts.Items {
		switch a.Type {
		case "unknown_gateway", "bad_signatures", "unbound_assets", "unknown_tags", "replayed_messages":
			t.Errorf("alert %s: %s", a.Type, a.Summary)
		}
	}
	if err := stop(); err != nil && strings.Contains(err.Error(), "still running") { // its exit status after Ctrl-C is the shell's
		t.Error(err)
	}
	for _, want := range []string{fmt.Sprintf("firmware-sim: enrolled %d gateways with http://%s (0 already were)", len(f.Gateways), httpAddr),
		"twin-service: dashboard at http://" + httpAddr + "/", "twin-service stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("make run did not print %q", want)
		}
	}

	// Started again, the fleet is enrolled already (as an agent, once) and
	// its messages are stored.
	accepted := func() uint64 {
		var st ingest.Stats
		get("/api/v1/stats/ingest", &st)
		return st.Accepted
	}
	out, stop = startMakeRun(t, script, bin, data, httpAddr, mqttAddr)
	if err := testsvc.WaitHTTP(base+"/readyz", 60*time.Second); err != nil {
		t.Fatalf("make run again: %v", err)
	}
	before := accepted() // the counts survive the restart
	testsvc.Eventually(t, 60*time.Second, "messages stored after the restart", func() bool { return accepted() >= before+uint64(2*len(f.Gateways)) })
	if want := fmt.Sprintf("firmware-sim: enrolled 0 gateways with http://%s (%d already were)", httpAddr, len(f.Gateways)); !strings.Contains(out.String(), want) {
		t.Errorf("make run again did not print %q", want)
	}
	if err := stop(); err != nil && strings.Contains(err.Error(), "still running") {
		t.Error(err)
	}
}

// makeRunSetup builds the binaries and picks what make run needs: the
// binaries' folder, scripts/run.sh, a fresh data directory and two ports.
func makeRunSetup(t *testing.T) (bin, script, data, httpAddr, mqttAddr string) {
	bin = testsvc.Programs(t, "twin-service", "firmware-sim")
	data = t.TempDir()
	httpAddr, mqttAddr = testsvc.Addr(testsvc.FreePort(t)), testsvc.Addr(testsvc.FreePort(t))
	script, err := filepath.Abs("../scripts/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	return bin, script, data, httpAddr, mqttAddr
}

// makeRunAPI returns a GET of make run's API at base into v, with the
// demo's ml_engineer token from data/demo-tokens (it reads the API).
func makeRunAPI(t *testing.T, base, data string) func(path string, v any) {
	var token string
	testsvc.Eventually(t, 30*time.Second, "data/demo-tokens", func() bool {
		token = demoToken(data, "ml")
		return token != ""
	})
	return func(path string, v any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s, %v", path, resp.Status, err)
		}
	}
}

// demoToken is the NAME= line of data/demo-tokens ("" when there is none yet).
func demoToken(data, name string) string {
	b, _ := os.ReadFile(filepath.Join(data, "demo-tokens"))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			return v
		}
	}
	return ""
}

// startMakeRun starts scripts/run.sh as make run does, as a user would (none
// of the tests' TWINCHAIN_* settings; the demo every minute), and returns its
// output and a stop that presses Ctrl-C.
func startMakeRun(t *testing.T, script, bin, data, httpAddr, mqttAddr string) (*testsvc.Buffer, func() error) {
	t.Helper()
	out := &testsvc.Buffer{}
	run := exec.Command(script, bin, data, httpAddr, mqttAddr)
	run.Stdout, run.Stderr = out, out
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TWINCHAIN_") {
			run.Env = append(run.Env, kv)
		}
	}
	run.Env = append(run.Env, "TWINCHAIN_DEMO=1m")
	// Its own process group: the stop reaches run.sh's children too.
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	run.WaitDelay = 10 * time.Second
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	var once sync.Once
	var stopErr error
	stop := func() error { // Ctrl-C, then whatever is left after 30 s is killed
		once.Do(func() {
			_ = syscall.Kill(-run.Process.Pid, syscall.SIGINT)
			select {
			case stopErr = <-exited:
			case <-time.After(30 * time.Second):
				_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
				stopErr = fmt.Errorf("make run still running 30 s after Ctrl-C: %v", <-exited)
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			t.Logf("make run output:\n%s", testsvc.Tail(out.String(), 16<<10))
		}
	})
	return out, stop
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

// TestMakeRunScenario plays a scenario file on make run's fleet, as a user
// would after `make run`: `firmware-sim scenario theft.yaml` finds the
// fleet's control socket ({data}/fleet.sock), the site gateway gw-s1-dock
// itself reports being carried off (signed with its own key, its next
// sequence numbers), and the theft alert opens, with no bad signature,
// replay, unknown gateway or offline gateway alert and no message
// refused. -own-fleet, which would connect the file's own fleet with
// other keys for the same gateway ids, is refused with a clear message.
func TestMakeRunScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs make run")
	}
	bin, script, data, httpAddr, mqttAddr := makeRunSetup(t)
	theft, err := filepath.Abs("../internal/sim/scenario/testdata/scenarios/theft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, stop := startMakeRun(t, script, bin, data, httpAddr, mqttAddr)
	base := "http://" + httpAddr
	if err := testsvc.WaitHTTP(base+"/readyz", 60*time.Second); err != nil {
		t.Fatalf("make run: %v", err)
	}
	get := makeRunAPI(t, base, data)
	token := demoToken(data, "ml")
	sock := filepath.Join(data, "fleet.sock")
	testsvc.Eventually(t, 90*time.Second, "gw-s1-dock enrolled and reporting, and the fleet's control socket", func() bool {
		var gws struct{ Items []gatewayStream }
		get("/api/v1/gateways?limit=1000", &gws)
		i := slices.IndexFunc(gws.Items, func(g gatewayStream) bool { return g.ID == "gw-s1-dock" })
		if i < 0 || gws.Items[i].Stream == nil || gws.Items[i].Stream.Accepted < 3 {
			return false
		}
		fi, err := os.Stat(sock)
		return err == nil && fi.Mode().Perm() == 0o600
	})

	sim := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(bin, "firmware-sim"), args...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "TWINCHAIN_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "TWINCHAIN_DATA_DIR="+data) // as from the repository with make run's ./data
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	// The scenario's own fleet would impersonate make run's gateways: refused.
	if got, err := sim("scenario", "-own-fleet", "-server", base, "-token", token, "-broker", "tcp://"+mqttAddr, theft); err == nil || !strings.Contains(got, "under other keys") || !strings.Contains(got, "gw-s1-dock") {
		t.Errorf("scenario -own-fleet: %v\n%s\nwant refused: gw-s1-dock is held under other keys", err, got)
	}
	// On the running fleet (the default socket under TWINCHAIN_DATA_DIR).
	played := time.Now()
	got, err := sim("scenario", theft)
	if err != nil || !strings.Contains(got, "step 0 theft gw-s1-dock: gw-s1-dock is carried off from site s1 at 15 m/s") || !strings.Contains(got, "played 1 step(s)") {
		t.Fatalf("scenario on the running fleet: %v\n%s", err, got)
	}
	t.Logf("firmware-sim scenario:\n%s", got)

	type alertView struct {
		ID, Type, Asset, Summary string
	}
	var geofence alertView
	testsvc.Eventually(t, 3*time.Minute, "a geofence_exit alert on gw-s1-dock", func() bool {
		var page struct{ Items []alertView }
		get("/api/v1/alerts?state=&type=geofence_exit&asset=gw-s1-dock", &page)
		if len(page.Items) > 0 {
			geofence = page.Items[0]
		}
		return geofence.ID != ""
	})
	t.Logf("geofence_exit %s %s after the scenario started: %s", geofence.ID, time.Since(played).Round(time.Second), geofence.Summary)
	var alerts struct{ Items []alertView }
	get("/api/v1/alerts?state=&limit=1000", &alerts)
	for _, a := range alerts.Items {
		switch a.Type {
		case "bad_signatures", "replayed_messages", "unknown_gateway", "gateway_offline", "sequence_gap", "unknown_tags":
			t.Errorf("alert %s %s on %s: %s (the scenario impersonated or broke a gateway)", a.ID, a.Type, a.Asset, a.Summary)
		}
	}
	var stats ingest.Stats
	get("/api/v1/stats/ingest", &stats)
	for _, r := range []ingest.Reason{ingest.ReasonUnknownGateway, ingest.ReasonBadSignature, ingest.ReasonReplay, ingest.ReasonUnboundAsset} {
		if n := stats.Rejected[r]; n != 0 {
			t.Errorf("ingest rejected %d messages as %s", n, r)
		}
	}
	if err := stop(); err != nil && strings.Contains(err.Error(), "still running") {
		t.Error(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("%s still there after make run stopped (%v)", sock, err)
	}
	if !strings.Contains(out.String(), "firmware-sim scenario -fleet "+sock) {
		t.Errorf("make run does not say how to play a scenario on its fleet")
	}
}

// gatewayStream is a gateway in GET /gateways with how many of its
// messages were stored.
type gatewayStream struct {
	ID     string `json:"id"`
	Stream *struct {
		Accepted uint64 `json:"accepted"`
	} `json:"stream"`
}

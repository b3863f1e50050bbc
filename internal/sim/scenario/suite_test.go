package scenario

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"twinchain/internal/detect/alert"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
)

// The scenario suite runs every testdata/scenarios file against a real
// twin-service process (built from ./twin-service, embedded broker, real
// TCP on loopback ports), with the example detection configuration whose
// webhooks point at a receiver in the test that checks every HMAC.

// service is one twin-service process owned by a test.
type service struct {
	*testsvc.TwinService
	tokens  Tokens
	manager string // a token of an asset manager (may open and approve)
}

// startService starts twin-service on fresh ports over dir, with the fleet
// registry and a detection config whose webhook sinks post to hookURL.
func startService(t testing.TB, dir string, reg registry.File, hookURL string) *service {
	t.Helper()
	if err := registry.WriteFile(filepath.Join(dir, "registry.json"), reg); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../../twin-service/detect.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(example), "http://127.0.0.1:9099/hooks", hookURL)
	cfg = strings.ReplaceAll(cfg, "backoff_max: 5m", "backoff_max: 500ms")
	cfg = strings.ReplaceAll(cfg, "backoff_min: 1s", "backoff_min: 100ms")
	cfg = strings.ReplaceAll(cfg, "poll: 1s", "poll: 200ms")
	if err := os.WriteFile(filepath.Join(dir, "detect.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Sign-in: API tokens for a reader and three people (two may open
	// work orders, two may approve them; the manager may do both, but
	// never approve its own).
	s := &service{tokens: Tokens{Read: "tok-reader", Create: "tok-maintenance", Approve: "tok-security"}, manager: "tok-manager"}
	s.TwinService = testsvc.StartTwinService(t, testsvc.TwinServiceOptions{
		Tokens: []testsvc.Token{
			{Name: "sim-reader", Role: "viewer", Secret: s.tokens.Read}, {Name: "sim-maintenance", Role: "maintenance", Secret: s.tokens.Create},
			{Name: "sim-security", Role: "security", Secret: s.tokens.Approve}, {Name: "sim-manager", Role: "asset_manager", Secret: s.manager},
		},
		DataDir:      dir,
		Registry:     filepath.Join(dir, "registry.json"),
		DetectConfig: filepath.Join(dir, "detect.yaml"),
	})
	return s
}

// hook is a webhook receiver that checks each signature and records what
// arrived. It can go down and come back on the same port.
type hook struct {
	secret []byte
	addr   string
	mu     sync.Mutex
	srv    *http.Server
	opened map[string]map[string]bool // "type asset" -> alert ids delivered as opened (or raised to a routed severity)
	ids    map[string]int             // delivery id -> times received
	bad    int
	slack  int // Slack-shaped deliveries
}

func newHook(t *testing.T, secret string, up bool) *hook {
	h := &hook{secret: []byte(secret), addr: testsvc.Addr(testsvc.FreePort(t)), opened: map[string]map[string]bool{}, ids: map[string]int{}}
	if up {
		h.up(t)
	}
	t.Cleanup(h.down)
	return h
}

func (h *hook) up(t *testing.T) {
	l, err := net.Listen("tcp", h.addr)
	if err != nil {
		t.Fatalf("webhook receiver on %s: %v", h.addr, err)
	}
	h.mu.Lock()
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve)}
	srv := h.srv
	h.mu.Unlock()
	go srv.Serve(l)
}

func (h *hook) down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	secret := h.secret
	slack := strings.HasSuffix(r.URL.Path, "/slack")
	if slack {
		secret = append(append([]byte(nil), h.secret...), "-too"...) // the example's chat sink secret
	}
	if !alert.VerifySignature(secret, r.Header.Get(alert.HeaderTimestamp), body, r.Header.Get(alert.HeaderSignature)) {
		h.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if slack {
		var m map[string]string
		if json.Unmarshal(body, &m) != nil || m["text"] == "" {
			h.bad++
			http.Error(w, "not a Slack body", http.StatusBadRequest)
			return
		}
		h.slack++
		return
	}
	var n alert.Notification
	if err := json.Unmarshal(body, &n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.ids[r.Header.Get(alert.HeaderDelivery)]++
	// An alert opened below the webhook route's severity is delivered
	// first when its severity is raised.
	if n.Event == "opened" || n.Event == "severity_raised" {
		key := string(n.Alert.Type) + " " + n.Alert.Asset
		if h.opened[key] == nil {
			h.opened[key] = map[string]bool{}
		}
		h.opened[key][n.Alert.ID] = true
	}
}

func (h *hook) got(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.opened[key])
}

func loadScenarios(t *testing.T) map[string]*File {
	paths, err := filepath.Glob("testdata/scenarios/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	out := map[string]*File{}
	for _, p := range paths {
		f, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = f
	}
	return out
}

func TestScenarioFilesParse(t *testing.T) {
	for name, f := range loadScenarios(t) {
		if len(f.Steps) == 0 && name != "normal-hour" {
			t.Errorf("scenario %s has no steps", name)
		}
	}
	if _, err := Parse("bad.yaml", []byte("name: x\nsteps:\n  - {at: 1m, action: explode, target: a}\n")); err == nil || !strings.Contains(err.Error(), "explode") {
		t.Errorf("Parse(unknown action) = %v, want an error naming it", err)
	}
}

func TestScenarioSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("scenario suite: long")
	}
	files := loadScenarios(t)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var summary []*Outcome
	var totalExpected, totalDetected, totalFalse int
	for _, name := range names {
		f := files[name]
		t.Run(name, func(t *testing.T) {
			h := newHook(t, "change-me", true)
			fl, err := f.NewFleet()
			if err != nil {
				t.Fatal(err)
			}
			svc := startService(t, t.TempDir(), fl.Registry(), "http://"+h.addr+"/hooks")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			rep, err := Run(ctx, f, Options{Broker: svc.MQTTURL(), API: svc.URL, Tokens: svc.tokens, Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			wall := rep.WallEnd.Sub(rep.WallStart)
			t.Logf("%s: %d messages from %d gateways (%d GPUs), %s simulated in %s (%.0fx, %.0f msg/s)", name, rep.Sent, rep.Gateways, rep.GPUs,
				f.Duration, wall.Round(time.Millisecond), f.Duration.Seconds()/wall.Seconds(), float64(rep.Sent)/wall.Seconds())
			if rep.Failed > 0 || rep.Acked+rep.Abandoned != rep.Sent {
				t.Errorf("publisher: sent %d, acknowledged %d, failed %d", rep.Sent, rep.Acked, rep.Failed)
			}
			o, err := Wait(ctx, svc.URL, svc.tokens.Read, f, rep, 30*time.Second, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			summary = append(summary, o)
			totalExpected += o.Expected
			totalDetected += len(o.Detected)
			totalFalse += len(o.False)
			t.Log(o)
			for _, a := range o.Alerts {
				for _, f := range o.False {
					if string(a.Type) == f.Type && a.Asset == f.Asset {
						t.Logf("false alert %s %s: %s %v", a.ID, a.Type, a.Summary, a.Evidence[0].Evidence.Values)
					}
				}
			}
			if !o.OK() {
				t.Errorf("scenario %s: %d missing, %d false alerts\n%s", name, len(o.Missing), len(o.False), o)
			}
			// Every expected alert also reached the signed webhook, once.
			want := map[string]int{}
			for _, d := range o.Detected {
				want[d.Type+" "+d.Asset]++
			}
			for key, n := range want {
				testsvc.Eventually(t, 15*time.Second, "the webhook to get "+key, func() bool { return h.got(key) >= n })
				if got := h.got(key); got != n {
					t.Errorf("webhook got signed notifications of %d opened alerts for %s, want %d", got, key, n)
				}
			}
			for _, id := range f.Quarantined {
				var a struct {
					Custody struct{ Status string } `json:"custody"`
				}
				if err := getJSON(svc.URL+"/api/v1/assets/"+id, svc.tokens.Read, &a); err != nil || a.Custody.Status != "quarantined" {
					t.Errorf("asset %s custody = %q (%v), want quarantined by policy", id, a.Custody.Status, err)
				}
				responded := false
				for _, al := range o.Alerts {
					responded = responded || al.Asset == id && al.Response == "quarantined"
				}
				if !responded {
					t.Errorf("no alert on %s records the quarantine response", id)
				}
			}
			h.mu.Lock()
			bad := h.bad
			h.mu.Unlock()
			if bad > 0 {
				t.Errorf("webhook receiver refused %d deliveries with bad signatures", bad)
			}
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "scenario suite: %d/%d expected alerts detected, %d false alerts\n", totalDetected, totalExpected, totalFalse)
	for _, o := range summary {
		fmt.Fprintln(&b, o)
	}
	b.WriteString("\n" + Table(summary))
	t.Log(b.String())
}

func getJSON(u, token string, out any) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

// metric reads one unlabelled metric from the service's /metrics, as
// token (/metrics needs sign-in).
func metric(t testing.TB, base, token, name string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s = %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("%s not in /metrics", name)
	return 0
}

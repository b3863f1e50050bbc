package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"twinchain/internal/httpapi/auth"
	"twinchain/internal/testsvc"
)

// binaries builds twin-service and firmware-sim once per test run and
// returns their directory.
func binaries(t testing.TB) string {
	t.Helper()
	return testsvc.Programs(t, "twin-service", "firmware-sim")
}

// The API tokens the tests use as machine clients: an admin, and an ML
// pipeline (role ml_engineer) that records datasets and models.
const (
	testToken = "tc_web_test_token"
	mlToken   = "tc_web_ml_pipeline"
	// The sign-off roles (make run's demo signs its model off with them).
	leadToken       = "tc_web_ml_lead"
	complianceToken = "tc_web_compliance"
)

// service is a running twin-service (embedded broker) with the users of
// testUsers and the tokens testToken and mlToken.
type service struct {
	*testsvc.TwinService
	MQTT string // tcp://127.0.0.1:port
}

type fleetSize struct{ sites, servers, gpus int }

// startService starts twin-service, then firmware-sim publishing a fleet of
// the given size to it. Both are stopped by t.Cleanup. The detection config
// is make run's (scripts/run-detect.yaml: the fleet's sites and their
// geofences).
func startService(t testing.TB, size fleetSize, extraFleetArgs ...string) *service {
	t.Helper()
	fleetArgs := []string{"fleet",
		"-sites", fmt.Sprint(size.sites), "-servers", fmt.Sprint(size.servers), "-gpus", fmt.Sprint(size.gpus)}
	fleetArgs = append(fleetArgs, extraFleetArgs...)
	s := startTwin(t, fleetArgs, "../scripts/run-detect.yaml")
	testsvc.StartProcess(t, filepath.Join(binaries(t), "firmware-sim"), append(fleetArgs, "-broker", s.MQTT)...)
	return s
}

// startTwin starts twin-service with the users of testUsers and the gateway
// registry that `firmware-sim simArgs -registry FILE -registry-only` writes;
// it starts no simulator. detectConfig is the detection config file ("":
// the defaults).
func startTwin(t testing.TB, simArgs []string, detectConfig string) *service {
	t.Helper()
	return startTwinIn(t, simArgs, detectConfig, "")
}

// startTwinIn is startTwin over the data directory dataDir ("": a new one).
func startTwinIn(t testing.TB, simArgs []string, detectConfig, dataDir string) *service {
	t.Helper()
	reg := filepath.Join(t.TempDir(), "registry.json")
	regArgs := append(append([]string(nil), simArgs[:1]...), "-registry", reg, "-registry-only")
	regArgs = append(regArgs, simArgs[1:]...)
	if out, err := exec.Command(filepath.Join(binaries(t), "firmware-sim"), regArgs...).CombinedOutput(); err != nil {
		t.Fatalf("firmware-sim registry: %v\n%s", err, out)
	}
	if detectConfig != "" {
		abs, err := filepath.Abs(detectConfig)
		if err != nil {
			t.Fatal(err)
		}
		detectConfig = abs
	}
	conf, err := yaml.Marshal(map[string]any{"auth": testAuthConfig(t), "ledger": map[string]any{"anchor": map[string]any{"interval": "300ms"}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{
		Config: string(conf),
		Tokens: []testsvc.Token{{Name: "web-test", Role: string(auth.Admin), Secret: testToken}, {Name: "ml-pipeline", Role: string(auth.MLEngineer), Secret: mlToken},
			{Name: "ml-lead", Role: string(auth.MLLead), Secret: leadToken}, {Name: "compliance", Role: string(auth.Compliance), Secret: complianceToken}},
		DetectConfig: detectConfig,
		Registry:     reg,
		DataDir:      dataDir,
	})
	return &service{TwinService: ts, MQTT: ts.MQTTURL()}
}

// get reads an API path with the test's token into v; it returns the status.
func (s *service) get(t testing.TB, path string, v any) int {
	t.Helper()
	return s.do(t, "GET", path, nil, v)
}

func (s *service) do(t testing.TB, method, path string, body, v any) int {
	t.Helper()
	return s.doAs(t, testToken, method, path, body, v)
}

// doAs calls the API with a bearer token and decodes a 2xx answer into v.
func (s *service) doAs(t testing.TB, token, method, path string, body, v any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, testsvc.Tail(string(raw), 300), err)
		}
	}
	return resp.StatusCode
}

// page is the API's list shape.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// countAssets walks /assets and counts them.
func (s *service) countAssets(t testing.TB) int {
	t.Helper()
	n, cursor := 0, ""
	for {
		var p page[json.RawMessage]
		path := "/assets?limit=1000"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		if code := s.get(t, path, &p); code != 200 {
			t.Fatalf("GET %s = %d", path, code)
		}
		n += len(p.Items)
		if p.NextCursor == "" || len(p.Items) == 0 {
			return n
		}
		cursor = p.NextCursor
	}
}

// waitAssets waits until the API lists at least n assets.
func (s *service) waitAssets(t testing.TB, n int, timeout time.Duration) int {
	t.Helper()
	got := 0
	testsvc.Eventually(t, timeout, fmt.Sprintf("the API to list %d assets", n), func() bool {
		got = s.countAssets(t)
		return got >= n
	})
	return got
}

// requireRoute fails t unless the service answers path with anything but
// the router's "no route" 404 or a "not configured" 503: a test of a
// feature fails, not skips, when its route is gone.
func (s *service) requireRoute(t testing.TB, path string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/api/v1"+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	json.Unmarshal(raw, &e)
	if resp.StatusCode == 404 && strings.HasPrefix(e.Error.Message, "no route") || resp.StatusCode == 503 {
		t.Fatalf("GET /api/v1%s = %d %s: the route this test needs is missing", path, resp.StatusCode, raw)
	}
}

// raw reads an API path with the test's token and returns the status and
// the exact body.
func (s *service) raw(t testing.TB, path string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", s.URL+"/api/v1"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	testsvc.RemovePrograms()
	os.Exit(code)
}

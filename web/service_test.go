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
	"syscall"
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
)

// service is a running twin-service fed by a running firmware-sim fleet.
type service struct {
	URL   string // http://127.0.0.1:port
	MQTT  string // tcp://127.0.0.1:port
	dir   string
	fleet *process // firmware-sim
}

type fleetSize struct{ sites, servers, gpus int }

// startService starts twin-service with the embedded broker and the users
// of testUsers, then firmware-sim publishing a fleet of the given size to
// it. Both are stopped by t.Cleanup. The detection config is make run's
// (scripts/run-detect.yaml: the fleet's sites and their geofences).
func startService(t testing.TB, size fleetSize, extraFleetArgs ...string) *service {
	t.Helper()
	fleetArgs := []string{"fleet",
		"-sites", fmt.Sprint(size.sites), "-servers", fmt.Sprint(size.servers), "-gpus", fmt.Sprint(size.gpus)}
	fleetArgs = append(fleetArgs, extraFleetArgs...)
	s := startTwin(t, fleetArgs, "../scripts/run-detect.yaml")
	s.fleet = start(t, "firmware-sim", filepath.Join(binaries(t), "firmware-sim"), append(fleetArgs, "-broker", s.MQTT)...)
	return s
}

// startTwin starts twin-service with the embedded broker, the users of
// testUsers and the gateway registry that `firmware-sim simArgs -registry
// FILE -registry-only` writes; it starts no simulator. detectConfig is the
// detection config file ("": the defaults).
func startTwin(t testing.TB, simArgs []string, detectConfig string) *service {
	t.Helper()
	bin := binaries(t)
	dir := t.TempDir()
	httpAddr := testsvc.Addr(testsvc.FreePort(t))
	mqttAddr := testsvc.Addr(testsvc.FreePort(t))
	s := &service{URL: "http://" + httpAddr, MQTT: "tcp://" + mqttAddr, dir: dir}
	reg := filepath.Join(dir, "registry.json")
	regArgs := append(append([]string(nil), simArgs[:1]...), "-registry", reg, "-registry-only")
	regArgs = append(regArgs, simArgs[1:]...)
	if out, err := exec.Command(filepath.Join(bin, "firmware-sim"), regArgs...).CombinedOutput(); err != nil {
		t.Fatalf("firmware-sim registry: %v\n%s", err, out)
	}

	cfg := testAuthConfig(t)
	cfg.Tokens = []auth.TokenConfig{
		{Name: "web-test", Role: auth.Admin, SHA256: auth.HashToken(testToken)},
		{Name: "ml-pipeline", Role: auth.MLEngineer, SHA256: auth.HashToken(mlToken)},
	}
	conf := map[string]any{"auth": cfg, "ledger": map[string]any{"anchor": map[string]any{"interval": "300ms"}}}
	if detectConfig != "" {
		abs, err := filepath.Abs(detectConfig)
		if err != nil {
			t.Fatal(err)
		}
		conf["detect_config"] = abs
	}
	raw, err := yaml.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "twin-service.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "twin-service", filepath.Join(bin, "twin-service"), "-config", cfgPath,
		"-data", filepath.Join(dir, "data"), "-registry", reg, "-http", httpAddr, "-mqtt-addr", mqttAddr, "-log-level", "warn")
	if err := testsvc.WaitTCP(httpAddr, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := testsvc.WaitTCP(mqttAddr, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// process is a program a test started.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs a program until t ends; its output goes to the test log when
// the test fails.
func start(t testing.TB, name, path string, args ...string) *process {
	t.Helper()
	var out testsvc.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(out.String(), 4000))
		}
	})
	return &process{cmd: cmd, exited: exited}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
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
			t.Fatalf("%s %s: decode %q: %v", method, path, tail(string(raw), 300), err)
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
	deadline := time.Now().Add(timeout)
	for {
		got := s.countAssets(t)
		if got >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API lists %d assets after %s, want at least %d", got, timeout, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// hasRoute reports whether the service answers path with anything but the
// router's "no route" 404.
func (s *service) hasRoute(t testing.TB, path string) bool {
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
	return !(resp.StatusCode == 404 && strings.HasPrefix(e.Error.Message, "no route")) && resp.StatusCode != 503
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

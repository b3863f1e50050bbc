package testsvc

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Influxd is a running InfluxDB 1.8 server owned by one test: HTTP (with
// Flux and the v2-compatible API) on a spare loopback port, its meta, data
// and WAL in a temp directory.
type Influxd struct {
	Addr     string // 127.0.0.1:port of the HTTP API
	User     string // admin user when started with auth, else ""
	Password string
	bin      string
	conf     string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// InfluxdOptions are the rare choices a test makes.
type InfluxdOptions struct {
	// Auth turns authentication on and creates an admin user; clients then
	// use the token "user:password".
	Auth bool
}

// StartInfluxd starts influxd (TWINCHAIN_INFLUXD, or influxd on PATH) and
// waits until it answers /ping.
func StartInfluxd(t testing.TB, o InfluxdOptions) *Influxd {
	t.Helper()
	bin := Binary(t, "TWINCHAIN_INFLUXD", "influxd", "go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10, or run make test")
	dir := t.TempDir()
	port, rpc := FreePort(t), FreePort(t)
	for rpc == port {
		rpc = FreePort(t)
	}
	conf := filepath.Join(dir, "influxdb.conf")
	text := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = %q
  logging-enabled = false
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:%d"
  auth-enabled = %t
  log-enabled = false
  flux-enabled = true
  pprof-enabled = false
[logging]
  level = "error"
  suppress-logo = true
`, rpc, filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), port, o.Auth)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Influxd{Addr: Addr(port), bin: bin, conf: conf}
	s.start(t)
	t.Cleanup(s.Stop)
	if o.Auth {
		// With no users yet, InfluxDB 1.x lets the first admin be created
		// without credentials.
		s.User, s.Password = "admin", "twinchain-test"
		s.Query(t, fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES", s.User, s.Password))
	}
	return s
}

func (s *Influxd) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(s.bin, "run", "-config", s.conf)
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd.Stdout = io.Discard
	cmd.Stderr = logf // its shutdown chatter stays out of test output
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start influxd: %v", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }() // its exit is seen through s.exited
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.URL() + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		select {
		case <-s.exited:
			s.cmd = nil
			log, _ := os.ReadFile(s.logPath())
			t.Fatalf("influxd exited before answering /ping (config %s): %s", s.conf, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			t.Fatalf("influxd not answering %s/ping after 60s: %v", s.URL(), err)
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 15 s); it is safe to
// call twice.
func (s *Influxd) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Restart starts the server again after Stop, on the same port with the
// same data.
func (s *Influxd) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

func (s *Influxd) logPath() string { return filepath.Join(filepath.Dir(s.conf), "influxd.log") }

// URL is the server's HTTP base URL.
func (s *Influxd) URL() string { return "http://" + s.Addr }

// Token is what an influxdb-client-go client passes as its token: "" or
// "user:password".
func (s *Influxd) Token() string {
	if s.User == "" {
		return ""
	}
	return s.User + ":" + s.Password
}

// CreateDatabase creates database db (a no-op when it exists).
func (s *Influxd) CreateDatabase(t testing.TB, db string) {
	t.Helper()
	s.Query(t, fmt.Sprintf("CREATE DATABASE %q", db))
}

// InfluxQLResult is the JSON answer of /query.
type InfluxQLResult struct {
	Results []struct {
		Series []struct {
			Name    string            `json:"name"`
			Tags    map[string]string `json:"tags"`
			Columns []string          `json:"columns"`
			Values  [][]any           `json:"values"`
		} `json:"series"`
		Error string `json:"error"`
	} `json:"results"`
	Error string `json:"error"`
}

// Query runs InfluxQL statements through POST /query and fails t on any
// error.
func (s *Influxd) Query(t testing.TB, q string) InfluxQLResult {
	t.Helper()
	return s.QueryDB(t, "", q)
}

// QueryDB runs InfluxQL in database db; timestamps come back in RFC 3339.
func (s *Influxd) QueryDB(t testing.TB, db, q string) InfluxQLResult {
	t.Helper()
	form := url.Values{"q": {q}}
	if db != "" {
		form.Set("db", db)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s.User != "" {
		req.SetBasicAuth(s.User, s.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("influxql %q: %v", q, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r InfluxQLResult
	if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("influxql %q: HTTP %d %s", q, resp.StatusCode, body)
	}
	if r.Error != "" {
		t.Fatalf("influxql %q: %s", q, r.Error)
	}
	for _, res := range r.Results {
		if res.Error != "" {
			t.Fatalf("influxql %q: %s", q, res.Error)
		}
	}
	return r
}

// Count runs an InfluxQL query whose answer is one number (SELECT count(...))
// and returns it; 0 when there are no rows.
func (s *Influxd) Count(t testing.TB, db, q string) int64 {
	t.Helper()
	r := s.QueryDB(t, db, q)
	if len(r.Results) == 0 || len(r.Results[0].Series) == 0 || len(r.Results[0].Series[0].Values) == 0 {
		return 0
	}
	row := r.Results[0].Series[0].Values[0]
	n, ok := row[len(row)-1].(float64)
	if !ok {
		t.Fatalf("influxql %q: last column %v is not a number", q, row[len(row)-1])
	}
	return int64(n)
}

// WriteLines writes line protocol to database db through the 1.x /write
// endpoint (nanosecond timestamps) and fails t unless InfluxDB answers 204.
func (s *Influxd) WriteLines(t testing.TB, db, lines string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/write?db="+url.QueryEscape(db), strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	if s.User != "" {
		req.SetBasicAuth(s.User, s.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("influxdb write: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("influxdb write: HTTP %d %s", resp.StatusCode, body)
	}
}

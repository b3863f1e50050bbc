package testsvc

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Alertmanager is a running Prometheus Alertmanager owned by one test: its
// HTTP API on a spare loopback port, clustering off, one receiver that
// sends nowhere (the test reads /api/v2/alerts).
type Alertmanager struct {
	URL  string // http://127.0.0.1:port
	proc *Process
}

// StartAlertmanager starts alertmanager (TWINCHAIN_ALERTMANAGER, or
// alertmanager on PATH; scripts/test-deps.sh builds it) and waits until it
// answers /-/ready.
func StartAlertmanager(t testing.TB) *Alertmanager {
	t.Helper()
	return StartAlertmanagerOn(t, FreePort(t))
}

// StartAlertmanagerOn is StartAlertmanager on a given loopback port.
func StartAlertmanagerOn(t testing.TB, port int) *Alertmanager {
	t.Helper()
	bin := Binary(t, "TWINCHAIN_ALERTMANAGER", "alertmanager", "scripts/test-deps.sh builds it from the Go module proxy, or run make test")
	dir := t.TempDir()
	conf := filepath.Join(dir, "alertmanager.yml")
	text := "route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	am := &Alertmanager{URL: fmt.Sprintf("http://%s", Addr(port))}
	am.proc = StartProcess(t, bin, "--config.file="+conf, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+Addr(port), "--cluster.listen-address=", "--log.level=warn")
	if err := WaitHTTP(am.URL+"/-/ready", 30*time.Second); err != nil {
		t.Fatalf("alertmanager: %v", err)
	}
	return am
}

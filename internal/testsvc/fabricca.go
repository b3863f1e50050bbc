package testsvc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// FabricCA is a running Hyperledger Fabric CA server owned by one test, over
// plain HTTP on loopback.
type FabricCA struct {
	URL      string // http://127.0.0.1:port
	Name     string // the CA name (--ca.name)
	Admin    string // bootstrap registrar id
	Secret   string // and its secret
	Home     string // the server's home directory
	CertFile string // the CA's root certificate (PEM), also what clients pin as tlsCACerts
	cmd      *exec.Cmd
	stopped  bool
}

// StartFabricCA starts fabric-ca-server (TWINCHAIN_FABRIC_CA, built by
// scripts/test-deps.sh) with bootstrap identity admin:adminpw in a temporary
// home directory, waits until it answers, and stops it in t.Cleanup.
func StartFabricCA(t testing.TB) *FabricCA {
	t.Helper()
	bin := Binary(t, "TWINCHAIN_FABRIC_CA", "fabric-ca-server", "run scripts/test-deps.sh, which builds it into ~/.cache/twinchain/bin")
	home := t.TempDir()
	port, ops := FreePort(t), FreePort(t)
	ca := &FabricCA{
		URL: "http://" + Addr(port), Name: "twinca", Admin: "admin", Secret: "adminpw",
		Home: home, CertFile: filepath.Join(home, "ca-cert.pem"),
	}
	cmd := exec.Command(bin, "start", "-b", ca.Admin+":"+ca.Secret, "--port", strconv.Itoa(port),
		"--address", "127.0.0.1", "-H", home, "-n", ca.Name)
	// The operations (health/metrics) listener defaults to :9443; give each
	// server its own loopback port so tests can run side by side.
	cmd.Env = append(os.Environ(), "FABRIC_CA_SERVER_OPERATIONS_LISTENADDRESS="+Addr(ops))
	logf, err := os.Create(filepath.Join(home, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fabric-ca-server: %v", err)
	}
	ca.cmd = cmd
	t.Cleanup(func() { ca.Stop(); logf.Close() })
	if err := WaitTCP(Addr(port), 60*time.Second); err != nil {
		log, _ := os.ReadFile(logf.Name())
		t.Fatalf("fabric-ca-server: %v\n%s", err, log)
	}
	// The root certificate is written before the listener opens.
	if _, err := os.Stat(ca.CertFile); err != nil {
		t.Fatalf("fabric-ca-server: %v", err)
	}
	return ca
}

// Stop stops the server; it is safe to call twice.
func (ca *FabricCA) Stop() {
	if ca.cmd == nil || ca.stopped {
		return
	}
	ca.stopped = true
	ca.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = ca.cmd.Wait(); close(done) }() // stopping it: the exit status says nothing
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		ca.cmd.Process.Kill()
		<-done
	}
}

// String names the server for messages.
func (ca *FabricCA) String() string { return fmt.Sprintf("fabric-ca %s (%s)", ca.Name, ca.URL) }

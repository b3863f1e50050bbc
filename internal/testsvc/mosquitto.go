package testsvc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Mosquitto is a running Mosquitto broker owned by one test.
type Mosquitto struct {
	Addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	conf string
}

// StartMosquitto starts Mosquitto on a spare loopback port with anonymous
// access and persistence off. extraConf is appended to its configuration.
func StartMosquitto(t testing.TB, extraConf string) *Mosquitto {
	t.Helper()
	bin := Binary(t, "TWINCHAIN_MOSQUITTO", "mosquitto", "apt-get install -y mosquitto, or run make test")
	dir := t.TempDir()
	port := FreePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\nlog_type warning\n%s\n", port, extraConf)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Mosquitto{Addr: Addr(port), conf: conf}
	m.start(t, bin)
	t.Cleanup(func() { m.Stop() })
	return m
}

// StartMosquittoConf starts Mosquitto with the configuration text, which
// listens on addr (127.0.0.1:port; a spare port from FreePort) among others.
func StartMosquittoConf(t testing.TB, text, addr string) *Mosquitto {
	t.Helper()
	bin := Binary(t, "TWINCHAIN_MOSQUITTO", "mosquitto", "apt-get install -y mosquitto, or run make test")
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Mosquitto{Addr: addr, conf: conf}
	m.start(t, bin)
	t.Cleanup(func() { m.Stop() })
	return m
}

func (m *Mosquitto) start(t testing.TB, bin string) {
	t.Helper()
	cmd := exec.Command(bin, "-c", m.conf)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	m.cmd = cmd
	if err := WaitTCP(m.Addr, 10*time.Second); err != nil {
		t.Fatalf("mosquitto: %v", err)
	}
}

// Stop stops the broker; it is safe to call twice.
func (m *Mosquitto) Stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	_ = m.cmd.Wait() // stopped by us: the exit status says nothing
	m.cmd = nil
}

// Reload sends the broker SIGHUP: it reloads its configuration and, since
// Mosquitto 2.0, its listeners' certificates and CRLs.
func (m *Mosquitto) Reload() error { return m.cmd.Process.Signal(syscall.SIGHUP) }

// Restart starts the broker again on the same port after Stop.
func (m *Mosquitto) Restart(t testing.TB) {
	t.Helper()
	m.Stop()
	m.start(t, Binary(t, "TWINCHAIN_MOSQUITTO", "mosquitto", "apt-get install -y mosquitto"))
}

// URL is the broker's tcp:// URL for paho.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr }

// Package testsvc starts the real servers that tests talk to (Mosquitto,
// InfluxDB, Fabric CA, Chromium) on spare loopback ports, each owned by one
// test and stopped by t.Cleanup.
//
// Binaries are found through environment variables that `make test` sets
// after scripts/test-deps.sh has installed them (TWINCHAIN_MOSQUITTO,
// TWINCHAIN_INFLUXD, TWINCHAIN_FABRIC_CA, TWINCHAIN_CHROMIUM), or on PATH. A
// test whose server is missing skips with a message saying how to get it,
// unless TWINCHAIN_REQUIRE_SERVICES=1 (set by `make test` and CI), where a
// missing server fails the test instead.
package testsvc

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary finds a server binary through envVar, then on PATH under name.
// It skips or fails t when neither has it.
func Binary(t testing.TB, envVar, name, howTo string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	Missing(t, fmt.Sprintf("%s not found (set %s or put %s on PATH; %s)", name, envVar, name, howTo))
	return ""
}

// Missing skips t, or fails it when services are required.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("TWINCHAIN_REQUIRE_SERVICES") == "1" {
		t.Fatalf("required service missing: %s", why)
	}
	t.Skip(why)
}

// FreePort returns a loopback TCP port that was free a moment ago. It picks
// below the kernel's ephemeral range (ip_local_port_range), where no
// outgoing connection can take the port between this check and the server's
// bind, or between a killed server and its restart on the same port (a port
// from "127.0.0.1:0" lies inside that range: CI lost a run to it). One test
// binary never hands out the same port twice.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := portRange()
	for range 200 {
		port := lo + mrand.IntN(hi-lo)
		portsMu.Lock()
		taken := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if taken {
			continue
		}
		l, err := net.Listen("tcp", Addr(port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatalf("free port: none free in %d-%d after 200 tries", lo, hi)
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// portRange is where FreePort picks: from 10000 up to the start of the
// ephemeral range (Linux's default 32768 when it cannot be read).
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	if f := strings.Fields(string(b)); len(f) == 2 {
		if n, err := strconv.Atoi(f[0]); err == nil && n > lo+1000 {
			hi = n
		}
	}
	return lo, hi
}

// WaitTCP waits until addr accepts a connection or the timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %s: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addr is 127.0.0.1:port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// WaitHTTP waits until a GET of url answers 200 or the timeout passes.
func WaitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/edge/agentkey"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// binaries builds edge-agent and firmware-sim once per test run.
func binaries(t *testing.T) (agent, sim, twinService string) {
	t.Helper()
	dir := testsvc.Programs(t, "edge-agent", "firmware-sim", "twin-service")
	return filepath.Join(dir, "edge-agent"), filepath.Join(dir, "firmware-sim"), filepath.Join(dir, "twin-service")
}

// proc is a child process owned by a test.
type proc struct {
	cmd  *exec.Cmd
	out  *testsvc.Buffer
	done chan error
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &testsvc.Buffer{}, done: make(chan error, 1)}
	p.cmd.Stderr, p.cmd.Stdout = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM and waits; it is safe to call twice.
func (p *proc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 15s of SIGTERM", p.cmd.Path)
	}
	p.done <- nil // later stops return at once
}

var queuedLine = regexp.MustCompile(`msg=queued .*?seq=(\d+) kind=(\w+)`)

// queued returns the sequence numbers a debug-logging agent says it queued.
func (p *proc) queued() map[uint64]wire.Kind {
	out := map[uint64]wire.Kind{}
	for _, m := range queuedLine.FindAllStringSubmatch(p.out.String(), -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		out[n] = wire.Kind(m[2])
	}
	return out
}

// arrival is one message a subscriber received.
type arrival struct {
	env wire.Envelope
	raw []byte
	at  time.Time
}

// subscriber is a paho client with a persistent session that records every
// gateway message.
type subscriber struct {
	mu   sync.Mutex
	msgs []arrival
	bad  []string
	c    paho.Client
}

func subscribe(t *testing.T, brokerURL, clientID string) *subscriber {
	t.Helper()
	s := &subscriber{}
	o := paho.NewClientOptions().AddBroker(brokerURL).SetClientID(clientID).SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetOrderMatters(true)
	o.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(wire.GatewayFilter(), 1, func(_ paho.Client, m paho.Message) {
			raw := append([]byte(nil), m.Payload()...)
			env, err := wire.Decode(raw)
			s.mu.Lock()
			defer s.mu.Unlock()
			if err != nil {
				s.bad = append(s.bad, err.Error())
				return
			}
			s.msgs = append(s.msgs, arrival{env: env, raw: raw, at: time.Now()})
		})
	})
	s.c = paho.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

func (s *subscriber) snapshot() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.msgs...)
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func agentPublicKey(t *testing.T, stateDir string) ed25519.PublicKey {
	t.Helper()
	key, _, err := agentkey.LoadOrCreate(filepath.Join(stateDir, "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	return key.Public().(ed25519.PublicKey)
}

func TestMain(m *testing.M) {
	code := m.Run()
	testsvc.RemovePrograms()
	os.Exit(code)
}

// twinServiceConfig writes a twin-service configuration with an admin API
// token and returns its path and the token.
func twinServiceConfig(t *testing.T, dir string) (path, token string) {
	t.Helper()
	token = "edge-test-admin-token-0123456789"
	sum := sha256.Sum256([]byte(token))
	path = filepath.Join(dir, "twin-service.yaml")
	conf := fmt.Sprintf("auth:\n  tokens:\n    - {name: edge-test, role: admin, sha256: %s}\n", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, token
}

// apiGet GETs base+path with the bearer token and decodes the JSON answer
// into out; it reports whether the answer was 200.
func apiGet(base, token, path string, out any) bool {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	return res.StatusCode == 200 && json.NewDecoder(res.Body).Decode(out) == nil
}

// waitReady waits until twin-service at base answers /readyz.
func waitReady(t *testing.T, base string) {
	t.Helper()
	waitUntil(t, 30*time.Second, "twin-service ready", func() bool {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	})
}

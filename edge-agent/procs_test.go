package main

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/edge/agentkey"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// binaries builds edge-agent and firmware-sim once per test run.
func binaries(t *testing.T) (agent, sim string) {
	t.Helper()
	dir := testsvc.Programs(t, "edge-agent", "firmware-sim")
	return filepath.Join(dir, "edge-agent"), filepath.Join(dir, "firmware-sim")
}

// stop stops p with SIGTERM and fails t unless it exits cleanly.
func stop(t *testing.T, p *testsvc.Process) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Errorf("%s after SIGTERM: %v", p.Name, err)
	}
}

var queuedLine = regexp.MustCompile(`msg=queued .*?seq=(\d+) kind=(\w+)`)

// queued returns the sequence numbers a debug-logging agent says it queued.
func queued(p *testsvc.Process) map[uint64]wire.Kind {
	out := map[uint64]wire.Kind{}
	for _, m := range queuedLine.FindAllStringSubmatch(p.Output.String(), -1) {
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

package mqttsub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/ingest"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// flakyStore stands in for the ingest whose store fails once (a full disk
// cannot be produced on demand here); everything else is real: Mosquitto,
// paho on both sides, the subscriber's queue, workers and acknowledgements.
type flakyStore struct {
	mu       sync.Mutex
	failures int
	seen     [][]byte
	stored   chan []byte
}

func (f *flakyStore) Submit(_ ingest.Source, topic string, payload []byte) (ingest.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, bytes.Clone(payload))
	if f.failures > 0 {
		f.failures--
		return ingest.Outcome{}, errors.New("disk full")
	}
	f.stored <- bytes.Clone(payload)
	return ingest.Outcome{Pos: uint64(len(f.seen))}, nil
}

// runSubscriber runs a Subscriber with cfg into store until the test ends.
func runSubscriber(t *testing.T, cfg Config, store Submitter) *Subscriber {
	t.Helper()
	sub, err := New(cfg, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return sub
}

// TestUnstoredRedelivered: a message the store could not take is not
// acknowledged; the subscriber reconnects and the broker delivers it again.
func TestUnstoredRedelivered(t *testing.T) {
	mosq := testsvc.StartMosquitto(t, "")
	store := &flakyStore{failures: 1, stored: make(chan []byte, 10)}
	sub := runSubscriber(t, Config{URL: mosq.URL(), Username: "twin-service@test", Workers: 2}, store)
	testsvc.Eventually(t, 20*time.Second, "the subscriber ready", sub.Ready)
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("publisher"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(0)
	payload := []byte(`{"the":"message"}`)
	if tok := pub.Publish(wire.Topic("gw-1", wire.KindStatus), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case got := <-store.stored:
		if !bytes.Equal(got, payload) {
			t.Errorf("stored %q, want %q", got, payload)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the message was not delivered again after the store failed")
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.seen) != 2 {
		t.Errorf("Submit calls = %d, want 2 (the failed one and the redelivery)", len(store.seen))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		fail bool
	}{
		{Config{URL: "tcp://127.0.0.1:1883", Username: "twin-service@a"}, false},
		{Config{URL: "tcp://127.0.0.1:1883", Username: "svc", ClientID: "twin-service@a"}, false},
		{Config{URL: "ssl://127.0.0.1:8883", CertFile: "c.pem", KeyFile: "c.key", ClientID: "twin-service@a"}, false},
		{Config{URL: "tcp://127.0.0.1:1883"}, true},                                  // no credential
		{Config{URL: "tcp://127.0.0.1:1883", Username: "twin-service"}, true},        // a gateway could take the client id
		{Config{URL: "tcp://127.0.0.1:1883", Username: "a", ClientID: "gw-1"}, true}, // the same
		{Config{URL: "tcp://127.0.0.1:1883", Username: "twin/service@a"}, true},
		{Config{URL: "ssl://127.0.0.1:8883", CertFile: "c.pem"}, true},
		{Config{}, true},
		{Config{URL: "127.0.0.1:1883", Username: "twin-service@a"}, true},
		{Config{URL: "http://x:1", Username: "twin-service@a"}, true},
		{Config{URL: "tcp://x:1", Username: "twin-service@a", Workers: -1}, true},
	} {
		if err := tc.c.Validate(); (err != nil) != tc.fail {
			t.Errorf("Validate(%+v) = %v, want failure %v", tc.c, err, tc.fail)
		}
	}
}

// TestReadyNeedsFlow: with an ACL that lets twin-service's user connect
// but not read the gateway topics (only a gateway pattern, as an ACL
// written for gateways alone has), the subscriber never becomes ready; with
// deploy/mosquitto's service ACL it does, through its probe alone.
func TestReadyNeedsFlow(t *testing.T) {
	tool, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		testsvc.Missing(t, "mosquitto_passwd not found (apt-get install -y mosquitto)")
	}
	dir := t.TempDir()
	const user, pw = "twin-service@test", "s3cret"
	if out, err := exec.Command(tool, "-c", "-b", filepath.Join(dir, "passwd"), user, pw).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	shipped, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "mosquitto", "acl-service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, acl string
		ready     bool
	}{
		{"gateway pattern only", "pattern write " + wire.GatewayACLPattern() + "\n", false},
		{"deploy/mosquitto/acl-service", string(shipped), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acl := filepath.Join(t.TempDir(), "acl")
			if err := os.WriteFile(acl, []byte(tc.acl), 0o644); err != nil {
				t.Fatal(err)
			}
			mosq := testsvc.StartMosquitto(t, fmt.Sprintf("user root\nallow_anonymous false\npassword_file %s\nacl_file %s\n", filepath.Join(dir, "passwd"), acl))
			sub := runSubscriber(t, Config{URL: mosq.URL(), Username: user, Password: pw, Workers: 1}, &flakyStore{stored: make(chan []byte, 10)})
			if tc.ready {
				testsvc.Eventually(t, 20*time.Second, "the subscriber ready", sub.Ready)
				return
			}
			testsvc.Eventually(t, 20*time.Second, "the subscriber connected", sub.client.IsConnectionOpen)
			// Fixed wait: what is checked is that something does not
			// happen; two probe intervals give a probe every chance.
			time.Sleep(2 * ProbeInterval)
			if sub.Ready() {
				t.Error("ready although the broker lets it read nothing")
			}
		})
	}
}

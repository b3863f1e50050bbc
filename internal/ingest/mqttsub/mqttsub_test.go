package mqttsub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
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

// TestUnstoredRedelivered: a message the store could not take is not
// acknowledged; the subscriber reconnects and the broker delivers it again.
func TestUnstoredRedelivered(t *testing.T) {
	mosq := testsvc.StartMosquitto(t, "")
	store := &flakyStore{failures: 1, stored: make(chan []byte, 10)}
	sub, err := New(Config{URL: mosq.URL(), ClientID: "twin-service-test", Workers: 2}, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	testsvc.Eventually(t, 20*time.Second, "the subscriber connected", sub.Connected)
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
		{Config{URL: "tcp://127.0.0.1:1883"}, false},
		{Config{}, true},
		{Config{URL: "127.0.0.1:1883"}, true},
		{Config{URL: "http://x:1"}, true},
		{Config{URL: "tcp://x:1", Workers: -1}, true},
	} {
		if err := tc.c.Validate(); (err != nil) != tc.fail {
			t.Errorf("Validate(%+v) = %v, want failure %v", tc.c, err, tc.fail)
		}
	}
}

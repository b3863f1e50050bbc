package main

import (
	"crypto/ed25519"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestParkedUntilEnrolled: in external mode Mosquitto acknowledges a
// message to its gateway before twin-service sees it, so a message
// rejected for a reason that can go away must not be lost. 40 signed
// messages of a gateway not yet enrolled are rejected as unknown_gateway
// and parked, stay parked across a restart of twin-service, and are stored
// once each as soon as the gateway is registered over the API.
func TestParkedUntilEnrolled(t *testing.T) {
	mosq := testsvc.StartMosquitto(t, "")
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Tokens: []testsvc.Token{viewer},
		Args: []string{"-mqtt-mode", "external", "-mqtt-url", mosq.URL(), "-mqtt-username", "twin-park@test"}})
	c := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("gw-late").SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	key := seededKey(71)
	now := time.Now().UTC()
	const n = 40
	for i := range n {
		data, err := wire.Seal(key, "gw-late", uint64(i+1), now.Add(time.Duration(i)*time.Millisecond), wire.KindStatus, wire.Status{State: wire.StateOnline})
		if err != nil {
			t.Fatal(err)
		}
		if tok := c.Publish(wire.Topic("gw-late", wire.KindStatus), 1, false, data); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	gauge := func() int { return int(metric(t, svc.URL, testToken, "twinchain_mqtt_parked")) }
	testsvc.Eventually(t, 60*time.Second, "every message parked", func() bool { return gauge() == n })
	svc.Restart(t)
	testsvc.Eventually(t, 30*time.Second, "the parked messages found after a restart", func() bool { return gauge() == n })

	if code := apiDo(t, svc, http.MethodPut, "/gateways/gw-late", registry.Gateway{ID: "gw-late", PublicKey: key.Public().(ed25519.PublicKey), Site: "s1"}, nil); code/100 != 2 {
		t.Fatalf("PUT gw-late = %d", code)
	}
	var stats struct {
		Rejected map[string]uint64 `json:"rejected"`
		Accepted uint64            `json:"accepted"`
	}
	testsvc.Eventually(t, 60*time.Second, "the parked messages stored", func() bool {
		getJSON(t, svc.URL+"/api/v1/stats/ingest", &stats)
		return stats.Accepted == n && gauge() == 0
	})
	time.Sleep(time.Second) // a negative check: nothing is stored twice
	getJSON(t, svc.URL+"/api/v1/stats/ingest", &stats)
	if stats.Accepted != n || stats.Rejected["duplicate"] != 0 {
		t.Errorf("accepted %d, rejected %v; want %d accepted once each", stats.Accepted, stats.Rejected, n)
	}
}

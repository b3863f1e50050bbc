package main

import (
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestAttackAlertsNameTheSource is the attack of issue 11 through an
// external broker that lets anyone publish: 900 unsigned messages under
// 300 made-up gateway ids (and 30 forgeries claiming a real gateway) opened
// one alert per claimed id. The rejections are counted per source now, and
// each kind raises one alert naming the source, not the claimed gateways;
// the real gateway's traffic is still applied.
func TestAttackAlertsNameTheSource(t *testing.T) {
	mosq := testsvc.StartMosquitto(t, "")
	realKey := seededKey(61)
	regPath := filepath.Join(t.TempDir(), "registry.json")
	if err := registry.WriteFile(regPath, registry.File{Gateways: []registry.Gateway{
		{ID: "gw-real", PublicKey: realKey.Public().(ed25519.PublicKey), Site: "s1"},
	}}); err != nil {
		t.Fatal(err)
	}
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Tokens: []testsvc.Token{viewer}, Registry: regPath,
		Args: []string{"-mqtt-mode", "external", "-mqtt-url", mosq.URL(), "-mqtt-username", "twin-service-source@test"}})

	c := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("attacker").SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	pub := func(gw string, payload []byte) {
		t.Helper()
		if tok := c.Publish(wire.Topic(gw, wire.KindStatus), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	now := time.Now().UTC()
	forger := seededKey(62)
	for i := range 900 {
		gw := fmt.Sprintf("gw-fake-%03d", i%300)
		data, err := wire.Seal(forger, gw, uint64(i+1), now, wire.KindStatus, wire.Status{State: wire.StateOnline})
		if err != nil {
			t.Fatal(err)
		}
		pub(gw, data)
	}
	for i := range 30 {
		data, err := wire.Seal(forger, "gw-real", uint64(i+1), now, wire.KindStatus, wire.Status{State: wire.StateOnline})
		if err != nil {
			t.Fatal(err)
		}
		pub("gw-real", data)
	}
	good, err := wire.Seal(realKey, "gw-real", 1, now, wire.KindStatus, wire.Status{State: wire.StateOnline, AgentVersion: "real"})
	if err != nil {
		t.Fatal(err)
	}
	pub("gw-real", good)

	var stats struct {
		Rejected map[string]uint64 `json:"rejected"`
		Accepted uint64            `json:"accepted"`
	}
	testsvc.Eventually(t, 60*time.Second, "930 rejections and the real message", func() bool {
		getJSON(t, svc.URL+"/api/v1/stats/ingest", &stats)
		return stats.Rejected["unknown_gateway"] == 900 && stats.Rejected["bad_signature"] == 30 && stats.Accepted == 1
	})
	type alertItem struct {
		Type    string `json:"type"`
		Asset   string `json:"asset"`
		Summary string `json:"summary"`
		Count   int    `json:"count"`
	}
	var alerts struct{ Items []alertItem }
	testsvc.Eventually(t, 30*time.Second, "the unknown_gateway and bad_signatures alerts", func() bool {
		getJSON(t, svc.URL+"/api/v1/alerts?limit=500", &alerts)
		n := 0
		for _, a := range alerts.Items {
			if a.Type == "unknown_gateway" || a.Type == "bad_signatures" {
				n++
			}
		}
		return n >= 2
	})
	time.Sleep(2 * time.Second) // a negative check: no more alerts come from the same burst
	getJSON(t, svc.URL+"/api/v1/alerts?limit=500", &alerts)
	count := map[string]int{}
	for _, a := range alerts.Items {
		count[a.Type]++
		if strings.HasPrefix(a.Asset, "gw-fake") || a.Asset == "gw-real" {
			t.Errorf("alert %s names the claimed gateway %s, not the source: %s", a.Type, a.Asset, a.Summary)
		}
		if (a.Type == "unknown_gateway" || a.Type == "bad_signatures") && !strings.Contains(a.Summary, "external-broker") {
			t.Errorf("alert %s does not name the source: %s", a.Type, a.Summary)
		}
	}
	if count["unknown_gateway"] != 1 || count["bad_signatures"] != 1 {
		t.Errorf("alerts by type = %v, want one unknown_gateway and one bad_signatures (%+v)", count, alerts.Items)
	}
	// The burst went on for 300 times the detector's count (3): each
	// further count is a finding, merged into the one open alert.
	for _, a := range alerts.Items {
		if a.Type == "unknown_gateway" && a.Count < 2 {
			t.Errorf("unknown_gateway alert count = %d, want the burst's further findings merged into it", a.Count)
		}
	}
	var gwTwin struct {
		Health struct{ State string } `json:"health"`
	}
	if code := getJSON(t, svc.URL+"/api/v1/assets/gw-real", &gwTwin); code != 200 {
		t.Errorf("GET gw-real = %d, want its twin (its own message applied)", code)
	}
}

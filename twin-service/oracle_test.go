package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
)

func seededKey(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }

// apiDo sends an API request with the service's admin token and returns the
// status.
func apiDo(t *testing.T, svc *testsvc.TwinService, method, path string, body any, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, svc.URL+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+svc.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// mqttConnect connects as gateway gw with key k; lost (if not nil) gets the
// connection's end.
func mqttConnect(svc *testsvc.TwinService, gw string, k ed25519.PrivateKey, lost chan<- error) (paho.Client, error) {
	o := testsvc.GatewayOptions(svc.MQTTURL(), gw, k).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	if lost != nil {
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", gw)
	}
	return c, tok.Error()
}

// TestRegistryEditsSurviveRestart: the registry file seeds the registry
// once; revoking a gateway over the API closes its live MQTT session at
// once, and that revocation and a re-key stay in force after a restart
// (the file is not re-applied over them).
func TestRegistryEditsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	keyA, keyB, newB := seededKey(21), seededKey(22), seededKey(23)
	regPath := filepath.Join(dir, "registry.json")
	if err := registry.WriteFile(regPath, registry.File{Gateways: []registry.Gateway{
		{ID: "gw-a", PublicKey: keyA.Public().(ed25519.PublicKey), Site: "s1"},
		{ID: "gw-b", PublicKey: keyB.Public().(ed25519.PublicKey), Site: "s1"},
	}}); err != nil {
		t.Fatal(err)
	}
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{DataDir: filepath.Join(dir, "data"), Registry: regPath})
	lost := make(chan error, 1)
	var c paho.Client
	testsvc.Eventually(t, 20*time.Second, "gw-a connects (registry file imported)", func() bool {
		var err error
		c, err = mqttConnect(svc, "gw-a", keyA, lost)
		return err == nil
	})
	defer c.Disconnect(0)

	if st := apiDo(t, svc, http.MethodDelete, "/gateways/gw-a", nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE gw-a = %d, want 204", st)
	}
	select {
	case <-lost:
	case <-time.After(20 * time.Second):
		t.Fatal("revoking gw-a over the API did not close its MQTT session")
	}
	rekey := registry.Gateway{ID: "gw-b", PublicKey: newB.Public().(ed25519.PublicKey), Site: "s1", Assets: []string{}}
	if st := apiDo(t, svc, http.MethodPut, "/gateways/gw-b", rekey, nil); st != http.StatusOK {
		t.Fatalf("PUT gw-b (re-key) = %d, want 200", st)
	}

	svc.Restart(t)
	var list struct {
		Items []registry.Gateway `json:"items"`
	}
	if st := apiDo(t, svc, http.MethodGet, "/gateways", nil, &list); st != http.StatusOK {
		t.Fatalf("GET /gateways = %d", st)
	}
	if len(list.Items) != 1 || list.Items[0].ID != "gw-b" || !list.Items[0].PublicKey.Equal(newB.Public().(ed25519.PublicKey)) {
		t.Errorf("gateways after restart = %+v, want only gw-b with its new key", list.Items)
	}
	for _, tc := range []struct {
		gw   string
		key  ed25519.PrivateKey
		want bool
	}{{"gw-a", keyA, false}, {"gw-b", keyB, false}, {"gw-b", newB, true}} {
		c, err := mqttConnect(svc, tc.gw, tc.key, nil)
		if (err == nil) != tc.want {
			t.Errorf("connect %s after restart: %v, want connected=%v", tc.gw, err, tc.want)
		}
		if err == nil {
			c.Disconnect(0)
		}
	}
}

// TestStopWhileGatewaysChurn: twin-service stops cleanly, and in bounded
// time, while gateways connect and disconnect (mochi v2.7.9's Close could
// deadlock there: issue 488).
func TestStopWhileGatewaysChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service three times")
	}
	dir := t.TempDir()
	const n = 8
	var gws []registry.Gateway
	for i := range n {
		gws = append(gws, registry.Gateway{ID: fmt.Sprintf("gw-churn-%d", i), PublicKey: seededKey(byte(40 + i)).Public().(ed25519.PublicKey), Site: "s1"})
	}
	regPath := filepath.Join(dir, "registry.json")
	if err := registry.WriteFile(regPath, registry.File{Gateways: gws}); err != nil {
		t.Fatal(err)
	}
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{DataDir: filepath.Join(dir, "data"), Registry: regPath})
	for round := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var connects sync.Map
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					c, err := mqttConnect(svc, gws[i].ID, seededKey(byte(40+i)), nil)
					if err == nil {
						connects.Store(i, true)
						c.Disconnect(uint(i % 3))
					}
				}
			}()
		}
		testsvc.Eventually(t, 30*time.Second, "every gateway connected once", func() bool {
			k := 0
			connects.Range(func(any, any) bool { k++; return true })
			return k == n
		})
		start := time.Now()
		err := svc.Stop()
		took := time.Since(start)
		cancel()
		wg.Wait()
		if err != nil {
			t.Fatalf("round %d: twin-service did not stop cleanly while gateways churned (after %s): %v\n%s", round, took, err, testsvc.Tail(svc.Output(), 8<<10))
		}
		t.Logf("round %d: stopped in %s", round, took.Round(time.Millisecond))
		if round < 2 {
			svc.Restart(t)
		}
	}
}

package scenario

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"twinchain/internal/detect/workorder"
	"twinchain/internal/testsvc"
)

// TestWebhookOutageAcrossRestart: alerts raised while the webhook receiver
// is down wait in the durable outbox, survive a SIGKILL of twin-service and
// a restart, and arrive (signed, once each) when the receiver comes back.
func TestWebhookOutageAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service")
	}
	h := newHook(t, "change-me", false) // down
	xid, err := Parse("xid.yaml", []byte(`
name: xid-short
fleet: {sites: 1, servers: 2, gpus: 4, seed: 5}
duration: 2m
speed: 60
steps:
  - {at: 1m, action: xid, target: srv-s1-001.gpu1, xid: 95}
expect:
  - {type: gpu_xid, asset: srv-s1-001.gpu1}
`))
	if err != nil {
		t.Fatal(err)
	}
	fl, err := xid.NewFleet()
	if err != nil {
		t.Fatal(err)
	}
	svc := startService(t, t.TempDir(), fl.Registry(), "http://"+h.addr+"/hooks")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	rep, err := Run(ctx, xid, Options{Broker: svc.MQTTURL(), API: svc.URL, Tokens: svc.tokens, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if o, err := Wait(ctx, svc.URL, svc.tokens.Read, xid, rep, 20*time.Second, 0); err != nil || len(o.Missing) > 0 {
		t.Fatalf("before the restart: %v %v", o, err)
	}
	// A few failed delivery attempts, then a crash.
	testsvc.Eventually(t, 20*time.Second, "two failed webhook deliveries", func() bool {
		return metric(t, svc.URL, svc.tokens.Read, "twinchain_detect_delivery_failures_total") >= 2
	})
	svc.Kill()
	svc.Restart(t)

	// A second alert after the restart, receiver still down.
	forged, err := Parse("forge.yaml", []byte(`
name: forge-short
fleet: {sites: 1, servers: 2, gpus: 4, seed: 5}
duration: 1m
speed: 60
steps:
  - {at: 30s, action: forge, target: gw-srv-s1-002, count: 4}
expect:
  - {type: bad_signatures, asset: gw-srv-s1-002}
  - {type: gpu_xid, asset: srv-s1-001.gpu1}
`))
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Run(ctx, forged, Options{Broker: svc.MQTTURL(), API: svc.URL, Tokens: svc.tokens, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if o, err := Wait(ctx, svc.URL, svc.tokens.Read, forged, rep, 20*time.Second, 0); err != nil || len(o.Missing) > 0 {
		t.Fatalf("after the restart: %v %v", o, err)
	}
	if n := h.got("gpu_xid srv-s1-001.gpu1") + h.got("bad_signatures gw-srv-s1-002"); n != 0 {
		t.Fatalf("%d deliveries while the receiver was down", n)
	}
	h.up(t)
	for _, key := range []string{"gpu_xid srv-s1-001.gpu1", "bad_signatures gw-srv-s1-002"} {
		testsvc.Eventually(t, 30*time.Second, "the webhook to get "+key, func() bool { return h.got(key) > 0 })
		if n := h.got(key); n != 1 {
			t.Errorf("after the receiver came back: %d signed 'opened' deliveries of %s, want 1", n, key)
		}
	}
	testsvc.Eventually(t, 30*time.Second, "both critical alerts at the Slack-shaped sink", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.slack >= 2
	})
	h.mu.Lock()
	bad, slack := h.bad, h.slack
	for id, n := range h.ids {
		if n != 1 {
			t.Errorf("delivery %s received %d times, want once", id, n)
		}
	}
	h.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d deliveries failed the HMAC check", bad)
	}
	if slack < 2 {
		t.Errorf("the Slack-shaped sink delivered %d notifications, want both critical alerts", slack)
	}
}

// TestWorkOrderAPIAndCoverage files a work order through the API, checks
// the two-person rule there, and that the approved order records the
// change it covered (and no alert opens).
func TestWorkOrderAPIAndCoverage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service")
	}
	f, err := Parse("wo.yaml", []byte(`
name: wo
fleet: {sites: 1, servers: 2, gpus: 4, seed: 5}
duration: 2m
speed: 60
work_orders:
  - {asset: srv-s1-002, changes: [{field: firmware.bmc, to: "24.09.17"}, {field: firmware.bios, to: "1.6.0"}], from: 0s, to: 2m}
steps:
  - {at: 1m, action: flash_firmware, target: srv-s1-002, part: bios, version: "1.6.0"}
expect: []
`))
	if err != nil {
		t.Fatal(err)
	}
	fl, _ := f.NewFleet()
	h := newHook(t, "change-me", true)
	svc := startService(t, t.TempDir(), fl.Registry(), "http://"+h.addr+"/hooks")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Roles and the two-person rule over HTTP, with the signed-in identity
	// (the body's "by" does not count when signed in).
	var wo workorder.Order
	order := map[string]any{"asset": "srv-s1-001", "changes": []map[string]string{{"field": "firmware.bios"}}, "start": time.Now(), "end": time.Now().Add(time.Hour), "by": "someone-else"}
	if err := postJSON(ctx, svc.URL+"/api/v1/workorders", svc.tokens.Approve, order, &wo); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("open a work order as security = %v, want 403", err)
	}
	if err := postJSON(ctx, svc.URL+"/api/v1/workorders", svc.manager, order, &wo); err != nil {
		t.Fatal(err)
	}
	if wo.CreatedBy != "sim-manager" {
		t.Errorf("created_by = %q, want the signed-in sim-manager", wo.CreatedBy)
	}
	err = postJSON(ctx, svc.URL+"/api/v1/workorders/"+wo.ID+"/approve", svc.manager, map[string]string{"by": "someone-else"}, &wo)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("approve by the creator = %v, want 403", err)
	}
	if err := postJSON(ctx, svc.URL+"/api/v1/workorders/"+wo.ID+"/approve", svc.tokens.Approve, nil, &wo); err != nil || wo.ApprovedBy != "sim-security" {
		t.Errorf("approve by security = %+v, %v, want approved by sim-security", wo, err)
	}
	rep, err := Run(ctx, f, Options{Broker: svc.MQTTURL(), API: svc.URL, Tokens: svc.tokens})
	if err != nil {
		t.Fatal(err)
	}
	o, err := Wait(ctx, svc.URL, svc.tokens.Read, f, rep, 5*time.Second, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !o.OK() {
		t.Errorf("covered flash raised alerts: %s", o)
	}
	var page struct{ Items []workorder.Order }
	if err := getJSON(svc.URL+"/api/v1/workorders?asset=srv-s1-002", svc.tokens.Read, &page); err != nil || len(page.Items) != 1 {
		t.Fatalf("GET workorders = %+v, %v", page, err)
	}
	got := page.Items[0]
	var events struct {
		Items []struct {
			Type string `json:"type"`
			Note string `json:"note"`
		} `json:"items"`
	}
	if err := getJSON(svc.URL+"/api/v1/assets/srv-s1-002/events?limit=1000", svc.tokens.Read, &events); err != nil {
		t.Fatal(err)
	}
	noted := false
	for _, e := range events.Items {
		noted = noted || e.Type == "firmware_changed" && strings.Contains(e.Note, "covered by work order "+got.ID)
	}
	if !noted {
		t.Errorf("no firmware_changed event of srv-s1-002 notes %s: %+v", got.ID, events.Items)
	}
	if got.State != workorder.Approved || len(got.Covered) != 1 || got.Covered[0].Field != "firmware.bios" || got.Covered[0].Value != "1.6.0" || got.Covered[0].Event == 0 {
		t.Errorf("work order after the flash = %+v, want approved, covering event firmware.bios -> 1.6.0", got)
	}
}

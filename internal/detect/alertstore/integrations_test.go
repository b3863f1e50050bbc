package alertstore

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/testsvc"
)

// runDispatcher starts a dispatcher for s with a fast tick until the test ends.
func runDispatcher(t *testing.T, s *Store) *Dispatcher {
	t.Helper()
	d := NewDispatcher(s, nil, slog.New(slog.DiscardHandler), time.Now)
	d.tick = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// amGettable is the part of Alertmanager's gettableAlert the test reads.
type amGettable struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State      string   `json:"state"`
		SilencedBy []string `json:"silencedBy"`
	} `json:"status"`
}

func amAlerts(t *testing.T, am *testsvc.Alertmanager) map[string]amGettable {
	t.Helper()
	resp, err := http.Get(am.URL + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []amGettable
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("GET /api/v2/alerts: %v", err)
	}
	out := map[string]amGettable{}
	for _, a := range list {
		out[a.Labels["asset"]] = a
	}
	return out
}

// TestAlertmanagerSink posts alerts to a real Alertmanager through the
// outbox: they arrive with their labels, survive an Alertmanager outage,
// a silence made in Alertmanager applies to them, and resolving an alert
// resolves it there.
func TestAlertmanagerSink(t *testing.T) {
	am := testsvc.StartAlertmanager(t)
	cfg := alert.DefaultConfig()
	cfg.Sinks = map[string]alert.SinkConfig{"am": {Kind: alert.SinkAlertmanager, URL: am.URL, Labels: map[string]string{"env": "test"},
		DashboardURL: "http://twin.example:8080/", BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}}
	cfg.Routes = []alert.Route{{Name: "all", Sinks: []string{"am"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, db := open(t, filepath.Join(t.TempDir(), "a.db"), cfg, time.Now)
	defer db.Close()
	d := runDispatcher(t, s)
	res, err := s.Apply([]detect.Finding{finding(detect.TypeXID, "gpu-1", detect.Critical, 0), finding(detect.TypeGeofenceExit, "gpu-2", detect.Warning, 1)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 30*time.Second, "both alerts in Alertmanager", func() bool { return len(amAlerts(t, am)) == 2 })
	got := amAlerts(t, am)["gpu-1"]
	want := map[string]string{"alertname": "twinchain_gpu_xid", "type": "gpu_xid", "severity": "critical", "asset": "gpu-1", "site": "s1", "env": "test", "source": "twinchain"}
	for k, v := range want {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, got.Labels[k], v, got.Labels)
		}
	}
	if got.Labels["alert_id"] == "" || got.Annotations["summary"] != "gpu_xid on gpu-1" || got.Annotations["state"] != "open" || got.Status.State != "active" {
		t.Errorf("Alertmanager has %+v, want alert_id, summary, state open, active", got)
	}
	if d.Failed.Load() != 0 {
		t.Errorf("%d failed deliveries to a healthy Alertmanager", d.Failed.Load())
	}

	// A silence made in Alertmanager applies to twinchain's alert.
	silence := `{"matchers":[{"name":"asset","value":"gpu-2","isRegex":false}],"startsAt":"` + time.Now().UTC().Format(time.RFC3339) +
		`","endsAt":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `","createdBy":"test","comment":"maintenance"}`
	resp, err := http.Post(am.URL+"/api/v2/silences", "application/json", strings.NewReader(silence))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST silence: %v %v", resp, err)
	}
	resp.Body.Close()
	testsvc.Eventually(t, 30*time.Second, "gpu-2 suppressed by the silence", func() bool { return amAlerts(t, am)["gpu-2"].Status.State == "suppressed" })

	// Resolving in twinchain resolves it in Alertmanager (the resolved
	// alert leaves the active list).
	var xid string
	for _, a := range res.Opened {
		if a.Asset == "gpu-1" {
			xid = a.ID
		}
	}
	if _, err := s.Resolve(xid, "ada", "driver reloaded"); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 30*time.Second, "gpu-1 resolved in Alertmanager", func() bool { _, ok := amAlerts(t, am)["gpu-1"]; return !ok })
	testsvc.Eventually(t, 10*time.Second, "outbox drained", func() bool { return s.OutboxLen() == 0 })
}

// TestAlertmanagerSinkOutage keeps notifications while Alertmanager is
// unreachable and delivers them when it answers.
func TestAlertmanagerSinkOutage(t *testing.T) {
	port := testsvc.FreePort(t)
	cfg := alert.DefaultConfig()
	cfg.Sinks = map[string]alert.SinkConfig{"am": {Kind: alert.SinkAlertmanager, URL: "http://" + testsvc.Addr(port), BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}}
	cfg.Routes = []alert.Route{{Name: "all", Sinks: []string{"am"}}}
	s, db := open(t, filepath.Join(t.TempDir(), "a.db"), cfg, time.Now)
	defer db.Close()
	d := runDispatcher(t, s)
	if _, err := s.Apply([]detect.Finding{finding(detect.TypeXID, "gpu-1", detect.Critical, 0)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 30*time.Second, "failed attempts while nothing listens", func() bool { return d.Failed.Load() >= 2 })
	if s.OutboxLen() != 1 {
		t.Fatalf("outbox holds %d, want the 1 undelivered notification", s.OutboxLen())
	}
	testsvc.StartAlertmanagerOn(t, port)
	testsvc.Eventually(t, 30*time.Second, "delivered after Alertmanager started", func() bool { return s.OutboxLen() == 0 })
}

// TestSyslogSink sends alerts to a real rsyslogd over TCP and UDP and
// checks what rsyslog parsed: facility, severity, app-name, msgid,
// structured data (escaped) and the JSON payload; over TCP an alert raised
// while rsyslog restarts is kept in the outbox and delivered.
func TestSyslogSink(t *testing.T) {
	rs := testsvc.StartRsyslog(t)
	cfg := alert.DefaultConfig()
	cfg.Sinks = map[string]alert.SinkConfig{
		"siem": {Kind: alert.SinkSyslog, URL: "tcp://" + rs.Addr, Facility: "auth", Hostname: "twin-a", BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		"udp":  {Kind: alert.SinkSyslog, URL: "udp://" + rs.Addr, Hostname: "twin-udp"},
	}
	cfg.Routes = []alert.Route{{Name: "all", Sinks: []string{"siem"}}, {Name: "crit", MinSeverity: detect.Critical, Sinks: []string{"udp"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, db := open(t, filepath.Join(t.TempDir(), "a.db"), cfg, time.Now)
	defer db.Close()
	d := runDispatcher(t, s)
	f := finding(detect.TypeXID, `gpu-"1"]`, detect.Critical, 0) // characters structured data must escape
	if _, err := s.Apply([]detect.Finding{f, finding(detect.TypeGeofenceExit, "gpu-2", detect.Warning, 1)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 30*time.Second, "three messages in rsyslog", func() bool { return len(rs.Messages(t)) == 3 })
	byHost := map[string][]map[string]string{}
	for _, m := range rs.Messages(t) {
		byHost[m["hostname"]] = append(byHost[m["hostname"]], m)
	}
	if len(byHost["twin-a"]) != 2 || len(byHost["twin-udp"]) != 1 {
		t.Fatalf("rsyslog got %v, want 2 over TCP from twin-a and 1 over UDP from twin-udp", byHost)
	}
	var crit map[string]string
	for _, m := range byHost["twin-a"] {
		if m["severity"] == "crit" {
			crit = m
		}
	}
	if crit == nil {
		t.Fatalf("no crit message over TCP: %v", byHost["twin-a"])
	}
	if crit["facility"] != "auth" || crit["app-name"] != "twin-service" || crit["msgid"] != "opened" {
		t.Errorf("rsyslog parsed %v, want facility auth, app-name twin-service, msgid opened", crit)
	}
	sd := crit["structured-data"]
	if !strings.HasPrefix(sd, "[twinchain@32473 ") || !strings.Contains(sd, `asset="gpu-\"1\"\]"`) || !strings.Contains(sd, `severity="critical"`) {
		t.Errorf("structured data %s, want SD-ID twinchain@32473 with the asset escaped and the severity", sd)
	}
	var p SyslogPayload
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(crit["msg"]), "\uFEFF")), &p); err != nil {
		t.Fatalf("msg %q is not the JSON payload: %v", crit["msg"], err)
	}
	if p.Schema != "twinchain.alert/1" || p.Asset != f.Asset || p.Type != detect.TypeXID || p.Severity != detect.Critical || p.State != alert.Open || p.ID == "" {
		t.Errorf("payload %+v, want schema twinchain.alert/1 for the open critical xid on %s", p, f.Asset)
	}
	if byHost["twin-udp"][0]["severity"] != "crit" || byHost["twin-udp"][0]["facility"] != "local0" {
		t.Errorf("UDP message %v, want crit on the default facility local0", byHost["twin-udp"][0])
	}

	// The receiver restarts; an alert raised while it is down waits in the
	// outbox and arrives over a new connection.
	rs.Restart(t, func() {
		if _, err := s.Apply([]detect.Finding{finding(detect.TypeOverheating, "gpu-3", detect.Warning, 2)}, nil, nil); err != nil {
			t.Fatal(err)
		}
		testsvc.Eventually(t, 30*time.Second, "a failed attempt while rsyslog is down", func() bool { return d.Failed.Load() > 0 })
	})
	testsvc.Eventually(t, 30*time.Second, "the alert raised while rsyslog was down", func() bool {
		for _, m := range rs.Messages(t) {
			if strings.Contains(m["structured-data"], `asset="gpu-3"`) {
				return true
			}
		}
		return false
	})
	testsvc.Eventually(t, 10*time.Second, "outbox drained", func() bool { return s.OutboxLen() == 0 })
}

func TestSyslogMessageFormat(t *testing.T) {
	n := alert.Notification{Event: "acknowledged", At: time.Date(2026, 12, 5, 8, 0, 0, 123456000, time.UTC),
		Alert: alert.Alert{ID: "a1", Type: detect.TypeSubstitution, Asset: "srv 1", Severity: detect.Warning, State: alert.Acknowledged, Assignee: "bo",
			History: []alert.Transition{{State: alert.Acknowledged, By: "ada", Comment: "on it"}}}}
	b, err := syslogMessage(&n, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	head, payload, ok := strings.Cut(string(b), "] \uFEFF")
	want := `<36>1 2026-12-05T08:00:00.123456Z - twin-service - acknowledged [twinchain@32473 id="a1" event="acknowledged" type="substitution" severity="warning" state="acknowledged" asset="srv 1"`
	if !ok || head != want {
		t.Errorf("syslogMessage head\n got %s\nwant %s", head, want)
	}
	var p SyslogPayload
	if err := json.Unmarshal([]byte(payload), &p); err != nil || p.By != "ada" || p.Comment != "on it" || p.Assignee != "bo" {
		t.Errorf("payload %s (%v), want by ada, comment on it, assignee bo", payload, err)
	}
}

package alertstore

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"twinchain/internal/detect/alert"
	"twinchain/internal/testsvc"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/detect"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for the store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, path string, cfg alert.Config, now func() time.Time) (*Store, *bolt.DB) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(db, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func finding(typ detect.Type, asset string, sev detect.Severity, sec int) detect.Finding {
	return detect.Finding{Type: typ, Asset: asset, Site: "s1", Severity: sev, Time: t0.Add(time.Duration(sec) * time.Second), Summary: string(typ) + " on " + asset,
		Evidence: detect.Evidence{Values: map[string]string{"n": time.Duration(sec).String()}}}
}

func TestDedupLifecycleAndList(t *testing.T) {
	clk := &clock{t: t0}
	s, db := open(t, filepath.Join(t.TempDir(), "a.db"), alert.DefaultConfig(), clk.now)
	defer db.Close()
	res, err := s.Apply([]detect.Finding{
		finding(detect.TypeXID, "g1", detect.Warning, 0),
		finding(detect.TypeXID, "g1", detect.Critical, 5),
		finding(detect.TypeXID, "g2", detect.Critical, 6),
		finding(detect.TypeOverheating, "g1", detect.Critical, 7),
	}, nil, map[string]uint64{"events": 42})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Opened) != 3 || len(res.Updated) != 1 {
		t.Fatalf("Apply opened %d, updated %d, want 3 and 1", len(res.Opened), len(res.Updated))
	}
	if pos, _ := s.Cursor("events"); pos != 42 {
		t.Errorf("Cursor(events) = %d, want 42", pos)
	}
	a, err := s.Get(res.Opened[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Count != 2 || a.Severity != detect.Critical || !a.FirstSeen.Equal(t0) || !a.LastSeen.Equal(t0.Add(5*time.Second)) || len(a.Evidence) != 2 {
		t.Errorf("merged alert = count %d severity %v first %v last %v evidence %d, want 2 critical t0 t0+5s 2", a.Count, a.Severity, a.FirstSeen, a.LastSeen, len(a.Evidence))
	}
	if _, err := s.Resolve(a.ID, "", "x"); !errors.Is(err, alert.ErrInvalid) {
		t.Errorf("Resolve without who = %v, want alert.ErrInvalid", err)
	}
	if _, err := s.Acknowledge(a.ID, "sam", "looking"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acknowledge(a.ID, "sam", "again"); !errors.Is(err, alert.ErrConflict) {
		t.Errorf("second Acknowledge = %v, want alert.ErrConflict", err)
	}
	// alert.Acknowledged alerts still absorb findings.
	if res, _ = s.Apply([]detect.Finding{finding(detect.TypeXID, "g1", detect.Critical, 9)}, nil, nil); len(res.Updated) != 1 {
		t.Errorf("finding after ack: updated %d, want 1", len(res.Updated))
	}
	r, err := s.Resolve(a.ID, "sam", "GPU replaced")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != alert.Resolved || len(r.History) != 3 || r.History[2].By != "sam" || r.History[2].Comment != "GPU replaced" {
		t.Errorf("resolved alert history = %+v, want open, acknowledged, resolved by sam", r.History)
	}
	if _, err := s.Resolve(a.ID, "sam", ""); !errors.Is(err, alert.ErrConflict) {
		t.Errorf("Resolve twice = %v, want alert.ErrConflict", err)
	}
	if res, _ = s.Apply([]detect.Finding{finding(detect.TypeXID, "g1", detect.Critical, 30)}, nil, nil); len(res.Opened) != 1 || res.Opened[0].ID == a.ID {
		t.Errorf("finding after resolve = %+v, want a new alert", res)
	}
	items, next, err := s.List(alert.Filter{State: alert.Open}, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || next == "" || items[0].ID != "AL-4" {
		t.Fatalf("List(open, 2) = %d items from %s, next %q, want 2 from AL-4 and a next cursor", len(items), items[0].ID, next)
	}
	rest, next2, _ := s.List(alert.Filter{State: alert.Open}, 2, next)
	if len(rest) != 1 || next2 != "" || rest[0].ID != "AL-2" {
		t.Errorf("List page 2 = %+v, %q, want AL-2 and no cursor", rest, next2)
	}
	if got, _, _ := s.List(alert.Filter{Type: detect.TypeOverheating, Asset: "g1", MinSeverity: detect.Critical}, 10, ""); len(got) != 1 {
		t.Errorf("List(type, asset) = %d items, want 1", len(got))
	}
}

// receiver is a webhook receiver on a fixed loopback port that can go down
// and come back; it checks every signature.
type receiver struct {
	t      *testing.T
	secret []byte
	addr   string
	srv    *http.Server
	mu     sync.Mutex
	got    map[string]alert.Notification // delivery id -> notification
	bad    int
}

func newReceiver(t *testing.T, secret string) *receiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, secret: []byte(secret), addr: l.Addr().String(), got: map[string]alert.Notification{}}
	r.serve(l)
	return r
}

func (r *receiver) serve(l net.Listener) {
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if !alert.VerifySignature(r.secret, req.Header.Get(alert.HeaderTimestamp), body, req.Header.Get(alert.HeaderSignature)) {
			r.mu.Lock()
			r.bad++
			r.mu.Unlock()
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var n alert.Notification
		if err := json.Unmarshal(body, &n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got[req.Header.Get(alert.HeaderDelivery)] = n
		r.mu.Unlock()
	})}
	go r.srv.Serve(l)
}

func (r *receiver) down() { r.srv.Close() }

func (r *receiver) up(t *testing.T) {
	l, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("receiver back on %s: %v", r.addr, err)
	}
	r.serve(l)
}

func (r *receiver) opened() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, n := range r.got {
		if n.Event == "opened" {
			out[n.Alert.Asset] = true
		}
	}
	return out
}

func TestWebhookOutboxSurvivesOutageAndRestart(t *testing.T) {
	rcv := newReceiver(t, "s3cret")
	defer rcv.down()
	cfg := alert.DefaultConfig()
	cfg.Sinks = map[string]alert.SinkConfig{
		"sec":   {Kind: alert.SinkWebhook, URL: "http://" + rcv.addr + "/hook", Secret: "s3cret", BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond},
		"wrong": {Kind: alert.SinkWebhook, URL: "http://" + rcv.addr + "/hook", Secret: "not-the-secret", BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond, MaxAttempts: 2},
	}
	cfg.Routes = []alert.Route{{Name: "all", Sinks: []string{"sec", alert.SinkSSE}}, {Name: "forged", Types: []detect.Type{detect.TypeClone}, Sinks: []string{"wrong"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "a.db")
	s, db := open(t, path, cfg, time.Now)
	log := slog.New(slog.DiscardHandler)
	start := func(s *Store) (*Dispatcher, func()) {
		d := NewDispatcher(s, nil, log, time.Now)
		d.tick = 20 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { d.Run(ctx); close(done) }()
		return d, func() { cancel(); <-done }
	}
	live, cancelLive := s.Hub().Subscribe()
	defer cancelLive()
	_, stop := start(s)
	if _, err := s.Apply([]detect.Finding{finding(detect.TypeXID, "g1", detect.Critical, 0)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 20*time.Second, "g1 delivered", func() bool { return rcv.opened()["g1"] })
	select {
	case n := <-live:
		if n.Event != "opened" || n.Alert.Asset != "g1" {
			t.Errorf("SSE hub got %s %s, want opened g1", n.Event, n.Alert.Asset)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("SSE hub got nothing")
	}

	// The receiver goes down; alerts raised meanwhile wait in the outbox,
	// across a restart of the store and dispatcher.
	rcv.down()
	if _, err := s.Apply([]detect.Finding{finding(detect.TypeXID, "g2", detect.Critical, 1)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 20*time.Second, "a failed attempt", func() bool { return s.OutboxLen() == 1 })
	stop()
	db.Close()
	s, db = open(t, path, cfg, time.Now)
	defer db.Close()
	if _, err := s.Apply([]detect.Finding{finding(detect.TypeSubstitution, "g3", detect.Critical, 2)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	d, stop := start(s)
	defer stop()
	testsvc.Eventually(t, 20*time.Second, "two failed attempts while the receiver is down", func() bool { return d.Failed.Load() >= 2 })
	if got := rcv.opened(); got["g2"] || got["g3"] {
		t.Fatalf("delivered while the receiver was down: %v", got)
	}
	rcv.up(t)
	testsvc.Eventually(t, 20*time.Second, "g2 and g3 delivered after the receiver came back", func() bool { o := rcv.opened(); return o["g2"] && o["g3"] })
	testsvc.Eventually(t, 20*time.Second, "outbox drained", func() bool { return s.OutboxLen() == 0 })

	// A sink with the wrong secret is refused by the receiver and its
	// delivery goes to the dead letters after max_attempts.
	if _, err := s.Apply([]detect.Finding{finding(detect.TypeClone, "g4", detect.Critical, 3)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 20*time.Second, "bad signature refused and dead-lettered", func() bool { return d.Dead.Load() == 1 })
	rcv.mu.Lock()
	bad := rcv.bad
	rcv.mu.Unlock()
	if bad != 2 {
		t.Errorf("receiver refused %d bad signatures, want 2 (max_attempts)", bad)
	}
}

func TestEscalation(t *testing.T) {
	clk := &clock{t: t0}
	cfg := alert.DefaultConfig()
	cfg.EscalateAfter, cfg.EscalateMax = 10*time.Minute, 2
	s, db := open(t, filepath.Join(t.TempDir(), "a.db"), cfg, clk.now)
	defer db.Close()
	res, _ := s.Apply([]detect.Finding{finding(detect.TypeXID, "g1", detect.Critical, 0), finding(detect.TypeXID, "g2", detect.Critical, 0)}, nil, nil)
	if _, err := s.Acknowledge(res.Opened[1].ID, "sam", ""); err != nil {
		t.Fatal(err)
	}
	counts := []int{}
	for _, step := range []time.Duration{5 * time.Minute, 6 * time.Minute, 10 * time.Minute, 10 * time.Minute} {
		clk.add(step)
		n, err := s.escalate()
		if err != nil {
			t.Fatal(err)
		}
		counts = append(counts, n)
	}
	if want := []int{0, 1, 1, 0}; !slices.Equal(counts, want) {
		t.Errorf("escalations per step = %v, want %v (only the unacknowledged alert, at most twice)", counts, want)
	}
	a, _ := s.Get(res.Opened[0].ID)
	if a.Escalations != 2 {
		t.Errorf("escalations = %d, want 2", a.Escalations)
	}
}

func TestRoutingAndConfig(t *testing.T) {
	cfg := alert.Config{
		Sinks: map[string]alert.SinkConfig{"a": {Kind: alert.SinkMQTT}, "b": {Kind: alert.SinkMQTT}},
		Routes: []alert.Route{
			{MinSeverity: detect.Critical, Sinks: []string{"a"}},
			{Sites: []string{"s2"}, Types: []detect.Type{detect.TypeXID}, Sinks: []string{"b", "a"}},
		},
	}
	tests := []struct {
		a    alert.Alert
		want []string
	}{
		{alert.Alert{Severity: detect.Critical, Site: "s1", Type: detect.TypeClone}, []string{"a"}},
		{alert.Alert{Severity: detect.Warning, Site: "s2", Type: detect.TypeXID}, []string{"b", "a"}},
		{alert.Alert{Severity: detect.Warning, Site: "s1", Type: detect.TypeXID}, nil},
	}
	for _, tt := range tests {
		if got := cfg.SinksFor(&tt.a); !slices.Equal(got, tt.want) {
			t.Errorf("sinksFor(%v %s %s) = %v, want %v", tt.a.Severity, tt.a.Site, tt.a.Type, got, tt.want)
		}
	}
	bad := alert.Config{Sinks: map[string]alert.SinkConfig{"w": {Kind: alert.SinkWebhook, URL: "ftp://x"}, "q": {Kind: "pager"}}, Routes: []alert.Route{{Sinks: []string{"nope"}}}}
	err := bad.Validate()
	for _, want := range []string{"alerts.sinks.w.url", "alerts.sinks.w.secret", "alerts.sinks.q.kind", "alerts.routes.0.sinks.0"} {
		var fe *detect.FieldError
		found := false
		for _, e := range unwrapAll(err) {
			if errors.As(e, &fe) && strings.Join(fe.Path, ".") == want {
				found = true
			}
		}
		if !found {
			t.Errorf("Validate(bad) = %v, want an error at %s", err, want)
		}
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestSignature(t *testing.T) {
	body := []byte(`{"event":"opened"}`)
	sig := alert.Sign([]byte("k"), "1700000000", body)
	if !alert.VerifySignature([]byte("k"), "1700000000", body, sig) {
		t.Errorf("VerifySignature(own signature) = false, want true")
	}
	for _, tc := range []struct{ key, ts, body string }{{"k2", "1700000000", string(body)}, {"k", "1700000001", string(body)}, {"k", "1700000000", `{"event":"closed"}`}} {
		if alert.VerifySignature([]byte(tc.key), tc.ts, []byte(tc.body), sig) {
			t.Errorf("VerifySignature(%+v) = true, want false", tc)
		}
	}
}

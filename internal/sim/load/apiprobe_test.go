package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAPIProbe runs the probe against a stand-in for twin-service's API
// (the whole-service benchmark runs it against the real one): each call is
// timed from the request to the answer's last byte, sent with the token,
// the assets asked for in turn, and a call answered otherwise than 200 is
// counted as an error, not timed.
func TestAPIProbe(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "sign in", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		seen[r.URL.RequestURI()]++
		mu.Unlock()
		switch {
		case r.URL.Path == "/api/v1/assets":
			time.Sleep(20 * time.Millisecond) // a slow list: its p99 must show it
			w.Write([]byte(`{"items":[]}`))
		case strings.HasPrefix(r.URL.Path, "/api/v1/assets/"):
			w.Write([]byte(`{}`))
		default:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	p := &APIProbe{Base: srv.URL, Token: "tok", Assets: []string{"a.gpu0", "b.gpu1"}, Every: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	p.Run(ctx)

	list, asset, counts := p.Lat[0].Snapshot(), p.Lat[1].Snapshot(), p.Lat[2].Snapshot()
	if got := list.Quantile(nil, 0.99); got < 20*time.Millisecond {
		t.Errorf("list p99 = %s, want at least the server's 20ms", got)
	}
	if got := asset.Quantile(nil, 0.99); got == 0 || got >= 20*time.Millisecond {
		t.Errorf("asset p99 = %s, want some time under 20ms", got)
	}
	if got := counts.Quantile(nil, 0.99); got != 0 {
		t.Errorf("counts p99 = %s, want nothing timed (every answer a 503)", got)
	}
	if p.Errors.Load() == 0 || !strings.Contains(p.FirstError(), "counts: GET /api/v1/stats/assets: 503") {
		t.Errorf("errors = %d, first %q, want the counts' 503s", p.Errors.Load(), p.FirstError())
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["/api/v1/assets/a.gpu0"] == 0 || seen["/api/v1/assets/b.gpu1"] == 0 || seen["/api/v1/assets?limit=100"] == 0 {
		t.Errorf("requests = %v, want the list and both assets", seen)
	}
}

// TestLoadGPUs: the probe's assets are GPUs (not hosts) of distinct
// gateways spread over the fleet, at most n of them.
func TestLoadGPUs(t *testing.T) {
	l, err := Presign(Config{Gateways: 10, Rate: 10, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ids := l.GPUs(4)
	hosts := map[string]bool{}
	for _, id := range ids {
		host, _, ok := strings.Cut(id, ".gpu")
		if !ok || hosts[host] {
			t.Errorf("GPUs(4) = %v: %q is not a GPU of a gateway not picked yet", ids, id)
		}
		hosts[host] = true
	}
	if len(ids) != 4 { // every 3rd of 10 gateways
		t.Errorf("GPUs(4) = %d ids %v, want 4", len(ids), ids)
	}
}

// TestAPIProbeVisible: publish -> visible is the time from a message's
// publish to the first answer whose last_seen reaches the message's reading
// (the stand-in shows each reading 60 ms after its publish, and knows no
// such asset before the first: not an error, a twin not made yet); a message
// sent before the probe was done with the last one is skipped, not timed
// from its old publish.
func TestAPIProbeVisible(t *testing.T) {
	var shown atomic.Int64 // the GPU's last_seen, Unix nanoseconds
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/assets/a.gpu0" {
			if shown.Load() == 0 {
				http.NotFound(w, r) // no twin before the GPU's first message
				return
			}
			fmt.Fprintf(w, `{"id":"a.gpu0","health":{"state":"ok"},"last_seen":%q}`, time.Unix(0, shown.Load()).UTC().Format(time.RFC3339Nano))
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	pub := make(chan Published, 1)
	p := &APIProbe{Base: srv.URL, Published: pub, Every: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	visible := func() (n uint64, lo, hi time.Duration) {
		s := p.Lat[3].Snapshot()
		for i := range s {
			n += s[i]
		}
		return n, s.Quantile(nil, 0), s.Quantile(nil, 0.99)
	}

	base := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	pub <- Published{GPU: "a.gpu0", Reading: base.Add(-time.Hour), Sent: time.Now().Add(-time.Hour)} // before the probe began
	for len(pub) > 0 {                                                                               // taken: the probe has begun
		time.Sleep(time.Millisecond)
	}
	const delay, messages = 60 * time.Millisecond, 5
	for i := 1; i <= messages; i++ {
		reading := base.Add(time.Duration(i) * time.Second)
		pub <- Published{GPU: "a.gpu0", Reading: reading, Sent: time.Now()}
		time.Sleep(delay)
		shown.Store(reading.UnixNano())
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if n, _, _ := visible(); n == uint64(i) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %d not timed within 10 s (errors %d: %s)", i, p.Errors.Load(), p.FirstError())
			}
		}
	}
	n, lo, hi := visible()
	if n != messages || lo < delay || hi > delay+time.Second {
		t.Errorf("publish -> visible: %d timed, min %s, p99 %s; want %d, from %s to well under %s later", n, lo, hi, messages, delay, delay+time.Second)
	}
	if p.Errors.Load() != 0 {
		t.Errorf("errors = %d (%s), want none", p.Errors.Load(), p.FirstError())
	}
}

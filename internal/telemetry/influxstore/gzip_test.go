package influxstore

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"twinchain/internal/telemetry"
)

func TestUseGzip(t *testing.T) {
	for in, want := range map[string]bool{
		"http://127.0.0.1:8086":       false,
		"http://127.0.1.2:8086":       false,
		"http://localhost:8086":       false,
		"http://[::1]:8086":           false,
		"https://influx.example:8086": true,
		"http://10.0.0.5:8086":        true,
		"http://[2001:db8::1]:8086":   true,
		"http://localhost.example:80": true,
		"://not a url":                true,
	} {
		if got := useGzip(in); got != want {
			t.Errorf("useGzip(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestLoopbackWritesPlain: a store whose InfluxDB is on loopback sends its
// batches uncompressed, as line protocol.
func TestLoopbackWritesPlain(t *testing.T) {
	type request struct{ encoding, body string }
	got := make(chan request, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- request{r.Header.Get("Content-Encoding"), string(body)}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := telemetry.Config{Backend: telemetry.BackendInfluxDB, URL: srv.URL, Bucket: "db", FlushInterval: 10 * time.Millisecond, Timeout: 5 * time.Second}
	s, err := Open(t.TempDir(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	p := telemetry.Point{Measurement: "gpu", Asset: "a1", Fields: []telemetry.Field{{Name: "temp_c", Value: 61}}, Time: time.Unix(1764072000, 42)}
	if err := s.Write(ctx, []telemetry.Point{p}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if want := "gpu,asset=a1 temp_c=61 1764072000000000042"; r.encoding != "" || r.body != want {
			t.Errorf("write request: Content-Encoding %q, body %q; want none, %q", r.encoding, r.body, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no write request after 10s")
	}
}

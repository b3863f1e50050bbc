package influxstore_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/influxstore"
)

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
	s := openStore(t, t.TempDir(), cfg, influxstore.Options{})
	run(t, s)
	p := telemetry.Point{Measurement: "gpu", Asset: "a1", Fields: []telemetry.Field{{Name: "temp_c", Value: 61}}, Time: time.Unix(1764072000, 42)}
	if err := s.Write(context.Background(), []telemetry.Point{p}); err != nil {
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

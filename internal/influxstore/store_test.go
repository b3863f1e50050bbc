package influxstore_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/influxstore"
	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/telemetrytest"
	"twinchain/internal/testsvc"
)

// dbFor names the database of a test directory.
func dbFor(dir string) string {
	h := fnv.New64a()
	h.Write([]byte(dir))
	return fmt.Sprintf("t%x", h.Sum64())
}

func config(srv *testsvc.Influxd, db string) telemetry.Config {
	return telemetry.Config{
		Backend:       telemetry.BackendInfluxDB,
		URL:           srv.URL(),
		Bucket:        db + "/autogen",
		Token:         srv.Token(),
		FlushInterval: 50 * time.Millisecond,
		Timeout:       5 * time.Second,
	}.WithDefaults()
}

// TestContract runs the telemetry contract suite against a real influxd
// 1.8, through its v2 API: writes through the client, queries in Flux.
func TestContract(t *testing.T) {
	srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{})
	telemetrytest.Run(t, func(t *testing.T, dir string, o telemetrytest.Options) telemetry.Store {
		db := dbFor(dir)
		srv.CreateDatabase(t, db)
		cfg := config(srv, db)
		cfg.Retention = o.Retention
		s, err := influxstore.Open(filepath.Join(dir, "replay"), cfg, influxstore.Options{Now: o.Now})
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		return s
	})
}

// run starts s.Run and stops it and closes s at the end of the test.
func run(t *testing.T, s *influxstore.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
		s.Close()
	})
}

func flush(t *testing.T, s telemetry.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
}

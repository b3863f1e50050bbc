package telemetry_test

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
	"twinchain/internal/telemetry/influxstore"
	"twinchain/internal/telemetry/telemetrytest"
	"twinchain/internal/testsvc"
)

// TestContract runs the one contract suite against every backend: the
// embedded store in a temp directory, and the InfluxDB store against a real
// influxd 1.8 (through its v2 API: writes with the client, queries in Flux),
// one database per test.
func TestContract(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		telemetrytest.Run(t, func(t *testing.T, dir string, o telemetrytest.Options) telemetry.Store {
			s, err := embeddedstore.Open(dir, embeddedstore.Options{Retention: o.Retention, Now: o.Now})
			if err != nil {
				t.Fatalf("embeddedstore.Open(%s) = %v", dir, err)
			}
			return s
		})
	})
	t.Run("influxdb", func(t *testing.T) {
		srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{})
		telemetrytest.Run(t, func(t *testing.T, dir string, o telemetrytest.Options) telemetry.Store {
			h := fnv.New64a()
			h.Write([]byte(dir))
			db := fmt.Sprintf("t%x", h.Sum64())
			srv.CreateDatabase(t, db)
			cfg := telemetry.Config{
				Backend:       telemetry.BackendInfluxDB,
				URL:           srv.URL(),
				Bucket:        db + "/autogen",
				Retention:     o.Retention,
				FlushInterval: 50 * time.Millisecond,
				Timeout:       5 * time.Second,
			}
			s, err := influxstore.Open(filepath.Join(dir, "replay"), cfg, influxstore.Options{Now: o.Now})
			if err != nil {
				t.Fatalf("influxstore.Open = %v", err)
			}
			return s
		})
	})
}

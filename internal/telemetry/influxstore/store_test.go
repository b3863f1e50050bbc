package influxstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/influxstore"
	"twinchain/internal/testsvc"
)

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

// fleetPoints makes n points for assets gpu0..gpu(assets-1) of one host:
// point k goes to asset k%assets at base + k/assets seconds + k ms (unique
// per series), with fields seq=k and temp_c=k%50.
func fleetPoints(base time.Time, first, n, assets int) []telemetry.Point {
	pts := make([]telemetry.Point, n)
	for i := range pts {
		k := first + i
		pts[i] = telemetry.Point{
			Measurement: "gpu",
			Asset:       fmt.Sprintf("srv-s1-001.gpu%d", k%assets),
			Tags:        telemetry.Tags{Site: "s1", Gateway: "gw-srv-s1-001", Kind: "gpu"},
			Fields:      []telemetry.Field{{Name: "seq", Value: float64(k)}, {Name: "temp_c", Value: float64(k % 50)}},
			Time:        base.Add(time.Duration(k) * time.Millisecond),
		}
	}
	return pts
}

func openStore(t *testing.T, dir string, cfg telemetry.Config, opts influxstore.Options) *influxstore.Store {
	t.Helper()
	s, err := influxstore.Open(dir, cfg, opts)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return s
}

// sumSeq is sum(seq) over points first..first+n-1.
func sumSeq(first, n int) float64 { return float64(n) * float64(2*first+n-1) / 2 }

// TestEndToEndCrossCheck writes a small fleet's points through the store
// and checks them three ways: InfluxQL count/sum/min/max, Flux through
// Query, and the schema (tag keys, field types, series count).
func TestEndToEndCrossCheck(t *testing.T) {
	srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{})
	srv.CreateDatabase(t, "e2e")
	s := openStore(t, t.TempDir(), config(srv, "e2e"), influxstore.Options{})
	run(t, s)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	const n, assets = 20000, 8
	for k := 0; k < n; k += 1000 {
		if err := s.Write(context.Background(), fleetPoints(base, k, 1000, assets)); err != nil {
			t.Fatalf("Write = %v", err)
		}
	}
	flush(t, s)
	if got := srv.Count(t, "e2e", "SELECT count(seq) FROM gpu"); got != n {
		t.Errorf("InfluxQL count(seq) = %d, want %d", got, n)
	}
	r := srv.QueryDB(t, "e2e", "SELECT sum(seq), min(seq), max(seq) FROM gpu")
	row := r.Results[0].Series[0].Values[0]
	if row[1] != sumSeq(0, n) || row[2] != 0.0 || row[3] != float64(n-1) {
		t.Errorf("InfluxQL sum, min, max of seq = %v, want %v, 0, %d", row[1:], sumSeq(0, n), n-1)
	}
	for a := range assets {
		asset := fmt.Sprintf("srv-s1-001.gpu%d", a)
		ql := srv.Count(t, "e2e", fmt.Sprintf("SELECT count(temp_c) FROM gpu WHERE asset = '%s'", asset))
		q := telemetry.Query{Measurement: "gpu", Asset: asset, Field: "temp_c", From: base, To: base.Add(time.Minute), Step: time.Minute, Agg: telemetry.AggCount}
		got, err := s.Query(context.Background(), q)
		if err != nil || len(got) != 1 || int64(got[0].Value) != ql || ql != n/assets {
			t.Errorf("asset %s: Flux count = %v, %v; InfluxQL count = %d; want both %d", asset, got, err, ql, n/assets)
		}
	}
	// The schema: 4 tags, float fields only, one series per asset.
	r = srv.QueryDB(t, "e2e", "SHOW TAG KEYS FROM gpu")
	if got := fmt.Sprint(r.Results[0].Series[0].Values); got != "[[asset] [gateway] [kind] [site]]" {
		t.Errorf("SHOW TAG KEYS = %s, want asset, gateway, kind, site", got)
	}
	r = srv.QueryDB(t, "e2e", "SHOW FIELD KEYS FROM gpu")
	for _, v := range r.Results[0].Series[0].Values {
		if v[1] != "float" {
			t.Errorf("field %v has type %v, want float", v[0], v[1])
		}
	}
	r = srv.QueryDB(t, "e2e", "SHOW SERIES FROM gpu")
	if got := len(r.Results[0].Series[0].Values); got != assets {
		t.Errorf("SHOW SERIES = %d series, want %d (one per asset)", got, assets)
	}
	if st := s.Stats(); st.Written != n || st.PendingPoints != 0 || st.Dropped != 0 || st.Rejected != 0 {
		t.Errorf("Stats() = %+v, want %d written, nothing pending, dropped or rejected", st, n)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(influxstore.NewCollector(s))
	if got := gathered(t, reg, "twinchain_influxdb_written_points_total"); got != n {
		t.Errorf("twinchain_influxdb_written_points_total = %v, want %d", got, n)
	}
}

// gathered is the value of the single metric name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not gathered", name)
	return 0
}

// TestAuthToken writes to an influxd with authentication on, with the 1.8
// token "user:password"; with a wrong password the points stay in the
// replay log (401 is retried, not dropped) and nothing is rejected.
func TestAuthToken(t *testing.T) {
	srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{Auth: true})
	srv.CreateDatabase(t, "auth")
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)

	good := openStore(t, t.TempDir(), config(srv, "auth"), influxstore.Options{})
	run(t, good)
	if err := good.Write(context.Background(), fleetPoints(base, 0, 100, 2)); err != nil {
		t.Fatal(err)
	}
	flush(t, good)
	if got := srv.Count(t, "auth", "SELECT count(seq) FROM gpu"); got != 100 {
		t.Errorf("count with token user:password = %d, want 100", got)
	}

	cfg := config(srv, "auth")
	cfg.Token = srv.User + ":wrong"
	bad := openStore(t, t.TempDir(), cfg, influxstore.Options{})
	run(t, bad)
	if err := bad.Write(context.Background(), fleetPoints(base, 100, 100, 2)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := bad.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush with a wrong password = %v, want a deadline error", err)
	}
	if st := bad.Stats(); st.PendingPoints != 100 || st.Rejected != 0 || !st.Down || st.Retries == 0 {
		t.Errorf("Stats() with a wrong password = %+v, want 100 pending, none rejected, down, retries", st)
	}
}

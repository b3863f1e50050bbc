package influxstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/influxstore"
	"twinchain/internal/testsvc"
)

// load writes batches of fleetPoints every interval until stop is closed,
// and returns how many points it wrote.
func load(t *testing.T, s telemetry.Store, base time.Time, batch, assets int, interval time.Duration, stop <-chan struct{}) <-chan int {
	total := make(chan int, 1)
	go func() {
		k := 0
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				total <- k
				return
			case <-tick.C:
			}
			if err := s.Write(context.Background(), fleetPoints(base, k, batch, assets)); err != nil {
				t.Errorf("Write during load = %v", err)
				total <- k
				return
			}
			k += batch
		}
	}()
	return total
}

// checkAll checks that database db holds exactly points 0..n-1 of
// fleetPoints, once each: count, distinct count, sum, min and max of seq
// over unique timestamps (InfluxDB keeps one point per series and time, so a
// point written twice would not raise the count; a missing one lowers it).
func checkAll(t *testing.T, srv *testsvc.Influxd, db string, n int) {
	t.Helper()
	r := srv.QueryDB(t, db, "SELECT count(seq), count(distinct(seq)), sum(seq), min(seq), max(seq) FROM gpu")
	if len(r.Results[0].Series) == 0 {
		t.Fatalf("no points in %s, want %d", db, n)
	}
	row := r.Results[0].Series[0].Values[0]
	want := []any{float64(n), float64(n), sumSeq(0, n), 0.0, float64(n - 1)}
	if fmt.Sprint(row[1:]) != fmt.Sprint(want) {
		t.Errorf("InfluxQL count, distinct, sum, min, max of seq = %v, want %v", row[1:], want)
	}
}

// TestOutage stops influxd for 60 s while points keep coming, restarts it,
// and checks that every point written before, during and after is in
// InfluxDB exactly once, with nothing dropped.
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("60 s outage")
	}
	srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{})
	srv.CreateDatabase(t, "outage")
	var logs testsvc.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s := openStore(t, t.TempDir(), config(srv, "outage"), influxstore.Options{Log: log})
	run(t, s)
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Minute)
	stop := make(chan struct{})
	total := load(t, s, base, 50, 16, 20*time.Millisecond, stop) // about 2,500 points/s

	time.Sleep(5 * time.Second) // the scenario: 5s of load with InfluxDB up
	before := s.Stats()
	srv.Stop()
	time.Sleep(60 * time.Second) // the scenario: a 60s outage under load
	during := s.Stats()
	srv.Restart(t)
	time.Sleep(5 * time.Second) // the scenario: 5s more load after InfluxDB is back
	close(stop)
	n := <-total
	flush(t, s)

	checkAll(t, srv, "outage", n)
	if before.Written == 0 || during.PendingPoints == 0 || !during.Down {
		t.Errorf("before the outage %+v, during %+v: want points written before and pending while down", before, during)
	}
	st := s.Stats()
	if st.Dropped != 0 || st.Rejected != 0 || st.PendingPoints != 0 || st.Retries == 0 || st.Down {
		t.Errorf("Stats() after = %+v, want nothing dropped, rejected or pending, some retries, up", st)
	}
	if c := strings.Count(logs.String(), "influxdb unavailable"); c != 1 {
		t.Errorf("logged %q %d times, want once:\n%s", "influxdb unavailable", c, logs.String())
	}
	t.Logf("%d points; %d pending (%d bytes on disk) at the end of the outage; %d retries", n, during.PendingPoints, during.PendingBytes, st.Retries)
}

// TestReplayBudget overflows a small replay log while influxd is down: the
// oldest unsent points beyond the budget are dropped, counted and logged
// once; the log survives a restart of the store; the rest reaches InfluxDB.
func TestReplayBudget(t *testing.T) {
	srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{})
	srv.CreateDatabase(t, "budget")
	srv.Stop()
	var logs testsvc.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := config(srv, "budget")
	cfg.ReplayBudgetBytes = 256 << 10
	opts := influxstore.Options{Log: log, SegmentBytes: 32 << 10}
	dir := t.TempDir()
	s := openStore(t, dir, cfg, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	const n, batch = 10000, 500 // about 1 MiB of line protocol
	for k := 0; k < n; k += batch {
		if err := s.Write(context.Background(), fleetPoints(base, k, batch, 4)); err != nil {
			t.Fatalf("Write = %v", err)
		}
	}
	st := s.Stats()
	if st.Dropped == 0 || st.PendingPoints+st.Dropped != n || st.PendingBytes > cfg.ReplayBudgetBytes+2*opts.SegmentBytes {
		t.Errorf("Stats() over budget = %+v, want some dropped, pending+dropped = %d, pending bytes <= %d", st, n, cfg.ReplayBudgetBytes+2*opts.SegmentBytes)
	}
	if c := strings.Count(logs.String(), "over budget"); c != 1 {
		t.Errorf("logged %q %d times, want once:\n%s", "over budget", c, logs.String())
	}
	// Restart the store: the log on disk is picked up again.
	cancel()
	<-done
	s.Close()
	s = openStore(t, dir, cfg, opts)
	run(t, s)
	if again := s.Stats(); again.PendingPoints != st.PendingPoints {
		t.Errorf("pending after reopening = %d, want %d", again.PendingPoints, st.PendingPoints)
	}
	srv.Restart(t)
	flush(t, s)
	if got := srv.Count(t, "budget", "SELECT count(seq) FROM gpu"); got != st.PendingPoints {
		t.Errorf("count in InfluxDB = %d, want the %d points kept", got, st.PendingPoints)
	}
}

// TestRejectedBatchDoesNotBlock: a batch InfluxDB refuses as bad data (a
// field type conflict) is counted and skipped; later points still arrive.
func TestRejectedBatchDoesNotBlock(t *testing.T) {
	srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{})
	srv.CreateDatabase(t, "reject")
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	// fan_rpm exists as an integer; the store writes floats.
	srv.WriteLines(t, "reject", fmt.Sprintf("host,asset=h1 fan_rpm=1i %d\n", base.UnixNano()))
	var logs testsvc.Buffer
	s := openStore(t, t.TempDir(), config(srv, "reject"), influxstore.Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	run(t, s)
	conflict := telemetry.Point{Measurement: "host", Asset: "h1", Fields: []telemetry.Field{{Name: "fan_rpm", Value: 5000}}, Time: base.Add(time.Second)}
	if err := s.Write(context.Background(), []telemetry.Point{conflict}); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	if err := s.Write(context.Background(), fleetPoints(base, 0, 300, 3)); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	checkAll(t, srv, "reject", 300)
	if st := s.Stats(); st.Rejected != 1 || st.PendingPoints != 0 {
		t.Errorf("Stats() = %+v, want 1 rejected, none pending", st)
	}
	if !strings.Contains(logs.String(), "status=400") {
		t.Errorf("log = %q, want the rejection with status=400", logs.String())
	}
}

package influxstore_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
	"twinchain/internal/telemetry/influxstore"
	"twinchain/internal/testsvc"
)

// gpuSamples is n points shaped like wire.GPUSample (13 fields) for a fleet
// of 1000 GPUs, timestamps unique per series.
func gpuSamples(base time.Time, first, n int) []telemetry.Point {
	names := []string{"temp_c", "mem_temp_c", "power_w", "util_pct", "mem_util_pct", "sm_clock_mhz", "mem_clock_mhz", "ecc_sbe", "ecc_dbe", "xid_count", "pcie_replays", "retired_pages", "remapped_rows"}
	pts := make([]telemetry.Point, n)
	for i := range pts {
		k := first + i
		fs := make([]telemetry.Field, len(names))
		for j, name := range names {
			fs[j] = telemetry.Field{Name: name, Value: float64(k%97) + float64(j)/4}
		}
		host := k % 1000 / 8
		pts[i] = telemetry.Point{
			Measurement: "gpu",
			Asset:       fmt.Sprintf("srv-s1-%03d.gpu%d", host, k%8),
			Tags:        telemetry.Tags{Site: "s1", Gateway: fmt.Sprintf("gw-srv-s1-%03d", host), Kind: "gpu"},
			Fields:      fs,
			Time:        base.Add(time.Duration(k/1000) * time.Second),
		}
	}
	return pts
}

// sustained writes b.N batches of 1000 GPU samples into s and waits until
// they are all readable; it reports points/s over the whole run.
func sustained(b *testing.B, s telemetry.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	const batch = 1000
	base := time.Now().UTC().Add(-6 * time.Hour)
	batches := make([][]telemetry.Point, 8)
	for i := range batches {
		batches[i] = gpuSamples(base, i*batch, batch)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pts := batches[i%len(batches)]
		round := time.Duration(i/len(batches)) * time.Duration(len(batches)) * time.Second
		for j := range pts {
			pts[j].Time = base.Add(round + time.Duration((i%len(batches)*batch+j)/1000)*time.Second)
		}
		if err := s.Write(context.Background(), pts); err != nil {
			b.Fatal(err)
		}
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/point")
}

// BenchmarkSustained compares points/s into the real InfluxDB (through the
// replay log and the batched sender, until InfluxDB has them all) with the
// embedded store, in one run on one machine.
func BenchmarkSustained(b *testing.B) {
	srv := testsvc.StartInfluxd(b, testsvc.InfluxdOptions{})
	b.Run("embedded", func(b *testing.B) {
		s, err := embeddedstore.Open(b.TempDir(), embeddedstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		sustained(b, s)
	})
	b.Run("influxdb", func(b *testing.B) {
		db := fmt.Sprintf("bench%d", time.Now().UnixNano())
		srv.CreateDatabase(b, db)
		cfg := telemetry.Config{Backend: telemetry.BackendInfluxDB, URL: srv.URL(), Bucket: db, FlushInterval: 100 * time.Millisecond, Timeout: 30 * time.Second}
		s, err := influxstore.Open(b.TempDir(), cfg, influxstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		sustained(b, s)
	})
}

// BenchmarkWriteWhileDown measures what InfluxDB being down costs: the cost
// of one point into the replay log (ns, allocs, disk bytes) and the heap
// the store holds after buffering every point of the run.
func BenchmarkWriteWhileDown(b *testing.B) {
	srv := testsvc.StartInfluxd(b, testsvc.InfluxdOptions{})
	srv.Stop()
	cfg := telemetry.Config{Backend: telemetry.BackendInfluxDB, URL: srv.URL(), Bucket: "down", ReplayBudgetBytes: 8 << 30}
	s, err := influxstore.Open(b.TempDir(), cfg, influxstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	const batch = 1000
	pts := gpuSamples(time.Now().Add(-time.Hour), 0, batch)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Write(context.Background(), pts); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := s.Stats()
	if st.PendingPoints != int64(b.N*batch) {
		b.Fatalf("pending = %d, want %d", st.PendingPoints, b.N*batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/point")
	b.ReportMetric(float64(st.PendingPoints), "points-held")
	b.ReportMetric(float64(st.PendingBytes)/float64(st.PendingPoints), "disk-B/point")
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse)), "heap-growth-B")
	b.ReportMetric(float64(after.HeapInuse), "heap-inuse-B")
}

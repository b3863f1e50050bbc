package embeddedstore_test

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"testing"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
)

// TestPruneDeletesOldBuckets checks that Prune deletes the buckets from the
// oldest point's to the one holding the retention start, and only once.
func TestPruneDeletesOldBuckets(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := embeddedstore.Open(dir, embeddedstore.Options{Retention: 48 * time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	var pts []telemetry.Point
	for _, age := range []time.Duration{10 * 24 * time.Hour, 5 * 24 * time.Hour, time.Hour} {
		pts = append(pts, telemetry.Point{Measurement: "gpu", Asset: "a1", Fields: []telemetry.Field{{Name: "temp_c", Value: age.Hours()}}, Time: now.Add(-age)})
	}
	if err := s.Write(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	buckets := int((10*24*time.Hour - 48*time.Hour) / embeddedstore.BucketWidth)
	if n, err := s.Prune(context.Background()); err != nil || n != buckets {
		t.Fatalf("Prune() = %d, %v, want %d buckets, nil", n, err, buckets)
	}
	if n, err := s.Prune(context.Background()); err != nil || n != 0 {
		t.Errorf("second Prune() = %d, %v, want 0, nil", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened with no retention, the deleted buckets stay gone.
	s, err = embeddedstore.Open(dir, embeddedstore.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := telemetry.Query{Measurement: "gpu", Asset: "a1", Field: "temp_c", From: now.Add(-20 * 24 * time.Hour), To: now, Step: 24 * time.Hour, Agg: telemetry.AggCount}
	got, err := s.Query(context.Background(), q)
	want := []telemetry.Sample{{Time: telemetry.WindowStart(now.Add(-time.Hour), 24*time.Hour), Value: 1}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Query after Prune = %v, %v, want %v", got, err, want)
	}
}

// gpuBatch is n points of a fleet of gpus GPUs with the 13 fields of a
// wire.GPUSample, one second apart per GPU.
func gpuBatch(start time.Time, gpus, first, n int) []telemetry.Point {
	names := []string{"temp_c", "mem_temp_c", "power_w", "util_pct", "mem_util_pct", "sm_clock_mhz", "mem_clock_mhz", "ecc_sbe", "ecc_dbe", "xid_count", "pcie_replays", "retired_pages", "remapped_rows"}
	pts := make([]telemetry.Point, n)
	for i := range pts {
		k := first + i
		fs := make([]telemetry.Field, len(names))
		for j, name := range names {
			fs[j] = telemetry.Field{Name: name, Value: float64(k%97 + j)}
			switch name { // as an agent reports them: a tenth of a degree, a milliwatt
			case "temp_c", "mem_temp_c":
				fs[j].Value = float64((k%97+j)*10+k%10) / 10
			case "power_w":
				fs[j].Value = float64((k%97+j)*1000+k%1000) / 1000
			}
		}
		pts[i] = telemetry.Point{
			Measurement: "gpu",
			Asset:       fmt.Sprintf("srv-s1-%03d.gpu%d", k%gpus/8, k%8),
			Tags:        telemetry.Tags{Site: "s1", Gateway: fmt.Sprintf("gw-srv-s1-%03d", k%gpus/8), Kind: "gpu"},
			Fields:      fs,
			Time:        start.Add(time.Duration(k/gpus) * time.Second),
		}
	}
	return pts
}

// BenchmarkWrite measures sustained writes of GPU samples (13 fields each)
// in batches of 1000, as the telemetry writer sends them.
func BenchmarkWrite(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", sync), func(b *testing.B) {
			s, err := embeddedstore.Open(b.TempDir(), embeddedstore.Options{NoSync: !sync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const batch = 1000
			start := time.Now().Add(-time.Hour)
			batches := make([][]telemetry.Point, 16)
			for i := range batches {
				batches[i] = gpuBatch(start, 1000, i*batch, batch)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				pts := batches[i%len(batches)]
				// Move the batch forward in time so every point is new.
				shift := time.Duration(i/len(batches)) * 16 * time.Second
				for j := range pts {
					pts[j].Time = start.Add(time.Duration((i%len(batches)*batch+j)/1000)*time.Second + shift)
				}
				if err := s.Write(context.Background(), pts); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// CPU of the whole process, Pebble's flushes and compactions in
			// the background included: wall time moves with the other work
			// on a shared machine.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*batch), "cpu-ns/point")
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "points/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/point")
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

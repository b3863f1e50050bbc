package embeddedstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
)

// benchLayout is a layout the benchmarks compare: keys of prefix in
// buckets of width. d (24h), b (10m) and c (2m, float64 values) are the
// layouts of earlier versions, e (2m, decimal values) the one writes use.
type benchLayout struct {
	name   string
	prefix byte
	width  time.Duration
}

var (
	layoutFloat   = benchLayout{"2m-float", 'c', 2 * time.Minute}
	layoutDecimal = benchLayout{"2m", 'e', 2 * time.Minute}
	benchLayouts  = []benchLayout{{"24h", 'd', 24 * time.Hour}, {"10m", 'b', 10 * time.Minute}, layoutFloat, layoutDecimal, {"1m", 'e', time.Minute}}
)

// open opens a store in a temp dir that writes with l.
func (l benchLayout) open(tb testing.TB, o embeddedstore.Options) *embeddedstore.Store {
	s, err := embeddedstore.Open(tb.TempDir(), embeddedstore.WithLayout(o, l.prefix, l.width))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// writeFleet writes instant (one point per GPU) at each second from start
// on for seconds, in batches of batch points.
func writeFleet(tb testing.TB, s *embeddedstore.Store, instant []telemetry.Point, start time.Time, seconds, batch int) {
	for sec := 0; sec < seconds; sec++ {
		ts := start.Add(time.Duration(sec) * time.Second)
		for j := range instant {
			instant[j].Time = ts
		}
		for j := 0; j < len(instant); j += batch {
			if err := s.Write(context.Background(), instant[j:min(j+batch, len(instant))]); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// settle waits for the compactions of what s was written.
func settle(tb testing.TB, s *embeddedstore.Store) {
	if err := s.Settle(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkWriteFleet measures sustained writes of a fleet at 1 Hz (13
// fields) in batches of 4000 like the telemetry writer's, per layout:
// 100,000 GPUs for two simulated minutes (a 16 MiB memtable holds about a
// second of them, so a run flushes about 120), and for ten, one whole
// 10-minute bucket, whose compactions rewrite more of it the fuller it gets
// (the 2-minute layouts, float and decimal, only). Run with -benchtime=1x.
func BenchmarkWriteFleet(b *testing.B) {
	runs := []struct {
		gpus, seconds int
		layouts       []benchLayout
	}{
		{100000, 120, benchLayouts},
		{100000, 600, []benchLayout{layoutFloat, layoutDecimal}},
	}
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, run := range runs {
		instant := gpuBatch(time.Time{}, run.gpus, 0, run.gpus)
		for _, sync := range []bool{false, true} {
			for _, l := range run.layouts {
				b.Run(fmt.Sprintf("gpus=%d/seconds=%d/fsync=%v/layout=%s", run.gpus, run.seconds, sync, l.name), func(b *testing.B) {
					benchWriteFleet(b, l, sync, instant, start, run.seconds)
				})
			}
		}
	}
}

func benchWriteFleet(b *testing.B, l benchLayout, sync bool, instant []telemetry.Point, start time.Time, seconds int) {
	const batch = 4000
	var compacted, flushed uint64
	var amp float64
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		s := l.open(b, embeddedstore.Options{NoSync: !sync})
		writeFleet(b, s, instant, start, seconds, batch)
		t := s.Metrics().Total()
		compacted += t.TableBytesCompacted
		flushed += t.TableBytesFlushed - t.TableBytesIn // Total adds the log's bytes
		amp += t.WriteAmp()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	points := float64(b.N * len(instant) * seconds)
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/points, "cpu-ns/point")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/points, "ns/point")
	b.ReportMetric(float64(compacted)/points, "compacted-B/point")
	b.ReportMetric(float64(flushed)/points, "flushed-B/point")
	b.ReportMetric(amp/float64(b.N), "write-amp")
}

// BenchmarkQuery measures a one-hour chart at 1-minute steps over one GPU
// of 1000 written once per second, per layout.
func BenchmarkQuery(b *testing.B) {
	for _, l := range benchLayouts {
		b.Run("layout="+l.name, func(b *testing.B) {
			s := l.open(b, embeddedstore.Options{NoSync: true})
			defer s.Close()
			start := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
			writeFleet(b, s, gpuBatch(start, 1000, 0, 1000), start, 3600, 1000)
			settle(b, s)
			q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-001.gpu1", Field: "temp_c", From: start, To: start.Add(time.Hour), Step: time.Minute, Agg: telemetry.AggMean}
			b.Run("chart", func(b *testing.B) { // a sub-benchmark: the store is written once
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					got, err := s.Query(context.Background(), q)
					if err != nil || len(got) != 60 {
						b.Fatalf("Query = %d windows, %v, want 60", len(got), err)
					}
				}
			})
		})
	}
}

// BenchmarkQueryDay measures, over 100 GPUs written once per second for a
// day and per layout, a 24-hour chart at 10-minute steps of one GPU,
// and Latest of a GPU that stopped reporting 12 hours before the day's end.
func BenchmarkQueryDay(b *testing.B) {
	for _, l := range benchLayouts {
		b.Run("layout="+l.name, func(b *testing.B) {
			s := l.open(b, embeddedstore.Options{NoSync: true})
			defer s.Close()
			end := time.Now().Truncate(time.Hour)
			start := end.Add(-24 * time.Hour)
			instant := gpuBatch(start, 100, 0, 100)
			writeFleet(b, s, instant, start, 12*3600, 10000)
			writeFleet(b, s, instant[1:], start.Add(12*time.Hour), 12*3600, 10000)
			settle(b, s)
			b.Run("chart", func(b *testing.B) {
				b.ReportAllocs()
				q := telemetry.Query{Measurement: "gpu", Asset: instant[1].Asset, Field: "temp_c", From: start, To: end, Step: 10 * time.Minute, Agg: telemetry.AggMean}
				for i := 0; i < b.N; i++ {
					got, err := s.Query(context.Background(), q)
					if err != nil || len(got) != 144 {
						b.Fatalf("Query = %d windows, %v, want 144", len(got), err)
					}
				}
			})
			b.Run("latest-stale", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					got, err := s.Latest(context.Background(), instant[0].Asset)
					if err != nil || len(got) != 13 {
						b.Fatalf("Latest = %d values, %v, want 13", len(got), err)
					}
				}
			})
		})
	}
}

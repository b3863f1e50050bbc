package telemetrywriter_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"twinchain/internal/ingest"
	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/influxstore"
	"twinchain/internal/telemetry/telemetrywriter"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// submitSamples sends one telemetry message of n samples, one second
// apart, the newest at base + end seconds; gpu0's temp_c is the sample's
// second.
func (r *rig) submitSamples(end, n int) {
	r.t.Helper()
	body := wire.Telemetry{Host: "srv-s1-001"}
	for j := range n {
		sec := end - (n - 1 - j)
		body.Samples = append(body.Samples, wire.TelemetrySample{TS: r.base.Add(time.Duration(sec) * time.Second), GPUs: []wire.GPUSample{
			{Asset: "srv-s1-001.gpu0", Index: 0, UUID: "GPU-0", TempC: float64(sec), PowerW: 300},
			{Asset: "srv-s1-001.gpu1", Index: 1, UUID: "GPU-1", TempC: 50, PowerW: 310},
		}})
	}
	r.seq++
	raw, err := wire.Seal(key(), gw, r.seq, r.base.Add(time.Duration(end)*time.Second), wire.KindTelemetry, body)
	if err != nil {
		r.t.Fatal(err)
	}
	if out, err := r.in.Submit(ingest.Source{}, wire.Topic(gw, wire.KindTelemetry), raw); err != nil || out.Reason != "" {
		r.t.Fatalf("Submit(%d samples) = %+v, %v, want accepted", n, out, err)
	}
}

// TestWriterSamples: a several-sample message becomes one point per GPU per
// sample at the sample's time, whether the writer takes the ingest's
// decoded form or decodes the log, into the embedded store and into a real
// InfluxDB.
func TestWriterSamples(t *testing.T) {
	check := func(t *testing.T, r *rig, store telemetry.Store, w *telemetrywriter.Writer, count func() int64) {
		t.Helper()
		// 3 messages of 5 samples (seconds 0-14) and one in the one-sample form (second 15)
		for m := range 3 {
			r.submitSamples(m*5+4, 5)
		}
		r.submit(15)
		r.waitWritten(w)
		if err := store.Flush(context.Background()); err != nil {
			t.Fatalf("Flush = %v", err)
		}
		if st := w.Stats(); st.Messages != 4 || st.Points != 32 || st.BadMessages != 0 {
			t.Errorf("Stats() = %+v, want 4 messages, 32 points (16 samples x 2 GPUs)", st)
		}
		if got := count(); got != 16 {
			t.Errorf("points of gpu0 = %d, want 16 (one per sample)", got)
		}
		// gpu0's temp_c is the second of its sample: one point a second, each its own value
		q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-001.gpu0", Field: "temp_c", From: r.base, To: r.base.Add(15 * time.Second), Step: time.Second, Agg: telemetry.AggMax}
		got, err := store.Query(context.Background(), q)
		if err != nil || len(got) != 15 {
			t.Fatalf("Query(gpu0 per second) = %d buckets, %v, want 15", len(got), err)
		}
		for i, b := range got {
			if !b.Time.Equal(r.base.Add(time.Duration(i)*time.Second)) || b.Value != float64(i) {
				t.Errorf("gpu0 bucket %d = %v at %s, want %d at %s", i, b.Value, b.Time, i, r.base.Add(time.Duration(i)*time.Second))
			}
		}
	}
	for _, decoded := range []bool{true, false} {
		t.Run(fmt.Sprintf("embedded/decoded=%v", decoded), func(t *testing.T) {
			r := newRig(t)
			var wake telemetrywriter.Waker = r.in
			if !decoded {
				wake = wakeOnly{r.in}
			}
			w := telemetrywriter.New(r.store, wake, r.ts, nil, telemetrywriter.Options{Site: func(string) string { return "s1" }, Poll: 50 * time.Millisecond})
			r.start(w.Run)
			check(t, r, r.ts, w, func() int64 { return int64(r.count("srv-s1-001.gpu0")) })
		})
	}
	t.Run("influxdb", func(t *testing.T) {
		srv := testsvc.StartInfluxd(t, testsvc.InfluxdOptions{})
		srv.CreateDatabase(t, "samples")
		cfg := telemetry.Config{Backend: telemetry.BackendInfluxDB, URL: srv.URL(), Bucket: "samples/autogen", Token: srv.Token(), FlushInterval: 50 * time.Millisecond, Timeout: 5 * time.Second}.WithDefaults()
		s, err := influxstore.Open(t.TempDir(), cfg, influxstore.Options{})
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		r := newRig(t)
		r.start(func(ctx context.Context) error {
			if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return s.Close()
		})
		w := telemetrywriter.New(r.store, r.in, s, nil, telemetrywriter.Options{Site: func(string) string { return "s1" }, Poll: 50 * time.Millisecond})
		r.start(w.Run)
		check(t, r, s, w, func() int64 {
			return srv.Count(t, "samples", "SELECT count(temp_c) FROM gpu WHERE asset = 'srv-s1-001.gpu0'")
		})
	})
}

package telemetrywriter_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
	"twinchain/internal/telemetry/telemetrywriter"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

const gw = "gw-srv-s1-001"

func key() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(gw))
	return ed25519.NewKeyFromSeed(seed[:])
}

// rig is a real ingest over a real twin store feeding a writer into a real
// embedded telemetry store, all in a temp directory.
type rig struct {
	t     *testing.T
	store *twinstore.Store
	in    *ingest.Ingest
	ts    *embeddedstore.Store
	seq   uint64
	base  time.Time
	stops []func()
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	r := &rig{t: t, base: time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)}
	var err error
	if r.store, err = twinstore.Open(filepath.Join(dir, "twins.db"), twinstore.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Gateway{ID: gw, PublicKey: key().Public().(ed25519.PublicKey), Site: "s1"})
	if r.in, err = ingest.New(ingest.Config{}, r.store, reg, slog.New(slog.DiscardHandler), time.Now); err != nil {
		t.Fatal(err)
	}
	if r.ts, err = embeddedstore.Open(filepath.Join(dir, "telemetry"), embeddedstore.Options{}); err != nil {
		t.Fatal(err)
	}
	r.start(func(ctx context.Context) error { return r.in.Run(ctx) })
	t.Cleanup(func() {
		for i := len(r.stops) - 1; i >= 0; i-- {
			r.stops[i]()
		}
		r.ts.Close()
		r.store.Close()
	})
	return r
}

func (r *rig) start(run func(ctx context.Context) error) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("Run = %v, want nil", err)
		}
	}
	r.stops = append(r.stops, stop)
	return stop
}

func (r *rig) writer() (*telemetrywriter.Writer, func()) {
	w := telemetrywriter.New(r.store, r.in, r.ts, slog.New(slog.DiscardHandler), telemetrywriter.Options{
		Site: func(string) string { return "s1" },
		Poll: 50 * time.Millisecond,
	})
	return w, r.start(w.Run)
}

// submit sends one telemetry message with two GPUs, temp_c = i and i+100,
// at base + i seconds, and a status message after it.
func (r *rig) submit(i int) {
	r.t.Helper()
	body := wire.Telemetry{Host: "srv-s1-001", GPUs: []wire.GPUSample{
		{Asset: "srv-s1-001.gpu0", Index: 0, UUID: "GPU-0", TempC: float64(i), PowerW: 300, XIDCount: uint64(i / 10)},
		{Asset: "srv-s1-001.gpu1", Index: 1, UUID: "GPU-1", TempC: float64(i + 100), MemTempC: 70, PowerW: 310},
	}}
	for _, m := range []struct {
		kind wire.Kind
		body any
	}{{wire.KindTelemetry, body}, {wire.KindStatus, wire.Status{State: wire.StateOnline}}} {
		r.seq++
		raw, err := wire.Seal(key(), gw, r.seq, r.base.Add(time.Duration(i)*time.Second), m.kind, m.body)
		if err != nil {
			r.t.Fatal(err)
		}
		out, err := r.in.Submit(ingest.Source{}, wire.Topic(gw, m.kind), raw)
		if err != nil || out.Reason != "" {
			r.t.Fatalf("Submit(%s %d) = %+v, %v, want accepted", m.kind, r.seq, out, err)
		}
	}
}

func (r *rig) waitWritten(w *telemetrywriter.Writer) {
	r.t.Helper()
	msgs, err := r.store.MessagesAfter(0, 1<<20)
	if err != nil || len(msgs) == 0 {
		r.t.Fatalf("MessagesAfter = %d messages, %v", len(msgs), err)
	}
	last := msgs[len(msgs)-1].Pos
	testsvc.Eventually(r.t, 30*time.Second, fmt.Sprintf("the writer at position %d", last), func() bool { return w.Stats().Position >= last })
}

func (r *rig) count(asset string) float64 {
	r.t.Helper()
	q := telemetry.Query{Measurement: "gpu", Asset: asset, Field: "temp_c", From: r.base.Add(-time.Hour), To: r.base.Add(time.Hour), Step: 2 * time.Hour, Agg: telemetry.AggCount}
	got, err := r.ts.Query(context.Background(), q)
	if err != nil {
		r.t.Fatal(err)
	}
	n := 0.0
	for _, w := range got { // two windows when the points straddle an even UTC hour
		n += w.Value
	}
	return n
}

func TestWriterCopiesTelemetryAndResumes(t *testing.T) {
	r := newRig(t)
	w, stop := r.writer()
	for i := range 50 {
		r.submit(i)
	}
	r.waitWritten(w)
	if got := r.count("srv-s1-001.gpu0"); got != 50 {
		t.Errorf("points of gpu0 = %v, want 50", got)
	}
	st := w.Stats()
	if st.Messages != 50 || st.Points != 100 || st.BadMessages != 0 {
		t.Errorf("Stats() = %+v, want 50 telemetry messages, 100 points", st)
	}
	latest, err := r.ts.Latest(context.Background(), "srv-s1-001.gpu1")
	want := r.base.Add(49 * time.Second)
	if err != nil || len(latest) != 13 || !latest[0].Time.Equal(want) {
		t.Fatalf("Latest(gpu1) = %v, %v, want 13 fields at %s", latest, err, want)
	}
	for _, v := range latest {
		if v.Field == "temp_c" && v.Value != 149 || v.Field == "mem_temp_c" && v.Value != 70 {
			t.Errorf("Latest(gpu1) %s = %v, want temp_c 149, mem_temp_c 70", v.Field, v.Value)
		}
	}

	// Stop the writer; messages stored meanwhile are picked up from the
	// persisted cursor by the next one, and nothing is written twice.
	stop()
	cur, err := r.store.Cursor(telemetrywriter.CursorName)
	if err != nil || cur != st.Position {
		t.Errorf("Cursor = %d, %v, want %d", cur, err, st.Position)
	}
	for i := 50; i < 60; i++ {
		r.submit(i)
	}
	w2, _ := r.writer()
	r.waitWritten(w2)
	if got := r.count("srv-s1-001.gpu0"); got != 60 {
		t.Errorf("points of gpu0 after restart = %v, want 60", got)
	}
	if st := w2.Stats(); st.Messages != 10 {
		t.Errorf("second writer Stats() = %+v, want 10 messages (the rest were done)", st)
	}
}

func TestAppendGPUPoints(t *testing.T) {
	env := wire.Envelope{Gateway: gw, Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	body := wire.Telemetry{GPUs: []wire.GPUSample{{Asset: "a.gpu0", TempC: 61, MemTempC: 72, ECCDoubleBit: 2}, {Asset: "a.gpu1", TempC: 50}}}
	pts, _ := telemetrywriter.AppendGPUPoints(nil, nil, &env, &body, "s1")
	if len(pts) != 2 || len(pts[0].Fields) != 13 || len(pts[1].Fields) != 12 {
		t.Fatalf("AppendGPUPoints = %d points with %d, %d fields, want 2 with 13 and 12 (no mem_temp_c)", len(pts), len(pts[0].Fields), len(pts[1].Fields))
	}
	for _, p := range pts {
		if err := p.Validate(); err != nil {
			t.Errorf("point %s: Validate() = %v", p.Asset, err)
		}
		if p.Tags != (telemetry.Tags{Site: "s1", Gateway: gw, Kind: "gpu"}) || !p.Time.Equal(env.Time) {
			t.Errorf("point %s tags %+v time %s, want s1/%s/gpu at %s", p.Asset, p.Tags, p.Time, gw, env.Time)
		}
	}
	got := map[string]float64{}
	for _, f := range pts[0].Fields {
		got[f.Name] = f.Value
	}
	if got["temp_c"] != 61 || got["mem_temp_c"] != 72 || got["ecc_dbe"] != 2 {
		t.Errorf("gpu0 fields = %v, want temp_c 61, mem_temp_c 72, ecc_dbe 2", got)
	}
}

// BenchmarkMessageToPoints is the writer's own cost per telemetry message
// of 8 GPUs: decode the stored envelope and body, make the 8 points.
func BenchmarkMessageToPoints(b *testing.B) {
	body := wire.Telemetry{Host: "srv-s1-001"}
	for i := range 8 {
		body.GPUs = append(body.GPUs, wire.GPUSample{Asset: fmt.Sprintf("srv-s1-001.gpu%d", i), Index: i, UUID: "GPU-x", TempC: 61, MemTempC: 70, PowerW: 400, UtilPct: 90, MemUtilPct: 50, SMClockMHz: 1980, MemClockMHz: 2619})
	}
	raw, err := wire.Seal(key(), gw, 1, time.Now(), wire.KindTelemetry, body)
	if err != nil {
		b.Fatal(err)
	}
	var pts []telemetry.Point
	var fields []telemetry.Field
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		env, err := wire.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		tel, err := wire.DecodeBody[wire.Telemetry](&env)
		if err != nil {
			b.Fatal(err)
		}
		pts, fields = telemetrywriter.AppendGPUPoints(pts[:0], fields[:0], &env, &tel, "s1")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*8), "ns/point")
}

// Package telemetrytest is the contract test suite every telemetry.Store
// backend runs: Run(t, open) from the backend's own tests, against its real
// storage (a temp directory, a real InfluxDB).
package telemetrytest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"twinchain/internal/telemetry"
)

// Options are what a test asks of the store it opens.
type Options struct {
	Retention time.Duration
	Now       func() time.Time
}

// Open opens a store over the storage named by dir: a fresh directory per
// test. Opening the same dir again after Close must see the same data (an
// InfluxDB backend maps dir to its own database and keeps its replay log in
// it). Open registers nothing in t.Cleanup; the suite closes the store.
type Open func(t *testing.T, dir string, o Options) telemetry.Store

// Run runs the contract suite against the backend that open opens.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Open)
	}{
		{"Aggregates", testAggregates},
		{"AlignedWindowsAndBounds", testBounds},
		{"TagsDoNotSplitSeries", testTags},
		{"OverwriteSameTime", testOverwrite},
		{"Latest", testLatest},
		{"Retention", testRetention},
		{"InvalidPoints", testInvalidPoints},
		{"InvalidQueries", testInvalidQueries},
		{"ConcurrentWriters", testConcurrent},
		{"Reopen", testReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

const waitTimeout = 60 * time.Second

// harness is one open store with Run going.
type harness struct {
	t      *testing.T
	open   Open
	dir    string
	opts   Options
	store  telemetry.Store
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, open Open, o Options) *harness {
	t.Helper()
	if o.Now == nil {
		now := time.Now().UTC()
		o.Now = func() time.Time { return now }
	}
	h := &harness{t: t, open: open, dir: t.TempDir(), opts: o}
	h.reopen()
	t.Cleanup(h.close)
	return h
}

func (h *harness) reopen() {
	h.t.Helper()
	h.store = h.open(h.t, h.dir, h.opts)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func(s telemetry.Store) { h.done <- s.Run(ctx) }(h.store)
}

func (h *harness) close() {
	if h.store == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil && !errors.Is(err, context.Canceled) {
		h.t.Errorf("Run = %v, want nil or context.Canceled", err)
	}
	if err := h.store.Close(); err != nil {
		h.t.Errorf("Close = %v, want nil", err)
	}
	h.store = nil
}

func (h *harness) write(pts []telemetry.Point) {
	h.t.Helper()
	if err := h.store.Write(context.Background(), pts); err != nil {
		h.t.Fatalf("Write(%d points) = %v, want nil", len(pts), err)
	}
}

func (h *harness) flush() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.store.Flush(ctx); err != nil {
		h.t.Fatalf("Flush = %v, want nil", err)
	}
}

func (h *harness) query(q telemetry.Query) []telemetry.Sample {
	h.t.Helper()
	got, err := h.store.Query(context.Background(), q)
	if err != nil {
		h.t.Fatalf("Query(%+v) = %v, want nil", q, err)
	}
	return got
}

// base is a whole hour three hours before now: every test's points lie
// within the last few hours, inside any retention.
func base(o Options) time.Time {
	return o.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
}

func gpuPoint(asset string, ts time.Time, fields ...telemetry.Field) telemetry.Point {
	return telemetry.Point{
		Measurement: "gpu",
		Asset:       asset,
		Tags:        telemetry.Tags{Site: "s1", Gateway: "gw-s1-01", Kind: "gpu"},
		Fields:      fields,
		Time:        ts,
	}
}

// expect aggregates the values of one field per window, as a store should.
func expect(vals map[time.Time]float64, from, to time.Time, step time.Duration, agg telemetry.Agg) []telemetry.Sample {
	type acc struct {
		sum, min, max, last float64
		n                   int
		lastT               time.Time
	}
	byWin := map[time.Time]*acc{}
	for ts, v := range vals {
		if ts.Before(from) || !ts.Before(to) {
			continue
		}
		w := telemetry.WindowStart(ts, step)
		a := byWin[w]
		if a == nil {
			a = &acc{min: v, max: v, last: v, lastT: ts}
			byWin[w] = a
		}
		a.sum += v
		a.n++
		a.min = math.Min(a.min, v)
		a.max = math.Max(a.max, v)
		if !ts.Before(a.lastT) {
			a.last, a.lastT = v, ts
		}
	}
	var out []telemetry.Sample
	for w, a := range byWin {
		v := map[telemetry.Agg]float64{
			telemetry.AggMean: a.sum / float64(a.n), telemetry.AggMin: a.min, telemetry.AggMax: a.max,
			telemetry.AggLast: a.last, telemetry.AggCount: float64(a.n),
		}[agg]
		out = append(out, telemetry.Sample{Time: w, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

func sameSamples(got, want []telemetry.Sample) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !got[i].Time.Equal(want[i].Time) {
			return false
		}
		d := math.Abs(got[i].Value - want[i].Value)
		if d > 1e-9*math.Max(1, math.Abs(want[i].Value)) {
			return false
		}
	}
	return true
}

func checkQuery(t *testing.T, h *harness, q telemetry.Query, want []telemetry.Sample) {
	t.Helper()
	got := h.query(q)
	if !sameSamples(got, want) {
		t.Errorf("Query(%s %s %s step %s) = %v, want %v", q.Asset, q.Field, q.Agg, q.Step, got, want)
	}
}

func testAggregates(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	rng := rand.New(rand.NewPCG(1, 2))
	temps := map[string]map[time.Time]float64{"srv-s1-001.gpu0": {}, "srv-s1-001.gpu1": {}}
	power := map[time.Time]float64{}
	var pts []telemetry.Point
	for i := range 90 { // 15 minutes, one point every 10 s, unevenly valued
		ts := b.Add(time.Duration(i) * 10 * time.Second).Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
		for asset, m := range temps {
			v := 30 + rng.Float64()*60
			m[ts] = v
			p := gpuPoint(asset, ts, telemetry.Field{Name: "temp_c", Value: v})
			if asset == "srv-s1-001.gpu0" {
				power[ts] = 100 + rng.Float64()*500
				p.Fields = append(p.Fields, telemetry.Field{Name: "power_w", Value: power[ts]})
			}
			pts = append(pts, p)
		}
	}
	h.write(pts)
	h.flush()
	from, to := b, b.Add(15*time.Minute)
	for _, agg := range []telemetry.Agg{telemetry.AggMean, telemetry.AggMin, telemetry.AggMax, telemetry.AggLast, telemetry.AggCount} {
		for _, step := range []time.Duration{time.Minute, 5 * time.Minute} {
			for asset, vals := range temps {
				q := telemetry.Query{Measurement: "gpu", Asset: asset, Field: "temp_c", From: from, To: to, Step: step, Agg: agg}
				checkQuery(t, h, q, expect(vals, from, to, step, agg))
			}
			q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-001.gpu0", Field: "power_w", From: from, To: to, Step: step, Agg: agg}
			checkQuery(t, h, q, expect(power, from, to, step, agg))
		}
	}
	// A field the asset never had, an unknown asset: no windows, no error.
	for _, q := range []telemetry.Query{
		{Measurement: "gpu", Asset: "srv-s1-001.gpu1", Field: "power_w", From: from, To: to, Step: time.Minute, Agg: telemetry.AggMean},
		{Measurement: "gpu", Asset: "srv-none", Field: "temp_c", From: from, To: to, Step: time.Minute, Agg: telemetry.AggMean},
	} {
		if got := h.query(q); len(got) != 0 {
			t.Errorf("Query(%s %s) = %v, want no windows", q.Asset, q.Field, got)
		}
	}
}

func testBounds(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	vals := map[time.Time]float64{}
	var pts []telemetry.Point
	// Points in minutes 0, 2 and 4 only; one exactly on each boundary.
	for _, off := range []time.Duration{0, 20 * time.Second, 2 * time.Minute, 2*time.Minute + 59*time.Second, 4 * time.Minute} {
		ts := b.Add(off)
		vals[ts] = float64(off / time.Second)
		pts = append(pts, gpuPoint("srv-s1-002.gpu0", ts, telemetry.Field{Name: "temp_c", Value: vals[ts]}))
	}
	h.write(pts)
	h.flush()
	q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-002.gpu0", Field: "temp_c", Step: time.Minute, Agg: telemetry.AggCount}
	// [b, b+4m): the point at b+4m is out; empty windows 1 and 3 are left out.
	q.From, q.To = b, b.Add(4*time.Minute)
	checkQuery(t, h, q, expect(vals, b, b.Add(4*time.Minute), time.Minute, telemetry.AggCount))
	// An unaligned range is widened to whole windows: from b+30s starts at b,
	// to b+4m+1s ends at b+5m.
	q.From, q.To = b.Add(30*time.Second), b.Add(4*time.Minute+time.Second)
	checkQuery(t, h, q, expect(vals, b, b.Add(5*time.Minute), time.Minute, telemetry.AggCount))
	if got := q.Aligned(); !got.From.Equal(b) || !got.To.Equal(b.Add(5*time.Minute)) {
		t.Errorf("Aligned() = [%s, %s), want [%s, %s)", got.From, got.To, b, b.Add(5*time.Minute))
	}
}

func testTags(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	p1 := gpuPoint("srv-s1-003.gpu0", b.Add(time.Second), telemetry.Field{Name: "temp_c", Value: 40})
	p2 := gpuPoint("srv-s1-003.gpu0", b.Add(2*time.Second), telemetry.Field{Name: "temp_c", Value: 50})
	p2.Tags.Gateway, p2.Tags.Site = "gw-s2-dock", "s2" // moved
	h.write([]telemetry.Point{p1, p2})
	h.flush()
	q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-003.gpu0", Field: "temp_c", From: b, To: b.Add(time.Minute), Step: time.Minute}
	for agg, want := range map[telemetry.Agg]float64{telemetry.AggCount: 2, telemetry.AggLast: 50, telemetry.AggMean: 45, telemetry.AggMin: 40} {
		q.Agg = agg
		checkQuery(t, h, q, []telemetry.Sample{{Time: b, Value: want}})
	}
}

func testOverwrite(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	ts := b.Add(90 * time.Second)
	h.write([]telemetry.Point{gpuPoint("srv-s1-004.gpu0", ts, telemetry.Field{Name: "temp_c", Value: 10})})
	h.flush()
	h.write([]telemetry.Point{gpuPoint("srv-s1-004.gpu0", ts, telemetry.Field{Name: "temp_c", Value: 20})})
	h.flush()
	q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-004.gpu0", Field: "temp_c", From: b, To: b.Add(time.Hour), Step: time.Hour}
	for agg, want := range map[telemetry.Agg]float64{telemetry.AggCount: 1, telemetry.AggMean: 20} {
		q.Agg = agg
		checkQuery(t, h, q, []telemetry.Sample{{Time: b, Value: want}})
	}
}

func testLatest(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	asset := "srv-s1-005.gpu0"
	h.write([]telemetry.Point{
		gpuPoint(asset, b.Add(time.Minute), telemetry.Field{Name: "temp_c", Value: 41}, telemetry.Field{Name: "xid_count", Value: 3}),
		gpuPoint(asset, b.Add(3*time.Minute), telemetry.Field{Name: "temp_c", Value: 43}, telemetry.Field{Name: "power_w", Value: 300}),
		gpuPoint(asset, b.Add(2*time.Minute), telemetry.Field{Name: "temp_c", Value: 42}, telemetry.Field{Name: "power_w", Value: 200}),
		{Measurement: "host", Asset: asset, Fields: []telemetry.Field{{Name: "fan_rpm", Value: 5000}}, Time: b.Add(time.Minute)},
		gpuPoint("srv-s1-005.gpu1", b.Add(4*time.Minute), telemetry.Field{Name: "temp_c", Value: 99}),
	})
	h.flush()
	got, err := h.store.Latest(context.Background(), asset)
	if err != nil {
		t.Fatalf("Latest(%s) = %v, want nil", asset, err)
	}
	want := []telemetry.Value{
		{Measurement: "gpu", Field: "power_w", Time: b.Add(3 * time.Minute), Value: 300},
		{Measurement: "gpu", Field: "temp_c", Time: b.Add(3 * time.Minute), Value: 43},
		{Measurement: "gpu", Field: "xid_count", Time: b.Add(time.Minute), Value: 3},
		{Measurement: "host", Field: "fan_rpm", Time: b.Add(time.Minute), Value: 5000},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Latest(%s) = %v, want %v", asset, got, want)
	}
	if got, err := h.store.Latest(context.Background(), "srv-none"); err != nil || len(got) != 0 {
		t.Errorf("Latest(srv-none) = %v, %v, want nothing, nil", got, err)
	}
}

func testRetention(t *testing.T, open Open) {
	h := start(t, open, Options{Retention: 24 * time.Hour})
	now := h.opts.Now()
	asset := "srv-s1-006.gpu0"
	old := now.Add(-48 * time.Hour).Truncate(time.Hour)
	recent := now.Add(-time.Hour).Truncate(time.Minute)
	h.write([]telemetry.Point{
		gpuPoint(asset, old, telemetry.Field{Name: "temp_c", Value: 1}, telemetry.Field{Name: "ecc_dbe", Value: 7}),
		gpuPoint(asset, recent, telemetry.Field{Name: "temp_c", Value: 2}),
	})
	h.flush()
	q := telemetry.Query{Measurement: "gpu", Asset: asset, Field: "temp_c", From: now.Add(-72 * time.Hour).Truncate(time.Hour), To: now.Add(time.Hour).Truncate(time.Hour), Step: time.Hour, Agg: telemetry.AggCount}
	checkQuery(t, h, q, []telemetry.Sample{{Time: telemetry.WindowStart(recent, time.Hour), Value: 1}})
	got, err := h.store.Latest(context.Background(), asset)
	want := []telemetry.Value{{Measurement: "gpu", Field: "temp_c", Time: recent, Value: 2}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Latest(%s) = %v, %v, want %v (the point past retention hidden)", asset, got, err, want)
	}
}

func testInvalidPoints(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	good := gpuPoint("srv-s1-007.gpu0", b.Add(time.Second), telemetry.Field{Name: "temp_c", Value: 33})
	bad := []telemetry.Point{
		gpuPoint("srv-s1-007.gpu0", b, telemetry.Field{Name: "temp_c", Value: math.NaN()}),
		gpuPoint("srv-s1-007.gpu0", b, telemetry.Field{Name: "temp_c", Value: math.Inf(1)}),
		gpuPoint("srv-s1-007.gpu0", b),
		gpuPoint("srv s1", b, telemetry.Field{Name: "temp_c", Value: 1}),
		gpuPoint("srv-s1-007.gpu0", b, telemetry.Field{Name: "Temp C", Value: 1}),
		gpuPoint("srv-s1-007.gpu0", time.Time{}, telemetry.Field{Name: "temp_c", Value: 1}),
		{Measurement: "gpu,x=1", Asset: "srv-s1-007.gpu0", Fields: []telemetry.Field{{Name: "temp_c", Value: 1}}, Time: b},
		{Measurement: "gpu", Asset: "srv-s1-007.gpu0", Tags: telemetry.Tags{Gateway: "gw 1\n"}, Fields: []telemetry.Field{{Name: "temp_c", Value: 1}}, Time: b},
	}
	err := h.store.Write(context.Background(), append(bad, good))
	var skipped *telemetry.SkippedError
	if !errors.Is(err, telemetry.ErrInvalidPoint) || !errors.As(err, &skipped) || skipped.Skipped != len(bad) {
		t.Fatalf("Write(%d bad, 1 good) = %v, want a SkippedError of %d wrapping ErrInvalidPoint", len(bad), err, len(bad))
	}
	h.flush()
	q := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-007.gpu0", Field: "temp_c", From: b, To: b.Add(time.Minute), Step: time.Minute, Agg: telemetry.AggMean}
	checkQuery(t, h, q, []telemetry.Sample{{Time: b, Value: 33}})
}

func testInvalidQueries(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	ok := telemetry.Query{Measurement: "gpu", Asset: "srv-s1-008.gpu0", Field: "temp_c", From: b, To: b.Add(time.Hour), Step: time.Minute, Agg: telemetry.AggMean}
	if _, err := h.store.Query(context.Background(), ok); err != nil {
		t.Fatalf("Query(valid) = %v, want nil", err)
	}
	cases := map[string]func(q *telemetry.Query){
		"empty range":    func(q *telemetry.Query) { q.To = q.From },
		"reversed range": func(q *telemetry.Query) { q.From, q.To = q.To, q.From },
		"zero from":      func(q *telemetry.Query) { q.From = time.Time{} },
		"zero step":      func(q *telemetry.Query) { q.Step = 0 },
		"too many steps": func(q *telemetry.Query) { q.Step = time.Millisecond },
		"unknown agg":    func(q *telemetry.Query) { q.Agg = "median" },
		"bad field":      func(q *telemetry.Query) { q.Field = `temp") |> drop(` },
		"bad asset":      func(q *telemetry.Query) { q.Asset = `x" or true or "` },
		"no asset":       func(q *telemetry.Query) { q.Asset = "" },
		"bad measure":    func(q *telemetry.Query) { q.Measurement = "GPU" },
	}
	for name, mutate := range cases {
		q := ok
		mutate(&q)
		if _, err := h.store.Query(context.Background(), q); !errors.Is(err, telemetry.ErrInvalidQuery) {
			t.Errorf("Query(%s) = %v, want ErrInvalidQuery", name, err)
		}
	}
}

func testConcurrent(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	const writers, batches, perBatch = 4, 20, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			asset := fmt.Sprintf("srv-s1-009.gpu%d", w)
			for i := range batches {
				pts := make([]telemetry.Point, perBatch)
				for j := range pts {
					n := i*perBatch + j
					pts[j] = gpuPoint(asset, b.Add(time.Duration(n)*time.Second), telemetry.Field{Name: "temp_c", Value: float64(n)})
				}
				if err := h.store.Write(context.Background(), pts); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Write = %v, want nil", err)
	}
	h.flush()
	for w := range writers {
		q := telemetry.Query{Measurement: "gpu", Asset: fmt.Sprintf("srv-s1-009.gpu%d", w), Field: "temp_c", From: b, To: b.Add(2 * time.Hour), Step: 2 * time.Hour, Agg: telemetry.AggCount}
		checkQuery(t, h, q, []telemetry.Sample{{Time: telemetry.WindowStart(b, 2*time.Hour), Value: batches * perBatch}})
	}
}

func testReopen(t *testing.T, open Open) {
	h := start(t, open, Options{})
	b := base(h.opts)
	asset := "srv-s1-010.gpu0"
	var pts []telemetry.Point
	vals := map[time.Time]float64{}
	for i := range 120 {
		ts := b.Add(time.Duration(i) * time.Second)
		vals[ts] = float64(i % 7)
		pts = append(pts, gpuPoint(asset, ts, telemetry.Field{Name: "temp_c", Value: vals[ts]}))
	}
	h.write(pts[:60])
	h.flush()
	h.write(pts[60:]) // durable once Write returns, flushed or not
	h.close()
	h.reopen()
	h.flush()
	q := telemetry.Query{Measurement: "gpu", Asset: asset, Field: "temp_c", From: b, To: b.Add(2 * time.Minute), Step: time.Minute, Agg: telemetry.AggMean}
	checkQuery(t, h, q, expect(vals, b, b.Add(2*time.Minute), time.Minute, telemetry.AggMean))
	q.Agg = telemetry.AggCount
	checkQuery(t, h, q, expect(vals, b, b.Add(2*time.Minute), time.Minute, telemetry.AggCount))
}

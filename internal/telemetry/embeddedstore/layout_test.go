package embeddedstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
)

// TestOldLayout opens a store written with the day keys of earlier versions:
// its points stay readable beside the new ones, Latest takes each field's
// newest over both layouts, and retention deletes the old days until the
// old layout is no longer read.
func TestOldLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	point := func(asset string, age time.Duration, fields ...telemetry.Field) telemetry.Point {
		return telemetry.Point{Measurement: "gpu", Asset: asset, Fields: fields, Time: now.Add(-age)}
	}
	temp := func(v float64) telemetry.Field { return telemetry.Field{Name: "temp_c", Value: v} }
	power := telemetry.Field{Name: "power_w", Value: 300}

	old, err := embeddedstore.Open(dir, embeddedstore.WithLayout(embeddedstore.Options{Now: clock}, 'd', 24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Write(ctx, []telemetry.Point{
		point("a1", 72*time.Hour, temp(1)), point("a1", 2*time.Hour, temp(2), power), point("a2", 3*time.Hour, temp(3)),
	}); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := embeddedstore.Open(dir, embeddedstore.Options{Now: clock, Retention: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if got := s.LayoutsRead(); got != "de" {
		t.Fatalf("layouts read = %q, want \"de\"", got)
	}
	if err := s.Write(ctx, []telemetry.Point{point("a1", time.Hour, temp(4)), point("a3", time.Hour, temp(5))}); err != nil {
		t.Fatal(err)
	}
	mean := func(asset string) string {
		q := telemetry.Query{Measurement: "gpu", Asset: asset, Field: "temp_c", From: now.Add(-4 * 24 * time.Hour), To: now, Step: 24 * time.Hour, Agg: telemetry.AggMean}
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got)
	}
	day := telemetry.WindowStart(now, 24*time.Hour)
	// The retention hides the 72-hour-old point before Prune deletes it.
	for asset, want := range map[string]string{
		"a1": fmt.Sprint([]telemetry.Sample{{Time: day, Value: 3}}),
		"a2": fmt.Sprint([]telemetry.Sample{{Time: day, Value: 3}}),
		"a3": fmt.Sprint([]telemetry.Sample{{Time: day, Value: 5}}),
	} {
		if got := mean(asset); got != want {
			t.Errorf("Query(%s) = %s, want %s", asset, got, want)
		}
	}
	latest, err := s.Latest(ctx, "a1")
	want := []telemetry.Value{
		{Measurement: "gpu", Field: "power_w", Time: now.Add(-2 * time.Hour), Value: 300},
		{Measurement: "gpu", Field: "temp_c", Time: now.Add(-time.Hour), Value: 4},
	}
	if err != nil || fmt.Sprint(latest) != fmt.Sprint(want) {
		t.Errorf("Latest(a1) = %v, %v, want %v", latest, err, want)
	}

	// Day 3 ago goes; today's old points stay, and so does the old layout.
	if n, err := s.Prune(ctx); err != nil || n != 1 {
		t.Errorf("Prune() = %d, %v, want 1 day, nil", n, err)
	}
	if got := s.LayoutsRead(); got != "de" {
		t.Errorf("layouts read after the first Prune = %q, want \"de\"", got)
	}

	// Three days on, the old layout's last day is past the retention: the
	// layout goes, and a reopened store does not read it either.
	now = now.Add(72 * time.Hour)
	if err := s.Write(ctx, []telemetry.Point{point("a1", time.Minute, temp(6))}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = embeddedstore.Open(dir, embeddedstore.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.LayoutsRead(); got != "e" {
		t.Errorf("layouts read after the old days were deleted = %q, want \"e\"", got)
	}
	if got, want := mean("a1"), fmt.Sprint([]telemetry.Sample{{Time: day.Add(72 * time.Hour), Value: 6}}); got != want {
		t.Errorf("Query(a1) after Prune = %s, want %s", got, want)
	}
}

// TestBucketBoundaries checks windows that straddle buckets, a series
// missing from some buckets, and ranges reaching far past the data.
func TestBucketBoundaries(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s, err := embeddedstore.Open(t.TempDir(), embeddedstore.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := now.Add(-time.Hour)
	var pts []telemetry.Point
	for i := 0; i < 600; i++ { // a1 every 10 s for 100 min, but not in buckets 2 and 3
		ts := start.Add(time.Duration(i) * 10 * time.Second)
		if m := i / 6; m < 20 || m >= 40 {
			pts = append(pts, telemetry.Point{Measurement: "gpu", Asset: "a1", Fields: []telemetry.Field{{Name: "temp_c", Value: float64(i)}}, Time: ts})
		}
		pts = append(pts, telemetry.Point{Measurement: "gpu", Asset: "a2", Fields: []telemetry.Field{{Name: "temp_c", Value: 1}}, Time: ts})
	}
	if err := s.Write(ctx, pts); err != nil {
		t.Fatal(err)
	}
	q := telemetry.Query{Measurement: "gpu", Asset: "a1", Field: "temp_c", From: start.Add(30 * time.Second), To: start.Add(60 * time.Minute), Step: 90 * time.Second, Agg: telemetry.AggCount}
	got, err := s.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var want []telemetry.Sample
	for w := q.Aligned().From; w.Before(q.To); w = w.Add(q.Step) {
		n := 0
		for i := 0; i < 600; i++ {
			ts := start.Add(time.Duration(i) * 10 * time.Second)
			if m := i / 6; (m < 20 || m >= 40) && !ts.Before(w) && ts.Before(w.Add(90*time.Second)) {
				n++
			}
		}
		if n > 0 {
			want = append(want, telemetry.Sample{Time: w, Value: float64(n)})
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Query over buckets = %v, want %v", got, want)
	}
	// A range of 50 years costs a few seeks, not one per bucket.
	long := telemetry.Query{Measurement: "gpu", Asset: "a1", Field: "temp_c", From: now.AddDate(-50, 0, 0), To: now.Add(24 * time.Hour), Step: 24 * time.Hour, Agg: telemetry.AggCount}
	t0 := time.Now()
	got, err = s.Query(ctx, long)
	if err != nil || len(got) != 1 || got[0].Value != 480 {
		t.Errorf("Query over 50 years = %v, %v, want one window of 480", got, err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Query over 50 years took %s", d)
	}
	latest, err := s.Latest(ctx, "a1")
	if err != nil || len(latest) != 1 || latest[0].Value != 599 {
		t.Errorf("Latest(a1) = %v, %v, want 599", latest, err)
	}
}

// TestOldLayoutRewrite: a point stored with a day key before the upgrade and
// written again after it (the telemetry writer rewrites the points since its
// cursor after a crash) replaces itself: counted once, with the new value.
// Points of later days take the bucket keys.
func TestOldLayoutRewrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	point := func(at time.Time, v float64) telemetry.Point { return tempPoint("a1", at, v) }
	old, err := embeddedstore.Open(dir, embeddedstore.WithLayout(embeddedstore.Options{Now: clock}, 'd', 24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Write(ctx, []telemetry.Point{point(now.Add(-time.Minute), 1)}); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := embeddedstore.Open(dir, embeddedstore.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tomorrow := telemetry.WindowStart(now, 24*time.Hour).Add(24 * time.Hour)
	if err := s.Write(ctx, []telemetry.Point{point(now.Add(-time.Minute), 2), point(tomorrow.Add(time.Hour), 3)}); err != nil {
		t.Fatal(err)
	}
	now = tomorrow.Add(2 * time.Hour)
	q := telemetry.Query{Measurement: "gpu", Asset: "a1", Field: "temp_c", From: tomorrow.Add(-24 * time.Hour), To: now, Step: 24 * time.Hour}
	for agg, want := range map[telemetry.Agg]string{
		telemetry.AggCount: fmt.Sprint([]telemetry.Sample{{Time: q.From, Value: 1}, {Time: tomorrow, Value: 1}}),
		telemetry.AggMean:  fmt.Sprint([]telemetry.Sample{{Time: q.From, Value: 2}, {Time: tomorrow, Value: 3}}),
	} {
		q.Agg = agg
		if got, err := s.Query(ctx, q); err != nil || fmt.Sprint(got) != want {
			t.Errorf("Query(%s) = %v, %v, want %s", agg, got, err, want)
		}
	}
}

// TestOldLayouts: a store written with day keys, then with 10-minute
// buckets, then with 2-minute ones and float values, then with today's
// layout: all four are read, a point written again lands in the layout that
// holds its time (counted once, with the new value, in that layout's
// encoding), and retention retires the old layouts one after the other.
func TestOldLayouts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	day1 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	day := func(n int) time.Time { return day1.Add(time.Duration(n-1) * 24 * time.Hour) }
	now := day(1).Add(12 * time.Hour)
	clock := func() time.Time { return now }
	point := func(at time.Time, v float64) telemetry.Point { return tempPoint("a1", at, v) }
	for i, old := range []struct {
		prefix byte
		width  time.Duration
		v      float64
	}{{'d', 24 * time.Hour, 1}, {'b', 10 * time.Minute, 2}, {'c', 2 * time.Minute, 2.5}} {
		s, err := embeddedstore.Open(dir, embeddedstore.WithLayout(embeddedstore.Options{Now: clock}, old.prefix, old.width))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, []telemetry.Point{point(now.Add(-time.Hour), old.v)}); err != nil {
			t.Fatal(err)
		}
		if got, want := s.LayoutsRead(), "dbc"[:i+1]; got != want {
			t.Errorf("layouts read = %q, want %q", got, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		now = now.Add(24 * time.Hour)
	}
	s, err := embeddedstore.Open(dir, embeddedstore.Options{Now: clock, Retention: 60 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	layouts := func(when, want string) {
		t.Helper()
		if got := s.LayoutsRead(); got != want {
			t.Errorf("layouts read %s = %q, want %q", when, got, want)
		}
	}
	prune := func() {
		t.Helper()
		if _, err := s.Prune(ctx); err != nil {
			t.Fatal(err)
		}
	}
	layouts("at the start", "dbce")
	// Each old day's point again, in its layout, and a new one. 1/3 is no
	// decimal: it keeps its float64 bits.
	if err := s.Write(ctx, []telemetry.Point{point(day(1).Add(11*time.Hour), 10), point(day(2).Add(11*time.Hour), 20),
		point(day(3).Add(11*time.Hour), 30.5), point(day(4).Add(10*time.Hour), 1.0/3), point(day(4).Add(11*time.Hour), 3.25)}); err != nil {
		t.Fatal(err)
	}
	query := func(agg telemetry.Agg) string {
		q := telemetry.Query{Measurement: "gpu", Asset: "a1", Field: "temp_c", From: day(1), To: day(5), Step: 24 * time.Hour, Agg: agg}
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got)
	}
	// The retention (60 h) hides day 1 already.
	if got, want := query(telemetry.AggCount), fmt.Sprint([]telemetry.Sample{{Time: day(2), Value: 1}, {Time: day(3), Value: 1}, {Time: day(4), Value: 2}}); got != want {
		t.Errorf("count per day = %s, want %s", got, want)
	}
	if got, want := query(telemetry.AggMin), fmt.Sprint([]telemetry.Sample{{Time: day(2), Value: 20}, {Time: day(3), Value: 30.5}, {Time: day(4), Value: 1.0 / 3}}); got != want {
		t.Errorf("min per day = %s, want %s", got, want)
	}
	if latest, err := s.Latest(ctx, "a1"); err != nil || len(latest) != 1 || latest[0].Value != 3.25 {
		t.Errorf("Latest(a1) = %v, %v, want 3.25", latest, err)
	}
	prune()
	layouts("after day 1 was deleted", "bce")
	for _, want := range []string{"ce", "e"} {
		now = now.Add(24 * time.Hour)
		if err := s.Write(ctx, []telemetry.Point{point(now.Add(-time.Minute), 4.5)}); err != nil {
			t.Fatal(err)
		}
		prune()
		layouts("a day later", want)
	}
	// Day 2's time is no longer an old layout's: a point of it takes the new keys.
	if err := s.Write(ctx, []telemetry.Point{point(day(2).Add(11*time.Hour), 5)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = embeddedstore.Open(dir, embeddedstore.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	layouts("after reopening", "e")
	if latest, err := s.Latest(ctx, "a1"); err != nil || len(latest) != 1 || latest[0].Value != 4.5 {
		t.Errorf("Latest(a1) after reopening = %v, %v, want 4.5", latest, err)
	}
}

// tempPoint is a gpu point of asset at with temp_c v.
func tempPoint(asset string, at time.Time, v float64) telemetry.Point {
	return telemetry.Point{Measurement: "gpu", Asset: asset, Fields: []telemetry.Field{{Name: "temp_c", Value: v}}, Time: at}
}

// TestLatestBound: Latest starts at the newest point it knows of, and still
// finds what it does not know: after a reopen a series' older point written
// first, a point ahead of Latest's range that the clock then reaches, a
// series silent for weeks.
func TestLatestBound(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := embeddedstore.Open(dir, embeddedstore.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []telemetry.Point{tempPoint("a1", now.Add(-time.Minute), 2), tempPoint("a2", now.Add(-20*24*time.Hour), 7)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = embeddedstore.Open(dir, embeddedstore.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	latest := func(asset string, want float64) {
		t.Helper()
		got, err := s.Latest(ctx, asset)
		if err != nil || len(got) != 1 || got[0].Value != want {
			t.Errorf("Latest(%s) = %v, %v, want %g", asset, got, err, want)
		}
	}
	if err := s.Write(ctx, []telemetry.Point{tempPoint("a1", now.Add(-time.Hour), 1)}); err != nil {
		t.Fatal(err)
	}
	latest("a1", 2) // not the older point written after the reopen
	if err := s.Write(ctx, []telemetry.Point{tempPoint("a1", now.Add(3*time.Hour), 9)}); err != nil {
		t.Fatal(err)
	}
	latest("a1", 2) // not the one 3 h ahead, past Latest's range
	latest("a2", 7)
	latest("a2", 7)
	now = now.Add(3 * time.Hour)
	latest("a1", 9)
}

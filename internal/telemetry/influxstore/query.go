package influxstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"twinchain/internal/telemetry"
)

// fluxAgg maps an aggregate to its Flux function. Series of one asset with
// different tags are merged (group) first; last needs them in time order.
var fluxAgg = map[telemetry.Agg]string{
	telemetry.AggMean:  "mean",
	telemetry.AggMin:   "min",
	telemetry.AggMax:   "max",
	telemetry.AggLast:  "last",
	telemetry.AggCount: "count",
}

// windowFlux is the Flux query of a chart: every name in it has passed
// telemetry.Query.Validate, so the %q quoting is a valid Flux string.
// InfluxDB 1.8 (Flux 0.65) lets a point exactly at range's stop through
// into an empty window, so a second filter keeps the range half-open.
func (s *Store) windowFlux(q telemetry.Query, from time.Time) string {
	sortStep := ""
	if q.Agg == telemetry.AggLast {
		sortStep = "\n  |> sort(columns: [\"_time\"])"
	}
	return fmt.Sprintf(`from(bucket: %q)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == %q and r._field == %q and r.asset == %q)
  |> filter(fn: (r) => r._time < %s)
  |> group()%s
  |> aggregateWindow(every: %dns, fn: %s, createEmpty: false, timeSrc: "_start")
  |> keep(columns: ["_time", "_value"])`,
		s.cfg.Bucket, fluxTime(from), fluxTime(q.To), q.Measurement, q.Field, q.Asset, fluxTime(q.To), sortStep, q.Step.Nanoseconds(), fluxAgg[q.Agg])
}

func fluxTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Query aggregates one field of one asset per aligned window with Flux.
func (s *Store) Query(ctx context.Context, q telemetry.Query) ([]telemetry.Sample, error) {
	if s.closed.Load() {
		return nil, telemetry.ErrClosed
	}
	if err := q.Validate(); err != nil {
		return nil, err
	}
	q = q.Aligned()
	from := q.From
	if rs := telemetry.RetentionStart(s.now(), s.cfg.Retention); rs.After(from) {
		from = rs
	}
	if !from.Before(q.To) {
		return nil, nil
	}
	res, err := s.query.Query(ctx, s.windowFlux(q, from))
	if err != nil {
		return nil, fmt.Errorf("influxdb query: %w: %w", telemetry.ErrUnavailable, err)
	}
	defer func() { _ = res.Close() }() // only read from
	var out []telemetry.Sample
	for res.Next() {
		r := res.Record()
		v, ok := number(r.Value())
		if !ok {
			continue
		}
		out = append(out, telemetry.Sample{Time: r.Time().UTC(), Value: v})
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("influxdb query: %w: %w", telemetry.ErrUnavailable, err)
	}
	// The window that begins before a retention-clamped start is reported
	// at that start by Flux; report it at its aligned start, as charts
	// expect.
	for i := range out {
		out[i].Time = telemetry.WindowStart(out[i].Time, q.Step)
	}
	slices.SortFunc(out, func(a, b telemetry.Sample) int { return a.Time.Compare(b.Time) })
	return out, nil
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

// Latest returns the newest value of each field of asset with Flux: the
// last point of each series, then the newest per measurement and field.
func (s *Store) Latest(ctx context.Context, asset string) ([]telemetry.Value, error) {
	if s.closed.Load() {
		return nil, telemetry.ErrClosed
	}
	if asset == "" || !telemetry.ValidTagValue(asset) {
		return nil, fmt.Errorf("asset %q: %w", asset, telemetry.ErrInvalidQuery)
	}
	from, to := telemetry.LatestRange(s.now(), s.cfg.Retention)
	flux := fmt.Sprintf(`from(bucket: %q)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r.asset == %q)
  |> last()
  |> group(columns: ["_measurement", "_field"])
  |> sort(columns: ["_time"])
  |> last()`, s.cfg.Bucket, fluxTime(from), fluxTime(to), asset)
	res, err := s.query.Query(ctx, flux)
	if err != nil {
		return nil, fmt.Errorf("influxdb latest: %w: %w", telemetry.ErrUnavailable, err)
	}
	defer func() { _ = res.Close() }() // only read from
	var out []telemetry.Value
	for res.Next() {
		r := res.Record()
		v, ok := number(r.Value())
		if !ok {
			continue
		}
		out = append(out, telemetry.Value{Measurement: r.Measurement(), Field: r.Field(), Time: r.Time().UTC(), Value: v})
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("influxdb latest: %w: %w", telemetry.ErrUnavailable, err)
	}
	slices.SortFunc(out, func(a, b telemetry.Value) int {
		if c := strings.Compare(a.Measurement, b.Measurement); c != 0 {
			return c
		}
		return strings.Compare(a.Field, b.Field)
	})
	return out, nil
}

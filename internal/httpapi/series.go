package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/telemetry"
	"twinchain/internal/twinstore"
)

// TelemetryReader is what the chart routes read; every telemetry.Store
// (embeddedstore, influxstore) is one.
type TelemetryReader interface {
	Query(ctx context.Context, q telemetry.Query) ([]telemetry.Sample, error)
	Latest(ctx context.Context, asset string) ([]telemetry.Value, error)
}

// DefaultMeasurement is the measurement a bare metric name refers to.
const DefaultMeasurement = "gpu"

// seriesTimeout bounds one chart query.
const seriesTimeout = 30 * time.Second

// chartWindows is how many windows a chart gets when it names no step.
const chartWindows = 300

func (s *Server) registerSeries(api router) {
	if s.opts.Telemetry == nil {
		api.get("/assets/:id/series", unavailable("the telemetry store"))
		api.get("/assets/:id/latest", unavailable("the telemetry store"))
		return
	}
	api.get("/assets/:id/series", s.assetSeries)
	api.get("/assets/:id/latest", s.assetLatest)
}

// Series is the answer of GET /assets/:id/series.
type Series struct {
	Asset       string        `json:"asset"`
	Measurement string        `json:"measurement"`
	Metric      string        `json:"metric"`
	Agg         telemetry.Agg `json:"agg"`
	From        time.Time     `json:"from"` // aligned to step
	To          time.Time     `json:"to"`
	StepSeconds float64       `json:"step_seconds"`
	Points      []SeriesPoint `json:"points"`
}

// SeriesPoint is one window: its start and its aggregate.
type SeriesPoint struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// GET /api/v1/assets/:id/series?metric=temp_c&from=&to=&step=&agg=
//
// metric is a field name, optionally "measurement.field" (default
// measurement "gpu"). from and to are RFC 3339 (default the last hour); step
// is a duration such as 30s or 5m (default: about 300 windows); agg is mean
// (default), min, max, last or count. Windows without data are left out.
func (s *Server) assetSeries(c *fiber.Ctx) error {
	id := param(c, "id")
	q, err := parseSeriesQuery(c, id, s.opts.Now())
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	if err := s.assetExists(c, id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), seriesTimeout)
	defer cancel()
	samples, err := s.opts.Telemetry.Query(ctx, q)
	if err != nil {
		return telemetryError(c, err)
	}
	a := q.Aligned()
	out := Series{Asset: id, Measurement: q.Measurement, Metric: q.Field, Agg: q.Agg, From: a.From, To: a.To, StepSeconds: q.Step.Seconds(), Points: make([]SeriesPoint, len(samples))}
	for i, sm := range samples {
		out.Points[i] = SeriesPoint{T: sm.Time, V: sm.Value}
	}
	return c.JSON(out)
}

// GET /api/v1/assets/:id/latest: the newest value of every field.
func (s *Server) assetLatest(c *fiber.Ctx) error {
	id := param(c, "id")
	if err := s.assetExists(c, id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), seriesTimeout)
	defer cancel()
	vals, err := s.opts.Telemetry.Latest(ctx, id)
	if err != nil {
		return telemetryError(c, err)
	}
	type item struct {
		Measurement string    `json:"measurement"`
		Metric      string    `json:"metric"`
		T           time.Time `json:"t"`
		V           float64   `json:"v"`
	}
	items := make([]item, len(vals))
	for i, v := range vals {
		items[i] = item{v.Measurement, v.Field, v.Time, v.Value}
	}
	return c.JSON(Page[item]{Items: items})
}

// assetExists answers 404 for an asset the twin store does not know; with
// no asset store every id is taken as given.
func (s *Server) assetExists(c *fiber.Ctx, id string) error {
	if s.opts.Assets == nil {
		return nil
	}
	_, err := s.opts.Assets.Asset(id)
	if errors.Is(err, twinstore.ErrNotFound) {
		return apiError(c, fiber.StatusNotFound, CodeNotFound, fmt.Sprintf("asset %s not found", id))
	}
	return err
}

func telemetryError(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, telemetry.ErrInvalidQuery):
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	case errors.Is(err, telemetry.ErrUnavailable), errors.Is(err, telemetry.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return apiError(c, fiber.StatusServiceUnavailable, CodeUnavailable, "telemetry store unavailable: "+err.Error())
	}
	return err
}

// parseSeriesQuery reads the query string of a chart request.
func parseSeriesQuery(c *fiber.Ctx, asset string, now time.Time) (telemetry.Query, error) {
	q := telemetry.Query{Asset: asset, Measurement: DefaultMeasurement, Agg: telemetry.AggMean}
	metric := c.Query("metric")
	if metric == "" {
		return q, errors.New("metric is required, e.g. metric=temp_c")
	}
	if m, f, ok := strings.Cut(metric, "."); ok {
		q.Measurement, q.Field = m, f
	} else {
		q.Field = metric
	}
	if !telemetry.ValidName(q.Measurement) || !telemetry.ValidName(q.Field) {
		return q, fmt.Errorf("metric %q: want a field name such as temp_c, or measurement.field", metric)
	}
	q.To = now
	if v := c.Query("to"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return q, fmt.Errorf("to %q: want RFC 3339, e.g. 2026-11-25T12:00:00Z", v)
		}
		q.To = t
	}
	q.From = q.To.Add(-time.Hour)
	if v := c.Query("from"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return q, fmt.Errorf("from %q: want RFC 3339, e.g. 2026-11-25T11:00:00Z", v)
		}
		q.From = t
	}
	if !q.To.After(q.From) {
		return q, fmt.Errorf("from %s is not before to %s", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	q.Step = ChartStep(q.To.Sub(q.From))
	if v := c.Query("step"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return q, fmt.Errorf("step %q: want a duration of at least 1s, e.g. 30s or 5m", v)
		}
		q.Step = d
	}
	if v := c.Query("agg"); v != "" {
		q.Agg = telemetry.Agg(v)
	}
	if err := q.Validate(); err != nil {
		return q, err
	}
	return q, nil
}

// chartSteps are the steps ChartStep picks from.
var chartSteps = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour,
}

// ChartStep is the smallest round step that splits span into at most about
// 300 windows.
func ChartStep(span time.Duration) time.Duration {
	for _, st := range chartSteps {
		if span/st <= chartWindows {
			return st
		}
	}
	return chartSteps[len(chartSteps)-1]
}

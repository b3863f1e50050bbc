// Package telemetry is the contract of twin-service's telemetry store: the
// time series of asset health readings (GPU temperatures, power, ECC counts,
// ...) behind the dashboard's charts. It has two backends, each in its own
// package: embeddedstore (on disk, the single-machine default) and influxstore
// (InfluxDB 2.x, or 1.8+ through its v2 API). Both pass the one contract test
// suite in telemetrytest.
//
// # Data model
//
// A Point is one sampling instant of one asset: a measurement ("gpu"), the
// asset id, three descriptive tags (site, gateway, asset kind), a set of float
// fields (temp_c, power_w, ...) and a time. A series is identified by
// measurement and asset; a chart asks for one field of one series. The tags
// are kept for filtering in the backend (InfluxDB) but never split a series:
// a GPU that moves to another gateway is still one line on its chart.
//
// Writing the same measurement, asset and time again overwrites the earlier
// values (the InfluxDB rule), so replaying points after a crash or an outage
// never counts a reading twice.
//
// # Concurrency
//
// Every method of Store is safe for concurrent use. Run must be running for
// an asynchronous backend to make progress; Flush waits for it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Sentinel errors. Backends wrap them with %w; callers test with errors.Is.
var (
	// ErrInvalidPoint: a point was malformed (empty or unsafe name, no
	// fields, a NaN or infinite value, a zero time). Write skips it and
	// writes the others.
	ErrInvalidPoint = errors.New("invalid telemetry point")
	// ErrInvalidQuery: a query's range, step, aggregate or names are bad.
	ErrInvalidQuery = errors.New("invalid telemetry query")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("telemetry store closed")
	// ErrUnavailable: the backend cannot answer now (a remote server is
	// down). Writes are not affected by it: they are buffered.
	ErrUnavailable = errors.New("telemetry backend unavailable")
)

// Store is a telemetry backend.
type Store interface {
	// Write stores points. When it returns nil, the points are durable:
	// on disk in the store, or in its on-disk replay log on their way to a
	// remote server. Invalid points are skipped and reported by an error
	// wrapping ErrInvalidPoint; the valid ones are still written. Write
	// does not keep pts (or their Fields) after it returns.
	Write(ctx context.Context, pts []Point) error
	// Flush waits until every point written before the call can be read by
	// Query and Latest, or ctx ends.
	Flush(ctx context.Context) error
	// Query aggregates one field of one asset per window of q.Step over
	// [q.From, q.To). Windows without points are left out.
	Query(ctx context.Context, q Query) ([]Sample, error)
	// Latest returns the newest value of each field of an asset, within
	// LatestLookback of now, sorted by measurement and field.
	Latest(ctx context.Context, asset string) ([]Value, error)
	// Run does the store's background work (sending, retention) until ctx
	// ends, then returns nil.
	Run(ctx context.Context) error
	// Close releases the store's files and connections. Call it after Run
	// has returned.
	Close() error
}

// Tags describe where a reading came from. They have few distinct values
// (sites, gateways, kinds of asset), so they keep series cardinality bounded.
type Tags struct {
	Site    string // e.g. "s1"; may be empty
	Gateway string // the gateway that sent it, e.g. "gw-srv-s1-001"
	Kind    string // the asset's kind, e.g. "gpu"
}

// Field is one named reading.
type Field struct {
	Name  string
	Value float64
}

// Point is one sampling instant of one asset.
type Point struct {
	Measurement string // e.g. "gpu"
	Asset       string // asset id, e.g. "srv-s1-001.gpu3"
	Tags        Tags
	Fields      []Field
	Time        time.Time
}

// Sample is one window of a chart: the window's start and its aggregate.
type Sample struct {
	Time  time.Time
	Value float64
}

// Value is the newest reading of one field.
type Value struct {
	Measurement string
	Field       string
	Time        time.Time
	Value       float64
}

// Agg is a window aggregate.
type Agg string

// The aggregates a query can ask for.
const (
	AggMean  Agg = "mean"
	AggMin   Agg = "min"
	AggMax   Agg = "max"
	AggLast  Agg = "last"
	AggCount Agg = "count"
)

// Valid reports whether a is a known aggregate.
func (a Agg) Valid() bool {
	switch a {
	case AggMean, AggMin, AggMax, AggLast, AggCount:
		return true
	}
	return false
}

// MaxWindows is the most windows one query may span.
const MaxWindows = 20000

// Query asks for one field of one asset, aggregated per window.
type Query struct {
	Measurement string
	Asset       string
	Field       string
	From, To    time.Time // [From, To)
	Step        time.Duration
	Agg         Agg
}

// Validate checks q.
func (q Query) Validate() error {
	switch {
	case !ValidName(q.Measurement):
		return fmt.Errorf("measurement %q: %w", q.Measurement, ErrInvalidQuery)
	case !ValidName(q.Field):
		return fmt.Errorf("field %q: %w", q.Field, ErrInvalidQuery)
	case !ValidTagValue(q.Asset) || q.Asset == "":
		return fmt.Errorf("asset %q: %w", q.Asset, ErrInvalidQuery)
	case !q.Agg.Valid():
		return fmt.Errorf("aggregate %q: %w", q.Agg, ErrInvalidQuery)
	case q.Step < time.Millisecond:
		return fmt.Errorf("step %s below 1ms: %w", q.Step, ErrInvalidQuery)
	case q.From.IsZero() || q.To.IsZero() || !q.To.After(q.From):
		return fmt.Errorf("range [%s, %s) is empty: %w", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339), ErrInvalidQuery)
	case q.To.Sub(q.From)/q.Step >= MaxWindows:
		return fmt.Errorf("%s in steps of %s is over %d windows: %w", q.To.Sub(q.From), q.Step, MaxWindows, ErrInvalidQuery)
	}
	return nil
}

// Aligned returns q with From rounded down and To rounded up to multiples of
// Step since the Unix epoch, so every window is whole and windows line up
// the same way in every backend (InfluxDB's windows are epoch-aligned).
func (q Query) Aligned() Query {
	q.From = WindowStart(q.From, q.Step)
	if end := WindowStart(q.To, q.Step); end.Before(q.To) {
		q.To = end.Add(q.Step)
	}
	return q
}

// WindowStart is the start of the epoch-aligned window of length step that
// holds t.
func WindowStart(t time.Time, step time.Duration) time.Time {
	ns := t.UnixNano()
	m := ns % int64(step)
	if m < 0 {
		m += int64(step)
	}
	return time.Unix(0, ns-m).UTC()
}

// LatestLookback is how far back Latest looks: the retention, or 30 days
// when data is kept forever.
func LatestLookback(retention time.Duration) time.Duration {
	if retention > 0 {
		return retention
	}
	return 30 * 24 * time.Hour
}

// LatestRange is the range Latest looks in at now: back LatestLookback, and
// an hour ahead for gateways whose clocks run fast.
func LatestRange(now time.Time, retention time.Duration) (from, to time.Time) {
	return now.Add(-LatestLookback(retention)), now.Add(time.Hour)
}

// RetentionStart is the oldest time a store with this retention still
// returns at now; the zero time when data is kept forever.
func RetentionStart(now time.Time, retention time.Duration) time.Time {
	if retention <= 0 {
		return time.Time{}
	}
	return now.Add(-retention)
}

// ValidName reports whether s may be a measurement or field name: 1 to 64
// characters from [a-z0-9_], starting with a letter. Such names need no
// escaping in line protocol, Flux or InfluxQL.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ValidTagValue reports whether s may be an asset id or tag value: at most
// 128 bytes from [A-Za-z0-9._:-] (ids of assets and gateways, site names).
// Empty is allowed (an absent tag).
func ValidTagValue(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks one point.
func (p *Point) Validate() error {
	switch {
	case !ValidName(p.Measurement):
		return fmt.Errorf("measurement %q: %w", p.Measurement, ErrInvalidPoint)
	case p.Asset == "" || !ValidTagValue(p.Asset):
		return fmt.Errorf("asset %q: %w", p.Asset, ErrInvalidPoint)
	case !ValidTagValue(p.Tags.Site) || !ValidTagValue(p.Tags.Gateway) || !ValidTagValue(p.Tags.Kind):
		return fmt.Errorf("asset %s: tags %+v: %w", p.Asset, p.Tags, ErrInvalidPoint)
	case len(p.Fields) == 0:
		return fmt.Errorf("asset %s: no fields: %w", p.Asset, ErrInvalidPoint)
	case p.Time.IsZero() || p.Time.Year() < 1971 || p.Time.Year() > 2200:
		return fmt.Errorf("asset %s: time %s: %w", p.Asset, p.Time, ErrInvalidPoint)
	}
	for _, f := range p.Fields {
		if !ValidName(f.Name) {
			return fmt.Errorf("asset %s: field %q: %w", p.Asset, f.Name, ErrInvalidPoint)
		}
		if math.IsNaN(f.Value) || math.IsInf(f.Value, 0) {
			return fmt.Errorf("asset %s: field %s = %v: %w", p.Asset, f.Name, f.Value, ErrInvalidPoint)
		}
	}
	return nil
}

// SkippedError reports the invalid points a Write skipped. It wraps
// ErrInvalidPoint.
type SkippedError struct {
	Skipped int
	First   error // why the first one was skipped
}

func (e *SkippedError) Error() string {
	return fmt.Sprintf("skipped %d invalid points, first: %v", e.Skipped, e.First)
}

func (e *SkippedError) Unwrap() error { return ErrInvalidPoint }

// Skipped accumulates the invalid points of one Write.
type Skipped struct{ err *SkippedError }

// Add records an invalid point.
func (s *Skipped) Add(err error) {
	if s.err == nil {
		s.err = &SkippedError{First: err}
	}
	s.err.Skipped++
}

// Err is nil when nothing was skipped, else a *SkippedError.
func (s *Skipped) Err() error {
	if s.err == nil {
		return nil
	}
	return s.err
}

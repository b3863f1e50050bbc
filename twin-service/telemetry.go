package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
	"twinchain/internal/telemetry/influxstore"
	"twinchain/internal/telemetry/telemetrywriter"
	"twinchain/internal/twinstore"
)

// telemetryPart is the configured telemetry store (embedded, or InfluxDB
// with its replay log) and the writer that feeds it from the message log.
type telemetryPart struct {
	store  telemetry.Store
	writer *telemetrywriter.Writer
}

// openTelemetry opens the telemetry store named by cfg.Telemetry and
// registers its metrics; it starts nothing.
func openTelemetry(cfg Config, msgs *twinstore.Store, in *ingest.Ingest, reg *registry.Registry, metrics *prometheus.Registry, log *slog.Logger) (*telemetryPart, error) {
	tc := cfg.Telemetry.WithDefaults()
	l := log.With("component", "telemetry", "backend", tc.Backend)
	p := &telemetryPart{}
	switch tc.Backend {
	case telemetry.BackendInfluxDB:
		dir := tc.Dir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "influx-replay")
		}
		s, err := influxstore.Open(dir, tc, influxstore.Options{Log: l})
		if err != nil {
			return nil, err
		}
		metrics.MustRegister(influxstore.NewCollector(s))
		p.store = s
	default:
		dir := tc.Dir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "telemetry")
		}
		s, err := embeddedstore.Open(dir, embeddedstore.Options{Retention: tc.Retention, Log: l})
		if err != nil {
			return nil, err
		}
		p.store = s
	}
	site := func(gw string) string { _, site, _ := reg.Lookup(gw); return site }
	p.writer = telemetrywriter.New(msgs, in, p.store, log.With("component", "telemetry-writer"), telemetrywriter.Options{Site: site})
	metrics.MustRegister(telemetrywriter.NewCollector(p.writer))
	l.Info("telemetry store open", "url", tc.URL, "bucket", tc.Bucket, "retention", tc.Retention)
	return p, nil
}

// Run runs the store's background work and the writer until ctx ends.
func (p *telemetryPart) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.store.Run(gctx) })
	g.Go(func() error { return p.writer.Run(gctx) })
	if err := g.Wait(); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}

// Close closes the store; call it after Run returned.
func (p *telemetryPart) Close() error { return p.store.Close() }

package detectsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alertstore"
	"twinchain/internal/detect/workorderstore"
	"twinchain/internal/ingest"
	"twinchain/internal/twin"
)

// FileName is the detection store in the data directory: alerts, their
// outbox, work orders and the detection cursors.
const FileName = "detect.db"

// Deps are what the service takes from the rest of twin-service.
type Deps struct {
	Logs    Logs
	Source  Source
	Known   KnownAssets
	Custody Custody              // optional
	MQTT    alertstore.Publisher // optional: the embedded broker
	// Events records alert lifecycle steps as twin events (the ingest's
	// Record), so alerts are anchored; optional.
	Events alertstore.EventRecorder
	// Approvals are the ledger's deployments in force, for the run-time
	// checks (unapproved_model, environment_drift); optional.
	Approvals detect.Approvals
	Log       *slog.Logger
	Now       func() time.Time
}

// Service is the detection part of twin-service: engine, alert store,
// dispatcher and work orders over one bbolt file.
type Service struct {
	db         *bolt.DB
	engine     *Engine
	alerts     *alertstore.Store
	orders     *workorderstore.Store
	dispatcher *alertstore.Dispatcher
	recorder   *alertstore.LifecycleRecorder // nil without Deps.Events
}

// Open opens (or creates) dataDir/detect.db and builds the components; it
// starts nothing.
func Open(dataDir string, cfg Config, d Deps) (*Service, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(filepath.Join(dataDir, FileName), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open detection store: %w", err)
	}
	s := &Service{db: db}
	if s.alerts, err = alertstore.NewStore(db, cfg.Alerts, d.Now); err != nil {
		_ = db.Close() // the error being returned says more
		return nil, err
	}
	if s.orders, err = workorderstore.NewStore(db, cfg.WorkOrders, d.Now); err != nil {
		_ = db.Close() // the error being returned says more
		return nil, err
	}
	s.engine = New(cfg, d.Logs, d.Source, d.Known, d.Custody, s.alerts, s.orders, d.Log.With("component", "detect"), d.Now)
	if d.Approvals != nil {
		s.engine.SetApprovals(d.Approvals)
	}
	s.dispatcher = alertstore.NewDispatcher(s.alerts, d.MQTT, d.Log.With("component", "alerts"), d.Now)
	if d.Events != nil {
		s.alerts.RecordLifecycle()
		s.recorder = alertstore.NewLifecycleRecorder(s.alerts, d.Events, permanent, d.Log.With("component", "alert-lifecycle"))
	}
	return s, nil
}

// permanent are the ingest's errors that retrying a lifecycle step cannot
// fix: no twin for the alert's asset, a refused change.
func permanent(err error) bool {
	return errors.Is(err, ingest.ErrNoAsset) || errors.Is(err, ingest.ErrInvalidChange)
}

// Run runs the engine and the dispatcher until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.engine.Run(ctx) })
	g.Go(func() error { return s.dispatcher.Run(ctx) })
	if s.recorder != nil {
		g.Go(func() error { return s.recorder.Run(ctx) })
	}
	return g.Wait()
}

// Close closes the store; call it after Run returned.
func (s *Service) Close() error { return s.db.Close() }

// Alerts is the alert store (for the API).
func (s *Service) Alerts() *alertstore.Store { return s.alerts }

// Orders is the work-order store (for the API).
func (s *Service) Orders() *workorderstore.Store { return s.orders }

// Recorder records alert lifecycle steps as twin events; nil without
// Deps.Events.
func (s *Service) Recorder() *alertstore.LifecycleRecorder { return s.recorder }

// MessageCursor is the message log position the detectors have read up to
// (as stored): retention may remove messages up to it.
func (s *Service) MessageCursor() (uint64, error) { return s.alerts.Cursor(cursorMessages) }

// Engine is the detection engine.
func (s *Service) Engine() *Engine { return s.engine }

// Dispatcher is the alert dispatcher.
func (s *Service) Dispatcher() *alertstore.Dispatcher { return s.dispatcher }

// Annotate is the ingest's annotator: it notes on a change event which
// approved work order covers it ("firmware.vbios covered by WO-3"), and which
// of its changes none covers. It reads only the work orders in memory.
func (s *Service) Annotate(e *twin.Event, next *twin.Asset) string {
	var anc []string
	if next != nil && next.Parent != "" {
		anc = []string{next.Parent}
	}
	var covered, not []string
	for _, c := range e.Changes {
		if c.Old == "" || !coverableField(c.Field) {
			continue
		}
		if id, ok := s.orders.Match(e.Asset, anc, c, e.Time); ok {
			covered = append(covered, c.Field+" covered by work order "+id)
		} else {
			not = append(not, c.Field)
		}
	}
	if len(covered) == 0 {
		return ""
	}
	note := strings.Join(covered, "; ")
	if len(not) > 0 {
		note += "; not covered by any approved work order: " + strings.Join(not, ", ")
	}
	return note
}

// coverableField is a tracked field a work order may explain.
func coverableField(f string) bool {
	for _, p := range []string{"firmware.", "identity.", "location.", "site", "parent"} {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	return false
}

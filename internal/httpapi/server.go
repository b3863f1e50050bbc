// Package httpapi is twin-service's HTTP API (Fiber) under /api/v1, plus
// /healthz, /readyz and /metrics. Each domain has its own file that
// registers its routes (assets.go, gateways.go, stream.go, ...); a domain
// whose dependency is not configured answers 503 "unavailable".
//
// Every route is registered through the policy table (policy.go: Routes),
// which says who may call it and puts the sign-in and role checks in front
// of it.
//
// To add a domain: add its optional dependency to Options (an interface
// declared in the domain's file), add its routes to Routes, write
// register<Domain>(api router) in its own file, and call it from New.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the API's dependencies; nil ones disable their routes.
type Options struct {
	Log      *slog.Logger
	Now      func() time.Time
	Assets   AssetStore    // assets.go
	Changes  AssetChanger  // assets.go: PATCH /assets/:id
	Events   EventLog      // stream.go
	Ingest   IngestSource  // stats and wake-ups: gateways.go, stream.go, metrics.go
	Gateways GatewayEditor // gateways.go
	Enroll   Enroller      // enroll.go
	Ledger   *LedgerDeps   // ledger.go
	// Approvals are the deployments in force (runtime.go); nil: none known.
	Approvals Approvals
	Ready     func() error // readyz: nil error when ready
	// Metrics is the registry /metrics serves; the API registers its own
	// collectors into it. nil disables /metrics.
	Metrics *prometheus.Registry
	// StreamMaxLag is how far (in events) an SSE client may fall behind
	// before it is sent "resync" and moved to the head; default 10000.
	StreamMaxLag uint64
	// StreamHeartbeat is the SSE keep-alive interval; default 15s.
	StreamHeartbeat time.Duration

	// Telemetry serves the chart routes (series.go).
	Telemetry TelemetryReader
	// Alerts and WorkOrders: alerts.go (the detection service).
	Alerts     AlertStore
	WorkOrders WorkOrderStore
	// Auth is the sign-in (auth.go); nil leaves /api/v1 open, acting as an
	// anonymous admin (tests of other domains only).
	Auth *Auth
	// Sites are the configured sites and their geofences (sites.go).
	Sites []Site
	// Dashboard is the built web dashboard (web.Dist()) served at /; nil
	// serves none.
	Dashboard fs.FS
}

// Server is the HTTP API.
type Server struct {
	opts    Options
	app     *fiber.App
	done    chan struct{} // closed when Run is shutting down: ends SSE streams
	streams atomic.Int64  // open SSE streams
	// authenticate finds the request's principal (Auth.Authenticate, or
	// NoAuth without sign-in).
	authenticate fiber.Handler
	// routeErrs are routes registered without a row in Routes.
	routeErrs []error
}

// Streams is the number of open SSE streams.
func (s *Server) Streams() int64 { return s.streams.Load() }

// New builds the API and registers every route. It listens only in Run.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StreamMaxLag == 0 {
		opts.StreamMaxLag = 10000
	}
	if opts.StreamHeartbeat == 0 {
		opts.StreamHeartbeat = 15 * time.Second
	}
	s := &Server{opts: opts, done: make(chan struct{})}
	s.app = fiber.New(fiber.Config{
		AppName:               "twin-service",
		DisableStartupMessage: true,
		Immutable:             true, // values from *fiber.Ctx stay valid after the handler
		ErrorHandler:          s.errorHandler,
		ReadTimeout:           30 * time.Second,
		IdleTimeout:           120 * time.Second,
	})
	s.authenticate = NoAuth
	if opts.Auth != nil {
		s.authenticate = opts.Auth.Authenticate
	}
	root := router{s: s}
	root.get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	root.get("/readyz", s.readyz)
	if err := s.registerMetrics(root); err != nil {
		return nil, err
	}
	api := root.group(v1)
	s.registerEnrollGateway(api)
	if opts.Auth != nil {
		opts.Auth.register(api)
	}
	api.get("/auth/policy", policy)
	s.registerSeries(api) // before assets: with no asset store, /assets* answers 503
	s.registerAssets(api)
	s.registerGateways(api)
	s.registerStream(api)
	s.registerEnroll(api)
	s.registerLedger(api)
	s.registerAlerts(api)
	s.registerSites(api)
	s.app.Use(v1, func(c *fiber.Ctx) error {
		return apiError(c, fiber.StatusNotFound, CodeNotFound, fmt.Sprintf("no route %s %s", c.Method(), c.Path()))
	})
	if opts.Dashboard != nil {
		MountDashboard(s.app, opts.Dashboard)
	}
	if err := errors.Join(s.routeErrs...); err != nil {
		return nil, err
	}
	return s, nil
}

// App is the Fiber app, for tests (app.Test) and for mounting more routes.
func (s *Server) App() *fiber.App { return s.app }

// Run serves on addr until ctx ends, then ends open streams and shuts down.
func (s *Server) Run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.app.Listener(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	close(s.done)
	if err := s.app.ShutdownWithTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	// A shutdown that comes before the server took the listener does not
	// close it (fasthttp), and the server would then serve forever.
	ln.Close()
	if err := <-errc; err != nil { // nil after a clean shutdown
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

func (s *Server) readyz(c *fiber.Ctx) error {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			return apiError(c, fiber.StatusServiceUnavailable, CodeUnavailable, err.Error())
		}
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// unavailable answers every route of a domain that is not configured.
func unavailable(what string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		return apiError(c, fiber.StatusServiceUnavailable, CodeUnavailable, what+" is not configured")
	}
}

func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code := CodeInternal
		switch {
		case fe.Code == fiber.StatusNotFound:
			code = CodeNotFound
		case fe.Code == fiber.StatusServiceUnavailable:
			code = CodeUnavailable
		case fe.Code < 500:
			code = CodeBadRequest
		}
		return apiError(c, fe.Code, code, fe.Message)
	}
	s.opts.Log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
	return apiError(c, fiber.StatusInternalServerError, CodeInternal, "internal error")
}

package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"twinchain/internal/detect/detectsvc"
	"twinchain/internal/httpapi"
	"twinchain/internal/httpapi/auth"
	"twinchain/internal/ingest"
	"twinchain/internal/ingest/broker"
	"twinchain/internal/ingest/mqttsub"
	"twinchain/internal/registry"
	"twinchain/internal/registry/enrollment"
	"twinchain/internal/telemetry/telemetrywriter"
	"twinchain/internal/twinstore"
	"twinchain/web"
)

// runner is a component with a Run loop.
type runner interface {
	Run(ctx context.Context) error
}

// service is the component graph of one twin-service process.
type service struct {
	cfg     Config
	log     *slog.Logger
	store   *twinstore.Store
	reg     *registry.Registry
	watcher *registry.FileWatcher
	in      *ingest.Ingest
	mqtt    runner
	ready   func() bool
	api     *httpapi.Server
	// httpTLS serves the API over TLS (nil: plaintext); httpCert says
	// with which certificate (httptls.go).
	httpTLS  *tls.Config
	httpCert string

	telemetry *telemetryPart // telemetry.go
	ledger    *ledgerPart    // nil when ledger.backend is off
	health    *health        // why the service is not ready (storepart.go)
	scrub     *scrubber      // nil when store.scrub is off
	pruner    *twinstore.Pruner
	detect    *detectsvc.Service
	sites     []httpapi.Site // configured sites and geofences, from the detection config
	crl       *crlWriter     // the gateway CRL for external brokers (crl.go)
}

// openService opens the store and builds every component; it starts nothing.
func openService(cfg Config, log *slog.Logger) (*service, error) {
	tightenPerms(cfg.DataDir, log)
	store, err := twinstore.Open(filepath.Join(cfg.DataDir, "twins.db"), twinstore.Options{NoSync: cfg.Store.NoSync})
	if err != nil {
		return nil, err
	}
	s := &service{cfg: cfg, log: log, store: store, health: &health{}}
	if err := s.build(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *service) build() error {
	stored, err := s.store.Gateways()
	if err != nil {
		return err
	}
	s.reg = registry.New(stored...)
	s.reg.Persist(s.store)
	s.watcher = registry.NewFileWatcher(s.cfg.registryPath(), filepath.Join(s.cfg.DataDir, "registry-imported.json"), 2*time.Second, s.reg, s.log.With("component", "registry"))
	if err := s.watcher.Check(); err != nil {
		return fmt.Errorf("gateway registry: %w", err)
	}
	if s.reg.Len() == 0 {
		s.log.Warn("no gateways registered yet: every message will be rejected as unknown_gateway until the registry file appears or the API registers one", "registry_file", s.cfg.registryPath())
	}
	s.in, err = ingest.New(s.cfg.Ingest, s.store, s.reg, s.log.With("component", "ingest"), time.Now)
	if err != nil {
		return err
	}
	ca, err := s.cfg.openGatewayCA()
	if err != nil {
		return err
	}
	if err := ca.KeepRecord(filepath.Join(s.cfg.DataDir, enrollment.IssuedFile), filepath.Join(s.cfg.DataDir, enrollment.CRLFile)); err != nil {
		return err
	}
	s.crl = newCRLWriter(ca, s.reg, s.log.With("component", "crl"))
	s.crl.write()
	switch s.cfg.MQTT.Mode {
	case modeEmbedded:
		tc, err := brokerTLS(s.cfg.MQTT.Embedded.TLS, ca)
		if err != nil {
			return err
		}
		b, err := broker.New(s.cfg.MQTT.Embedded, broker.Options{Ingest: s.in, Gateways: s.reg, TLS: tc, Log: s.log.With("component", "broker")})
		if err != nil {
			return err
		}
		s.reg.Notify(b.GatewayChanged)
		s.mqtt, s.ready = b, b.Listening
	case modeExternal:
		ext := s.cfg.MQTT.External
		if ext.ParkDir == "" {
			ext.ParkDir = filepath.Join(s.cfg.DataDir, "mqtt-parked")
		}
		sub, err := mqttsub.New(ext, s.in, s.log.With("component", "mqttsub"))
		if err != nil {
			return err
		}
		s.reg.Notify(sub.Recheck)
		s.mqtt, s.ready = sub, sub.Ready
	}
	if s.ledger, err = openLedger(s.cfg.Ledger, s.cfg.DataDir, s.store, s.in, s.reg, s.log); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if err := s.buildDetect(); err != nil {
		return err
	}
	if s.httpTLS, s.httpCert, err = httpTLS(s.cfg.HTTP, s.cfg.DataDir); err != nil {
		return err
	}
	var signIn *httpapi.Auth
	if s.cfg.Auth.Disabled {
		s.log.Warn("sign-in is disabled (-no-auth=true): every API request acts as admin")
	} else {
		authn, err := s.openAuth()
		if err != nil {
			return err
		}
		// Cookies are Secure whenever the API is served over TLS (or
		// behind a proxy that does, auth.secure_cookie).
		signIn = httpapi.NewAuth(authn, s.httpTLS != nil || s.cfg.Auth.SecureCookie, s.log.With("component", "auth"))
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.MustRegister(s.detect.Collectors()...)
	metrics.MustRegister(storeMetrics(s.store)...)
	if sub, ok := s.mqtt.(*mqttsub.Subscriber); ok {
		metrics.MustRegister(parkCollector(sub))
	}
	if b, ok := s.mqtt.(*broker.Broker); ok {
		metrics.MustRegister(newBrokerCollector(b))
	}
	s.ledger.registerMetrics(metrics)
	if s.telemetry, err = openTelemetry(s.cfg, s.store, s.in, s.reg, metrics, s.log); err != nil {
		return err
	}
	s.buildStoreCare()
	metrics.MustRegister(newHealthCollector(s.health, s.scrub))
	s.api, err = httpapi.New(httpapi.Options{
		Log:        s.log.With("component", "http"),
		Assets:     s.store,
		Events:     s.store,
		Ingest:     s.in,
		Gateways:   s.reg,
		Changes:    s.in,
		Enroll:     enrollment.NewService(s.reg, ca, time.Now),
		Ledger:     s.ledger.deps(),
		Approvals:  s.ledger.approvalsAPI(),
		Metrics:    metrics,
		Alerts:     s.detect.Alerts(),
		WorkOrders: s.detect.Orders(),
		Sites:      s.sites,
		Auth:       signIn,
		Dashboard:  web.Dist(),
		Ready: func() error {
			// every reason at once: a damaged ledger is not hidden while
			// MQTT is still coming up
			parts := s.health.err()
			if s.ready() {
				return parts
			}
			const mqtt = "mqtt is not ready: not connected, subscription not confirmed, or no message (probe) received lately"
			if parts != nil {
				return errors.New(mqtt + "; " + parts.Error())
			}
			return errors.New(mqtt)
		},
		Telemetry: s.telemetry.store,
	})
	return err
}

// buildStoreCare sets up what keeps the store healthy: the readiness
// checks of the parts that write to disk, the scrub at start and the
// message log's retention.
func (s *service) buildStoreCare() {
	s.health.add("store", s.in.StoreErr)
	s.health.add("telemetry", s.telemetry.writer.Err)
	s.health.add("detect", s.detect.Engine().Err)
	if s.ledger != nil {
		s.health.add("anchoring", s.ledger.anchorer.Err)
		s.health.add("ledger", s.ledger.damage)
	}
	if s.cfg.Store.Scrub != scrubOff {
		s.scrub = &scrubber{store: s.store, keys: registryKeys(s.reg.Lookup), log: s.log.With("component", "scrub")}
	}
	window := max(s.cfg.Ingest.SeqWindow, 4096)
	s.pruner = &twinstore.Pruner{Store: s.store, Retention: s.cfg.Store.Retention, KeepSeqs: 2 * window,
		Floor: s.messageFloor, Log: s.log.With("component", "retention"), Now: time.Now}
}

// messageFloor is the message log position every consumer has passed:
// the telemetry writer, the detectors, the anchorer's evidence scan and
// the ingest's observation checkpoint (replayed after a crash).
func (s *service) messageFloor() (uint64, error) {
	floor, err := s.store.Checkpoint()
	if err != nil {
		return 0, err
	}
	tel, err := s.store.Cursor(telemetrywriter.CursorName)
	if err != nil {
		return 0, err
	}
	det, err := s.detect.MessageCursor()
	if err != nil {
		return 0, err
	}
	floor = min(floor, tel, det)
	if s.ledger != nil {
		floor = min(floor, s.ledger.anchorer.MessageCursor())
	}
	return floor, nil
}

// openAuth loads the users of the configuration and of the users file,
// making that file with a new admin at first start, and the API tokens of
// the configuration and of the token file, making that file with the
// command-line tools' token at first start.
func (s *service) openAuth() (*auth.Authenticator, error) {
	cfg := s.cfg.Auth
	if _, err := auth.EnsureAdmin(s.cfg.usersPath(), rand.Reader); err != nil {
		return nil, err
	}
	users, err := auth.LoadUsersFile(s.cfg.usersPath())
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if !slices.ContainsFunc(cfg.Users, func(c auth.UserConfig) bool { return c.Name == u.Name }) {
			cfg.Users = append(cfg.Users, u)
		}
	}
	a, err := auth.New(cfg, time.Now, rand.Reader)
	if err != nil {
		return nil, err
	}
	if path, err := a.EnsureCLIToken(s.cfg.DataDir); err != nil {
		return nil, err
	} else if path != "" {
		s.log.Info("made the admin API token \"cli\" for the command-line tools on this host", "file", path)
	}
	return a, nil
}

func (s *service) close() {
	if s.telemetry != nil {
		if err := s.telemetry.Close(); err != nil {
			s.log.Error("close telemetry store", "err", err)
		}
	}
	if s.ledger != nil {
		s.ledger.close(s.log)
	}
	if s.detect != nil {
		if err := s.detect.Close(); err != nil {
			s.log.Error("close detection store", "err", err)
		}
	}
	if err := s.store.Close(); err != nil {
		s.log.Error("close store", "err", err)
	}
}

// dropMappedEvery is how often the store's mapped pages leave the resident
// set (twinstore.Store.DropMappedPages). At the floor (625 msg/s) readers
// map ~30 MB a second, new log and twin pages (bbolt writes each change to
// a fresh page): every 10 s left 130-330 MB mapped. A page read again
// costs a minor fault.
const dropMappedEvery = 2 * time.Second

// run starts every component and waits until ctx ends or one fails. The
// ingest stops last, after the MQTT side, so that no message is left
// between an acknowledgement and the store.
func (s *service) run(ctx context.Context, stderr io.Writer) error {
	ln, err := net.Listen("tcp", s.cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", s.cfg.HTTP.Addr, err)
	}
	scheme := "http"
	if s.httpTLS != nil {
		scheme = "https"
		ln = tls.NewListener(ln, s.httpTLS)
	}
	g, gctx := errgroup.WithContext(ctx)
	ingestCtx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error { return s.in.Run(ingestCtx) })
	g.Go(func() error {
		defer stopIngest()
		return s.mqtt.Run(gctx)
	})
	g.Go(func() error { return s.api.Serve(gctx, ln) })
	g.Go(func() error { return s.watcher.Run(gctx) })
	g.Go(func() error { return s.crl.Run(gctx) })
	g.Go(func() error { return s.telemetry.Run(gctx) })
	if s.ledger != nil {
		g.Go(func() error { return s.ledger.Run(gctx) })
		g.Go(func() error { return s.ledger.approvals.Run(gctx) })
		g.Go(func() error { return s.ledger.proposer.Run(gctx) })
		g.Go(func() error { return s.ledger.stops.Run(gctx) })
	}
	g.Go(func() error { return s.detect.Run(gctx) })
	if s.scrub != nil {
		g.Go(func() error { return s.scrub.Run(gctx) })
	}
	g.Go(func() error { return s.pruner.Run(gctx) })
	g.Go(func() error {
		return s.store.DropMappedPagesEvery(gctx, dropMappedEvery, s.log.With("component", "store"))
	})
	fmt.Fprintf(stderr, "twin-service: dashboard at %s://%s/\n", scheme, ln.Addr())
	if s.httpCert != "" {
		fmt.Fprintf(stderr, "twin-service: TLS with the %s\n", s.httpCert)
	}
	if s.cfg.Auth.Disabled {
		fmt.Fprintln(stderr, "twin-service: sign-in is OFF (-no-auth=true)")
	} else if pwFile := auth.AdminPasswordFile(s.cfg.usersPath()); fileExists(pwFile) {
		fmt.Fprintf(stderr, "twin-service: sign in as admin with the password in %s (readable by this user only; delete it once you have it)\n", pwFile)
	} else {
		fmt.Fprintf(stderr, "twin-service: sign in as admin with the password given at first start (delete %s and restart for a new one)\n", s.cfg.usersPath())
	}
	s.log.Info("twin-service started", "http", ln.Addr().String(), "mqtt_mode", s.cfg.MQTT.Mode, "data_dir", s.cfg.DataDir, "gateways", s.reg.Len())
	err = g.Wait()
	stopIngest()
	if err != nil {
		return err
	}
	s.log.Info("twin-service stopped")
	return nil
}

// storeMetrics are the heads of the message and event logs, against which
// each consumer's position (telemetry writer, detectors, anchoring) is its
// lag, and the bytes of pages the store's commits wrote.
func storeMetrics(st *twinstore.Store) []prometheus.Collector {
	gauge := func(log string, v func() uint64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twinchain_log_position", Help: "Last position stored in the log.", ConstLabels: prometheus.Labels{"log": log}},
			func() float64 { return float64(v()) })
	}
	return []prometheus.Collector{gauge("message", st.LastPos), gauge("event", st.LastEventID),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_store_page_bytes_total", Help: "Bytes of pages the twin store's commits wrote (twins.db; each commit also writes one meta page)."},
			func() float64 { return float64(st.PageBytes()) })}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

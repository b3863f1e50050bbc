package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"twinchain/internal/edge/agentkey"
	"twinchain/internal/edge/diskqueue"
	"twinchain/internal/edge/gpu"
	"twinchain/internal/edge/mqttpub"
	"twinchain/internal/edge/nmea"
	"twinchain/internal/edge/rfid"
	"twinchain/internal/edge/workload"
	"twinchain/internal/wire"
)

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("edge-agent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: edge-agent %s [flags]\n", name)
		fs.PrintDefaults()
		fmt.Fprintln(stderr, "\n"+helpText)
	}
	return fs
}

func newLogger(cfg Config, stderr io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel)
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("gateway", cfg.GatewayID)
}

func loadKey(cfg Config, log *slog.Logger) (ed25519.PrivateKey, error) {
	key, created, err := agentkey.LoadOrCreate(filepath.Join(cfg.StateDir, "agent.key"))
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created the gateway key; enroll it with `edge-agent enroll`", "path", filepath.Join(cfg.StateDir, "agent.key"))
	}
	return key, nil
}

func runAgent(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	cfg, err := loadConfig(newFlagSet("run", stderr), args, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	key, err := loadKey(cfg, log)
	if err != nil {
		return err
	}
	seq, err := agentkey.OpenSequence(filepath.Join(cfg.StateDir, "sequence"), cfg.SequenceBlock)
	if err != nil {
		return err
	}
	q, err := diskqueue.Open(filepath.Join(cfg.StateDir, "queue"), cfg.Queue)
	if err != nil {
		return err
	}
	defer func() {
		if err := q.Close(); err != nil {
			log.Error("close queue", "err", err)
		}
	}()
	now := time.Now
	pub := mqttpub.New(cfg.MQTT, cfg.GatewayID, key, seq, q, version, now, log.With("component", "mqtt"))
	log.Info("edge-agent starting", "version", version, "broker", cfg.MQTT.Broker, "backlog", q.Len(), "next_seq", seq.Peek(),
		"rfid_readers", len(cfg.RFID.Readers), "gps_receivers", len(cfg.GPS.Receivers), "gpu_source", cfg.GPU.Source)

	var failing atomic.Bool
	publishAt := func(k wire.Kind, t time.Time, body any) {
		if _, err := pub.Publish(k, t, body); err != nil {
			if !failing.Swap(true) {
				log.Error("cannot queue a reading (logged once until it works again)", "kind", k, "err", err)
			}
			return
		}
		failing.Store(false)
	}
	publish := func(k wire.Kind, body any) { publishAt(k, now(), body) }

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pub.Run(ctx) })
	if len(cfg.RFID.Readers) > 0 {
		svc := rfid.New(cfg.RFID, nil, now, log.With("component", "rfid"), func(r wire.RFID) { publish(wire.KindRFID, r) })
		g.Go(func() error { return svc.Run(ctx) })
	}
	if len(cfg.GPS.Receivers) > 0 {
		svc := nmea.New(cfg.GPS, nil, now, log.With("component", "gps"), func(f wire.GPSFix) { publish(wire.KindGPS, f) })
		g.Go(func() error { return svc.Run(ctx) })
	}
	var wl *workload.Reporter
	src, err := gpu.Open(cfg.GPU, log.With("component", "gpu"))
	if err != nil {
		return err
	}
	if src != nil {
		defer func() { _ = src.Close() }() // only read from: nothing to do if it fails
		log.Info("gpu source", "source", src.String(), "interval", cfg.GPU.Interval, "publish_interval", cfg.GPU.PublishInterval)
		col := gpu.NewCollector(cfg.GPU, src, cfg.Host.info(), now, log.With("component", "gpu"),
			func(at time.Time, t wire.Telemetry) { publishAt(wire.KindTelemetry, at, t) }, // at: the newest sample's time
			func(_ time.Time, inv wire.Inventory) { publish(wire.KindFirmware, inv) })
		wl = workload.NewReporter(cfg.Workloads, cfg.Host.Asset, now, log.With("component", "workloads"),
			func(w wire.Workloads) { publish(wire.KindWorkloads, w) })
		col.OnSnapshot = wl.Offer
		g.Go(func() error { return wl.Run(ctx) })
		g.Go(func() error { return col.Run(ctx) })
	}
	err = g.Wait()
	if cerr := seq.Close(); cerr != nil { // a clean stop leaves no sequence gap
		log.Error("sequence", "err", cerr)
	}
	var skips map[string]uint64
	if wl != nil {
		skips = wl.Skips()
	}
	log.Info("edge-agent stopped", "queued", pub.Stats.Queued.Load(), "acked", pub.Stats.Acked.Load(), "backlog", q.Len(), "workload_skips", skips)
	return err
}

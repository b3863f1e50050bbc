package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"twinchain/internal/wire"
)

// Source gives snapshots of a host's GPUs.
type Source interface {
	// Run does the source's background work (NVML events, a socket) until ctx ends.
	Run(ctx context.Context) error
	// Snapshot reads every GPU now.
	Snapshot(ctx context.Context) (Snapshot, error)
	Close() error
	String() string
}

// Config is the GPU part of the agent's configuration.
type Config struct {
	// Source: "auto" (NVML when a driver is present, else Sim when set),
	// "nvml", "sim" or "none".
	Source   string        `yaml:"source"`
	Sim      string        `yaml:"sim"` // file:PATH or unix:PATH written by firmware-sim
	Interval time.Duration `yaml:"interval"`
	// PublishInterval is how often the samples gathered are sent, in one
	// telemetry message (wire.Telemetry's Samples; default Interval: one
	// message per sample, in the one-sample form). A longer interval pays
	// a message's costs (signature, envelope, broker, the service's log
	// record) once for several samples, and delays each reading by up to
	// that long. At most wire.MaxSamples samples go in one message.
	PublishInterval   time.Duration `yaml:"publish_interval"`
	InventoryInterval time.Duration `yaml:"inventory_interval"` // identity is also sent on every change
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Source == "" {
		c.Source = "auto"
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.PublishInterval == 0 {
		c.PublishInterval = c.Interval
	}
	if c.InventoryInterval == 0 {
		c.InventoryInterval = 10 * time.Minute
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch c.Source {
	case "auto", "nvml", "none":
	case "sim":
		if c.Sim == "" {
			return errors.New("gpu.sim: required when gpu.source is sim (file:PATH or unix:PATH)")
		}
	default:
		return fmt.Errorf("gpu.source %q: want auto, nvml, sim or none", c.Source)
	}
	if c.Sim != "" {
		if _, err := NewSimSource(c.Sim, slog.Default()); err != nil {
			return fmt.Errorf("gpu.sim: %w", err)
		}
	}
	if c.Interval < 10*time.Millisecond {
		return fmt.Errorf("gpu.interval %s: want at least 10ms", c.Interval)
	}
	if c.PublishInterval < c.Interval || c.PublishInterval > time.Duration(wire.MaxSamples)*c.Interval || c.PublishInterval > wire.SampleWindow {
		return fmt.Errorf("gpu.publish_interval %s: want from gpu.interval (%s) to %d of them, at most %s", c.PublishInterval, c.Interval, wire.MaxSamples, wire.SampleWindow)
	}
	return nil
}

// Open picks the source the configuration asks for. With "auto" and no
// driver it says so once and falls back to the simulated source (or to none:
// a nil Source and nil error).
func Open(cfg Config, log *slog.Logger) (Source, error) {
	switch cfg.Source {
	case "none":
		return nil, nil
	case "sim":
		return NewSimSource(cfg.Sim, log)
	}
	src, err := OpenNVML(log)
	if err == nil {
		return src, nil
	}
	if cfg.Source == "nvml" {
		return nil, err
	}
	if cfg.Sim == "" {
		log.Warn("no NVML (no NVIDIA driver here?) and no simulated source configured: GPU telemetry off", "err", err)
		return nil, nil
	}
	log.Warn("no NVML (no NVIDIA driver here?): using the simulated GPU source", "err", err, "sim", cfg.Sim)
	return NewSimSource(cfg.Sim, log)
}

// Collector samples a Source at an interval and reports telemetry (every
// PublishInterval, the samples gathered), and the inventory at start, on
// every identity change and periodically. The telemetry callback gets the
// newest sample's time: the message's reading time.
type Collector struct {
	cfg       Config
	src       Source
	host      wire.HostInfo
	log       *slog.Logger
	telemetry func(time.Time, wire.Telemetry)
	inventory func(time.Time, wire.Inventory)
	now       func() time.Time
	Errors    uint64
	// OnSnapshot, when set, is given every snapshot read (the workload
	// reporter takes the processes from it). It must not block.
	OnSnapshot func(*Snapshot)
}

// NewCollector returns a Collector for the host's GPUs.
func NewCollector(cfg Config, src Source, host wire.HostInfo, now func() time.Time, log *slog.Logger,
	telemetry func(time.Time, wire.Telemetry), inventory func(time.Time, wire.Inventory)) *Collector {
	return &Collector{cfg: cfg, src: src, host: host, log: log, telemetry: telemetry, inventory: inventory, now: now}
}

// Run samples until ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srcDone := make(chan error, 1)
	go func() { srcDone <- c.src.Run(ctx) }()
	defer func() {
		cancel()
		_ = <-srcDone // the loop returns the source's errors; one after cancel is only the stop
	}()

	var ev Events
	var lastIdentity []wire.GPUIdentity
	var lastInventory time.Time
	failing := false
	b := batch{every: c.cfg.PublishInterval, interval: c.cfg.Interval, send: c.telemetry}
	defer b.flush() // a stop sends what was gathered (the agent queues it)
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srcDone:
			srcDone <- err
			if err != nil {
				return fmt.Errorf("gpu source %s: %w", c.src, err)
			}
			<-ctx.Done()
			return nil
		case <-t.C:
		}
		snap, err := c.src.Snapshot(ctx)
		if err != nil {
			c.Errors++
			if !failing {
				c.log.Warn("gpu snapshot failed (logged once until it works again)", "source", c.src.String(), "err", err)
				failing = true
			}
			continue
		}
		failing = false
		now := c.now()
		ev.Apply(&snap)
		id := Identity(c.host.Asset, &snap)
		if !reflect.DeepEqual(id, lastIdentity) || now.Sub(lastInventory) >= c.cfg.InventoryInterval {
			c.inventory(now, wire.Inventory{Host: c.host, GPUs: id})
			lastIdentity, lastInventory = id, now
		}
		b.add(now, Telemetry(c.host.Asset, &snap, &ev))
		if c.OnSnapshot != nil {
			c.OnSnapshot(&snap)
		}
	}
}

// batch gathers samples into one telemetry message per publish interval.
type batch struct {
	every    time.Duration // the publish interval
	interval time.Duration // the sampling interval
	send     func(time.Time, wire.Telemetry)
	first    time.Time // the oldest gathered sample's time
	tel      wire.Telemetry
}

// add gathers one sample taken at t and sends the message when the publish
// interval is full (or at wire.MaxSamples). With a publish interval of one
// sampling interval the sample goes at once, in the one-sample form.
func (b *batch) add(t time.Time, s wire.Telemetry) {
	if len(b.tel.Samples) > 0 && !t.After(b.tel.Samples[len(b.tel.Samples)-1].TS) {
		b.flush() // the clock went back: samples in a message must be in time order
	}
	if len(b.tel.Samples) == 0 {
		b.first = t
	}
	b.tel.Host = s.Host
	b.tel.Samples = append(b.tel.Samples, wire.TelemetrySample{TS: t, GPUs: s.GPUs})
	// Full when the samples cover the publish interval: the next would be
	// taken a publish interval after the first (half a sampling interval
	// of slack for the ticker's jitter).
	if t.Sub(b.first)+b.interval+b.interval/2 >= b.every || len(b.tel.Samples) >= wire.MaxSamples {
		b.flush()
	}
}

// flush sends the gathered samples, if any: one sample in the one-sample
// form (what every agent sent before publish intervals), else as Samples.
func (b *batch) flush() {
	n := len(b.tel.Samples)
	if n == 0 {
		return
	}
	last := b.tel.Samples[n-1]
	tel := wire.Telemetry{Host: b.tel.Host}
	if n == 1 {
		tel.GPUs = last.GPUs
	} else {
		tel.Samples = b.tel.Samples
	}
	b.send(last.TS, tel)
	b.tel = wire.Telemetry{}
}

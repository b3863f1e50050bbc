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
	Source            string        `yaml:"source"`
	Sim               string        `yaml:"sim"` // file:PATH or unix:PATH written by firmware-sim
	Interval          time.Duration `yaml:"interval"`
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

// Collector samples a Source at an interval and reports telemetry, and the
// inventory at start, on every identity change and periodically.
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
		c.telemetry(now, Telemetry(c.host.Asset, &snap, &ev))
		if c.OnSnapshot != nil {
			c.OnSnapshot(&snap)
		}
	}
}

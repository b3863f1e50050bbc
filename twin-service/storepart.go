package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"twinchain/internal/twinstore"
)

// Store scrub modes.
const (
	scrubStart = "start"
	scrubOff   = "off"
)

// StoreConfig tunes the store.
type StoreConfig struct {
	NoSync bool `yaml:"no_sync"` // skip fsync: for benchmarks only, loses acknowledged messages on a crash
	// Scrub: start (default) re-checks every stored message, event and
	// twin in the background at start and reports damaged ones; off.
	Scrub     string              `yaml:"scrub"`
	Retention twinstore.Retention `yaml:"retention"`
}

// Validate checks the store configuration.
func (c *StoreConfig) Validate() error {
	var errs []error
	switch c.Scrub {
	case "", scrubStart, scrubOff:
	default:
		errs = append(errs, fmt.Errorf("store.scrub %q: want %s or %s", c.Scrub, scrubStart, scrubOff))
	}
	return errors.Join(append(errs, c.Retention.Validate())...)
}

// scrubber re-checks the store in the background at start.
type scrubber struct {
	store   *twinstore.Store
	keys    twinstore.Keys
	log     *slog.Logger
	damaged atomic.Int64 // records found damaged by the last scrub
	done    atomic.Bool
}

// maxDamageLogged bounds the damaged records logged one by one.
const maxDamageLogged = 100

func (s *scrubber) Run(ctx context.Context) error {
	start := time.Now()
	n := 0
	res, err := s.store.Scrub(ctx, s.keys, func(d twinstore.Damage) {
		n++
		s.damaged.Add(1)
		if n <= maxDamageLogged {
			s.log.Error("stored record damaged", "bucket", d.Bucket, "pos", d.Pos, "gateway", d.Gateway, "seq", d.Seq, "key", d.Key, "what", d.What)
		}
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		s.log.Error("store scrub failed", "err", err)
		return nil
	}
	s.done.Store(true)
	args := []any{"messages", res.Messages, "events", res.Events, "twins", res.Twins, "damaged", res.Damaged, "unchecked", res.Unchecked, "took", time.Since(start).Round(time.Millisecond)}
	if res.Damaged > 0 {
		s.log.Error("store scrub found damaged records: restore twins.db from a backup, or run `twin-service verify DATA` to list them", args...)
	} else {
		s.log.Info("store scrub: every stored record holds", args...)
	}
	return nil
}

// health gathers why the service is not ready: a store that takes no
// commits, a consumer that cannot write (a full disk), a damaged ledger.
// Each check returns nil when that part is fine.
type health struct {
	mu     sync.Mutex
	checks map[string]func() error
}

func (h *health) add(name string, check func() error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checks == nil {
		h.checks = map[string]func() error{}
	}
	h.checks[name] = check
}

// problems lists the failing parts, by name.
func (h *health) problems() map[string]error {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]error{}
	for name, check := range h.checks {
		if err := check(); err != nil {
			out[name] = err
		}
	}
	return out
}

// err is nil when every part is fine, else one line naming each failing
// part (details are in the log).
func (h *health) err() error {
	p := h.problems()
	if len(p) == 0 {
		return nil
	}
	names := make([]string, 0, len(p))
	for name, err := range p {
		names = append(names, name+": "+short(err))
	}
	sort.Strings(names)
	return errors.New(strings.Join(names, "; "))
}

// short is an error's first clause, for /readyz.
func short(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// collector exports twinchain_component_failing{component} (1 while the
// part fails) and twinchain_store_damaged_records.
type healthCollector struct {
	h       *health
	scrub   *scrubber
	failing *prometheus.Desc
	damaged *prometheus.Desc
}

func newHealthCollector(h *health, s *scrubber) *healthCollector {
	return &healthCollector{h: h, scrub: s,
		failing: prometheus.NewDesc("twinchain_component_failing", "1 while a part of the service fails (store commits, telemetry writer, detection, anchoring, ledger): see /readyz and the log.", []string{"component"}, nil),
		damaged: prometheus.NewDesc("twinchain_store_damaged_records", "Stored records the last scrub found damaged.", nil, nil)}
}

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.failing
	ch <- c.damaged
}

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.h.problems()
	c.h.mu.Lock()
	names := make([]string, 0, len(c.h.checks))
	for name := range c.h.checks {
		names = append(names, name)
	}
	c.h.mu.Unlock()
	for _, name := range names {
		v := 0.0
		if p[name] != nil {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, v, name)
	}
	if c.scrub != nil {
		ch <- prometheus.MustNewConstMetric(c.damaged, prometheus.GaugeValue, float64(c.scrub.damaged.Load()))
	}
}

// registryKeys adapts the registry's Lookup for the scrub.
func registryKeys(lookup func(string) (ed25519.PublicKey, string, bool)) twinstore.Keys {
	return func(gw string) (ed25519.PublicKey, bool) {
		pub, _, ok := lookup(gw)
		return pub, ok
	}
}

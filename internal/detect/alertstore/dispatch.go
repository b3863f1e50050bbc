package alertstore

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"twinchain/internal/detect/alert"
)

// Dispatcher delivers the outbox to the sinks, in order per sink, with a
// per-sink exponential backoff while a sink fails, and runs escalation.
type Dispatcher struct {
	store *Store
	sinks map[string]sink
	cfgs  map[string]alert.SinkConfig
	log   *slog.Logger
	now   func() time.Time
	tick  time.Duration
	state map[string]*sinkState

	Delivered atomic.Uint64
	Failed    atomic.Uint64
	Dead      atomic.Uint64
}

type sinkState struct {
	fails   int
	retryAt time.Time
}

// NewDispatcher builds sinks from the store's configuration. pub may be nil
// when no mqtt sink is configured.
func NewDispatcher(store *Store, pub Publisher, log *slog.Logger, now func() time.Time) *Dispatcher {
	d := &Dispatcher{store: store, sinks: map[string]sink{}, cfgs: map[string]alert.SinkConfig{}, log: log, now: now, tick: time.Second, state: map[string]*sinkState{}}
	for name, c := range store.cfg.Sinks {
		c = c.WithDefaults()
		d.cfgs[name] = c
		switch c.Kind {
		case alert.SinkWebhook:
			d.sinks[name] = &webhook{cfg: c, client: &http.Client{Timeout: c.Timeout}, now: now}
		case alert.SinkMQTT:
			d.sinks[name] = &mqttSink{pub: pub}
		case alert.SinkAlertmanager:
			d.sinks[name] = &alertmanager{cfg: c, client: &http.Client{Timeout: c.Timeout}}
		case alert.SinkSyslog:
			s, err := newSyslogSink(c)
			if err != nil { // Validate refuses such a configuration
				log.Error("syslog sink not started", "sink", name, "err", err)
				continue
			}
			d.sinks[name] = s
		}
		d.state[name] = &sinkState{}
	}
	return d
}

// Run delivers until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	t := time.NewTicker(d.tick)
	defer t.Stop()
	defer func() {
		for _, s := range d.sinks {
			if c, ok := s.(io.Closer); ok {
				_ = c.Close() // a kept connection; nothing is pending on it
			}
		}
	}()
	for {
		if _, err := d.store.escalate(); err != nil {
			d.log.Error("escalation", "err", err)
		}
		d.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-d.store.wake:
		case <-t.C:
		}
	}
}

// round tries every due delivery once.
func (d *Dispatcher) round(ctx context.Context) {
	pending, err := d.store.pending(500)
	if err != nil {
		d.log.Error("read outbox", "err", err)
		return
	}
	blocked := map[string]bool{}
	for i := range pending {
		if ctx.Err() != nil {
			return
		}
		dl := &pending[i]
		st, ok := d.state[dl.Sink]
		snk := d.sinks[dl.Sink]
		if !ok || snk == nil {
			d.log.Warn("outbox entry for an unconfigured sink kept", "sink", dl.Sink, "seq", dl.Seq)
			continue
		}
		if blocked[dl.Sink] || d.now().Before(st.retryAt) {
			blocked[dl.Sink] = true // keep each sink's order
			continue
		}
		err := snk.deliver(ctx, dl)
		if err == nil {
			if err := d.store.delivered(dl.Seq); err != nil {
				d.log.Error("outbox", "err", err)
			}
			d.Delivered.Add(1)
			st.fails, st.retryAt = 0, time.Time{}
			continue
		}
		d.Failed.Add(1)
		cfg := d.cfgs[dl.Sink]
		st.fails++
		backoff := cfg.BackoffMin << min(st.fails-1, 20)
		if backoff > cfg.BackoffMax || backoff <= 0 {
			backoff = cfg.BackoffMax
		}
		st.retryAt = d.now().Add(backoff)
		blocked[dl.Sink] = true
		dead, ferr := d.store.failed(*dl, err, cfg.MaxAttempts)
		if ferr != nil {
			d.log.Error("outbox", "err", ferr)
		}
		if dead {
			d.Dead.Add(1)
			blocked[dl.Sink] = false
		}
		if st.fails == 1 || st.fails%20 == 0 {
			d.log.Warn("alert delivery failed; will retry", "sink", dl.Sink, "alert", dl.N.Alert.ID, "attempt", dl.Attempts+1, "retry_in", backoff, "err", err)
		}
	}
}

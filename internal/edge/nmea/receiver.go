package nmea

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"twinchain/internal/edge/serialport"
	"twinchain/internal/wire"
)

// ReceiverConfig is one GNSS receiver on a serial port.
type ReceiverConfig struct {
	Name  string `yaml:"name"`
	Port  string `yaml:"port"`
	Baud  int    `yaml:"baud"`
	Asset string `yaml:"asset"` // the asset the receiver is fixed to; the gateway when empty
}

// Config is the GPS part of the agent's configuration.
type Config struct {
	Receivers []ReceiverConfig `yaml:"receivers"`
	// ReportInterval is how often the latest fix is reported (not per sentence).
	ReportInterval time.Duration `yaml:"report_interval"`
}

// SetDefaults fills zero fields; gateway names the asset of receivers that name none.
func (c *Config) SetDefaults(gateway string) {
	if c.ReportInterval == 0 {
		c.ReportInterval = time.Second
	}
	for i := range c.Receivers {
		r := &c.Receivers[i]
		if r.Baud == 0 {
			r.Baud = 9600
		}
		if r.Asset == "" {
			r.Asset = gateway
		}
		if r.Name == "" {
			r.Name = fmt.Sprintf("gps%d", i)
		}
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if c.ReportInterval < 10*time.Millisecond {
		return fmt.Errorf("gps.report_interval %s: want at least 10ms", c.ReportInterval)
	}
	for i, r := range c.Receivers {
		if r.Port == "" {
			return fmt.Errorf("gps.receivers[%d].port: required (a serial device such as /dev/ttyACM0)", i)
		}
		if r.Baud <= 0 {
			return fmt.Errorf("gps.receivers[%d].baud %d: must be positive", i, r.Baud)
		}
	}
	return nil
}

// Service reads the configured receivers and reports each one's latest fix
// at the report interval.
type Service struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	open   serialport.OpenFunc
	report func(wire.GPSFix)

	mu       sync.Mutex
	trackers map[string]*Tracker
	overlong map[string]uint64
}

// New returns a Service; report is called with each fix to send.
func New(cfg Config, open serialport.OpenFunc, now func() time.Time, log *slog.Logger, report func(wire.GPSFix)) *Service {
	if open == nil {
		open = serialport.Open
	}
	s := &Service{cfg: cfg, log: log, now: now, open: open, report: report,
		trackers: map[string]*Tracker{}, overlong: map[string]uint64{}}
	for _, r := range cfg.Receivers {
		s.trackers[r.Name] = NewTracker(r.Asset, now)
	}
	return s
}

// Stats returns each receiver's counters; overlong lines count as malformed.
func (s *Service) Stats() map[string]Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Stats{}
	for name, t := range s.trackers {
		st := t.Stats
		st.Malformed += s.overlong[name]
		out[name] = st
	}
	return out
}

// Run reads every receiver until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, rc := range s.cfg.Receivers {
		g.Go(func() error { return s.runReceiver(ctx, rc) })
	}
	g.Go(func() error {
		t := time.NewTicker(s.cfg.ReportInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				for _, rc := range s.cfg.Receivers {
					s.mu.Lock()
					fix, ok := s.trackers[rc.Name].Take()
					s.mu.Unlock()
					if ok {
						s.report(fix)
					}
				}
			}
		}
	})
	return g.Wait()
}

func (s *Service) runReceiver(ctx context.Context, rc ReceiverConfig) error {
	log := s.log.With("receiver", rc.Name, "port", rc.Port)
	serialport.Keep(ctx, log, s.open, rc.Port, rc.Baud, 2*time.Second,
		func() { log.Info("gps receiver open", "baud", rc.Baud) },
		func(port io.Reader) error { return s.readPort(ctx, rc, port, log) })
	return nil
}

func (s *Service) readPort(ctx context.Context, rc ReceiverConfig, port io.Reader, log *slog.Logger) error {
	lines := serialport.Lines{Max: 128} // NMEA allows 82 characters; some receivers send more
	tr := s.trackers[rc.Name]
	logged := false
	err := serialport.Pump(ctx, port, make([]byte, 256), func(p []byte) {
		s.mu.Lock()
		before := tr.Stats.Dropped() + s.overlong[rc.Name]
		over := lines.Overlong
		lines.Feed(p, func(line []byte) { tr.Feed(line) })
		s.overlong[rc.Name] += lines.Overlong - over
		dropped := tr.Stats.Dropped() + s.overlong[rc.Name] - before
		st := tr.Stats
		s.mu.Unlock()
		if dropped > 0 && !logged {
			log.Warn("gps: dropped bad input (logged once per open; counted in stats)",
				"checksum", st.Checksum, "malformed", st.Malformed, "invalid_fix", st.InvalidFix, "backwards", st.Backwards)
			logged = true
		}
	})
	return err
}

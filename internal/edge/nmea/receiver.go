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
	// ReportInterval is the least time between two reported fixes of one
	// receiver, by the receivers' time of fix: every epoch of a 1 Hz
	// receiver, one epoch a second of a 10 Hz one.
	ReportInterval time.Duration `yaml:"report_interval"`
	// EpochTimeout is how long the line stays quiet before the epoch whose
	// sentences came last is taken as complete (the next epoch's first
	// sentence ends it sooner).
	EpochTimeout time.Duration `yaml:"epoch_timeout"`
	// DateFloor is the earliest date a receiver may report; an earlier one
	// is a GPS week-number rollover and moves forward by 1024 weeks.
	DateFloor time.Time `yaml:"date_floor"`
}

// SetDefaults fills zero fields; gateway names the asset of receivers that name none.
func (c *Config) SetDefaults(gateway string) {
	if c.ReportInterval == 0 {
		c.ReportInterval = time.Second
	}
	if c.EpochTimeout == 0 {
		c.EpochTimeout = 500 * time.Millisecond
	}
	if c.DateFloor.IsZero() {
		c.DateFloor = DefaultDateFloor
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
	if c.EpochTimeout < 20*time.Millisecond || c.EpochTimeout > 10*time.Second {
		return fmt.Errorf("gps.epoch_timeout %s: want 20ms to 10s", c.EpochTimeout)
	}
	if c.DateFloor.Year() < 1980 {
		return fmt.Errorf("gps.date_floor %s: want a date after 1980-01-06, when GPS time began", c.DateFloor.Format(time.DateOnly))
	}
	names := map[string]bool{}
	for i, r := range c.Receivers {
		if r.Port == "" {
			return fmt.Errorf("gps.receivers[%d].port: required (a serial device such as /dev/ttyACM0)", i)
		}
		if r.Baud <= 0 {
			return fmt.Errorf("gps.receivers[%d].baud %d: must be positive", i, r.Baud)
		}
		if names[r.Name] {
			return fmt.Errorf("gps.receivers[%d].name %q: used twice", i, r.Name)
		}
		names[r.Name] = true
	}
	return nil
}

// Service reads the configured receivers and reports each epoch's fix when
// the epoch ends, at most one per ReportInterval of fix time per receiver.
type Service struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	open   serialport.OpenFunc
	report func(wire.GPSFix)
	rx     map[string]*receiver
}

// receiver is one receiver's tracker and reporting state.
type receiver struct {
	mu       sync.Mutex // held while a fix is reported, so reports stay in order
	tr       *Tracker
	lastLine time.Time // agent clock of the last line; zero after the epoch was closed
	overlong uint64
	reported Fix // the last fix reported
	any      bool
}

// New returns a Service; report is called with each fix to send. now is the
// agent's clock: it times the quiet line that ends an epoch, and never dates
// a fix.
func New(cfg Config, open serialport.OpenFunc, now func() time.Time, log *slog.Logger, report func(wire.GPSFix)) *Service {
	if open == nil {
		open = serialport.Open
	}
	s := &Service{cfg: cfg, log: log, now: now, open: open, report: report, rx: map[string]*receiver{}}
	for _, r := range cfg.Receivers {
		s.rx[r.Name] = &receiver{tr: NewTracker(r.Asset, cfg.DateFloor)}
	}
	return s
}

// Stats returns each receiver's counters; overlong lines count as malformed.
func (s *Service) Stats() map[string]Stats {
	out := map[string]Stats{}
	for name, r := range s.rx {
		r.mu.Lock()
		st := r.tr.Stats
		st.Malformed += r.overlong
		r.mu.Unlock()
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
		t := time.NewTicker(s.cfg.EpochTimeout / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				now := s.now()
				for _, r := range s.rx {
					r.mu.Lock()
					if !r.lastLine.IsZero() && now.Sub(r.lastLine) >= s.cfg.EpochTimeout {
						r.lastLine = time.Time{}
						if fix, ok := r.tr.End(); ok {
							s.emit(r, fix)
						}
					}
					r.mu.Unlock()
				}
			}
		}
	})
	return g.Wait()
}

// emit reports fix unless it comes less than the report interval after the
// last one reported. r.mu is held.
func (s *Service) emit(r *receiver, fix Fix) {
	if r.any && !due(r.reported, fix, s.cfg.ReportInterval) {
		return
	}
	r.reported, r.any = fix, true
	s.report(fix.GPSFix)
}

// due reports whether next is at least interval (less a tenth, for receivers
// whose epochs jitter) after last, by fix time; by time of day when either
// has no date.
func due(last, next Fix, interval time.Duration) bool {
	min := interval - interval/10
	if last.Date != DateNone && next.Date != DateNone {
		return next.FixTime.Sub(last.FixTime) >= min
	}
	d := next.TimeOfDay - last.TimeOfDay
	if d < 0 {
		d += day
	}
	return d >= min
}

func (s *Service) runReceiver(ctx context.Context, rc ReceiverConfig) error {
	log := s.log.With("receiver", rc.Name, "port", rc.Port)
	serialport.Keep(ctx, log, s.open, rc.Port, rc.Baud, 2*time.Second,
		func() { log.Info("gps receiver open", "baud", rc.Baud) },
		func(port io.Reader) error { return s.readPort(ctx, s.rx[rc.Name], port, log) })
	return nil
}

func (s *Service) readPort(ctx context.Context, r *receiver, port io.Reader, log *slog.Logger) error {
	lines := serialport.Lines{Max: 128} // NMEA allows 82 characters; some receivers send more
	logged, undated, rolled := false, false, false
	err := serialport.Pump(ctx, port, make([]byte, 256), func(p []byte) {
		r.mu.Lock()
		before := r.tr.Stats.Dropped() + r.overlong
		over := lines.Overlong
		now := s.now()
		lines.Feed(p, func(line []byte) {
			r.lastLine = now
			if fix, ok := r.tr.Feed(line, now); ok {
				s.emit(r, fix)
			}
		})
		r.overlong += lines.Overlong - over
		dropped := r.tr.Stats.Dropped() + r.overlong - before
		st := r.tr.Stats
		r.mu.Unlock()
		if dropped > 0 && !logged {
			log.Warn("gps: dropped bad input (logged once per open; counted in stats)",
				"checksum", st.Checksum, "malformed", st.Malformed, "invalid_fix", st.InvalidFix, "backwards", st.Backwards)
			logged = true
		}
		if st.Undated > 0 && !undated {
			log.Warn("gps: the receiver has sent no date (no RMC or ZDA yet): its fixes go out without one (logged once per open)")
			undated = true
		}
		if st.Rollovers > 0 && !rolled {
			log.Warn("gps: the receiver's date is 1024 weeks behind (GPS week-number rollover): moved forward (logged once per open)",
				"date_floor", s.cfg.DateFloor.Format(time.DateOnly))
			rolled = true
		}
	})
	return err
}

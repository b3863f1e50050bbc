package rfid

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

// Reader protocols.
const (
	ProtocolRDM6300 = "rdm6300"  // EM4100 125 kHz modules: STX, 10 hex, 2 hex XOR, ETX
	ProtocolUHFLine = "uhf-line" // UHF readers printing one read per line
)

// ReaderConfig is one reader on one serial port.
type ReaderConfig struct {
	Name      string `yaml:"name"`
	Protocol  string `yaml:"protocol"`
	Port      string `yaml:"port"`
	Baud      int    `yaml:"baud"`
	ReadPoint string `yaml:"read_point"`
	Zone      string `yaml:"zone"`
	Pattern   string `yaml:"pattern"` // uhf-line only; DefaultUHFPattern when empty
}

// Config is the RFID part of the agent's configuration.
type Config struct {
	Readers     []ReaderConfig `yaml:"readers"`
	MergeWindow time.Duration  `yaml:"merge_window"`
	MaxOpen     int            `yaml:"max_open"` // merged reads held open at once
}

// SetDefaults fills zero fields with defaults.
func (c *Config) SetDefaults() {
	if c.MergeWindow == 0 {
		c.MergeWindow = 2 * time.Second
	}
	if c.MaxOpen == 0 {
		c.MaxOpen = 4096
	}
	for i := range c.Readers {
		r := &c.Readers[i]
		if r.Baud == 0 {
			r.Baud = 9600
		}
		if r.Protocol == ProtocolUHFLine && r.Pattern == "" {
			r.Pattern = DefaultUHFPattern
		}
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if c.MergeWindow < 0 {
		return fmt.Errorf("rfid.merge_window %s: must not be negative", c.MergeWindow)
	}
	names := map[string]bool{}
	for i, r := range c.Readers {
		where := fmt.Sprintf("rfid.readers[%d]", i)
		switch {
		case r.Name == "":
			return fmt.Errorf("%s.name: required", where)
		case names[r.Name]:
			return fmt.Errorf("%s.name %q: used twice", where, r.Name)
		case r.Port == "":
			return fmt.Errorf("%s (%s).port: required (a serial device such as /dev/ttyUSB0)", where, r.Name)
		case r.ReadPoint == "" || r.Zone == "":
			return fmt.Errorf("%s (%s): read_point and zone are required", where, r.Name)
		case r.Protocol != ProtocolRDM6300 && r.Protocol != ProtocolUHFLine:
			return fmt.Errorf("%s (%s).protocol %q: want %q or %q", where, r.Name, r.Protocol, ProtocolRDM6300, ProtocolUHFLine)
		}
		names[r.Name] = true
		if r.Protocol == ProtocolUHFLine {
			if _, err := NewUHFParser(r.Pattern); err != nil {
				return fmt.Errorf("%s (%s).pattern: %w", where, r.Name, err)
			}
		}
	}
	return nil
}

// Stats counts what one reader saw.
type Stats struct {
	Reads       uint64 // good tag reads
	BadChecksum uint64
	Malformed   uint64 // torn frames, lines not matching the pattern, bad fields
	NoiseBytes  uint64
	Overlong    uint64 // lines longer than the limit (UHF)
	Reopens     uint64 // times the port was (re)opened
}

// Service runs the configured readers and reports merged reads.
type Service struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	open   serialport.OpenFunc
	report func(wire.RFID)
	reads  chan TagRead

	mu    sync.Mutex
	stats map[string]Stats
}

// New returns a Service. report is called from Run's goroutine with each
// batch of merged reads. open defaults to serialport.Open.
func New(cfg Config, open serialport.OpenFunc, now func() time.Time, log *slog.Logger, report func(wire.RFID)) *Service {
	if open == nil {
		open = serialport.Open
	}
	return &Service{cfg: cfg, log: log, now: now, open: open, report: report,
		reads: make(chan TagRead, 256), stats: map[string]Stats{}}
}

// Stats returns a copy of each reader's counters, by reader name.
func (s *Service) Stats() map[string]Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Stats, len(s.stats))
	for k, v := range s.stats {
		out[k] = v
	}
	return out
}

// Run reads every reader until ctx ends. A reader whose port fails is
// reopened after a pause; bad input is counted and skipped.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, rc := range s.cfg.Readers {
		g.Go(func() error { return s.runReader(ctx, rc) })
	}
	g.Go(func() error { return s.merge(ctx) })
	return g.Wait()
}

func (s *Service) merge(ctx context.Context) error {
	m := NewMerger(s.cfg.MergeWindow, s.cfg.MaxOpen)
	tick := s.cfg.MergeWindow / 4
	if tick < 50*time.Millisecond {
		tick = 50 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if reads := m.Flush(s.now(), true); len(reads) > 0 {
				s.report(wire.RFID{Reads: reads})
			}
			return nil
		case r := <-s.reads:
			m.Add(r)
		case <-t.C:
			if reads := m.Flush(s.now(), false); len(reads) > 0 {
				s.report(wire.RFID{Reads: reads})
			}
		}
	}
}

func (s *Service) runReader(ctx context.Context, rc ReaderConfig) error {
	log := s.log.With("reader", rc.Name, "port", rc.Port)
	var uhf *UHFParser
	if rc.Protocol == ProtocolUHFLine {
		var err error
		if uhf, err = NewUHFParser(rc.Pattern); err != nil {
			return fmt.Errorf("reader %s: %w", rc.Name, err)
		}
	}
	serialport.Keep(ctx, log, s.open, rc.Port, rc.Baud, 2*time.Second,
		func() {
			s.update(rc.Name, func(st *Stats) { st.Reopens++ })
			log.Info("rfid reader open", "protocol", rc.Protocol, "read_point", rc.ReadPoint, "zone", rc.Zone)
		},
		func(port io.Reader) error { return s.readPort(ctx, rc, port, uhf, log) })
	return nil
}

func (s *Service) update(name string, f func(*Stats)) {
	s.mu.Lock()
	st := s.stats[name]
	f(&st)
	s.stats[name] = st
	s.mu.Unlock()
}

// readPort reads one open port until it fails or ctx ends.
func (s *Service) readPort(ctx context.Context, rc ReaderConfig, port io.Reader, uhf *UHFParser, log *slog.Logger) error {
	var framer RDM6300Framer
	lines := serialport.Lines{Max: 512}
	var logged bool // the first rejection is logged, the rest counted
	emit := func(epc string, rssi float64, hasRSSI bool, ant int) {
		r := TagRead{Reader: rc.Name, ReadPoint: rc.ReadPoint, Zone: rc.Zone, EPC: epc,
			RSSI: rssi, HasRSSI: hasRSSI, Antenna: ant, Time: s.now()}
		select {
		case s.reads <- r:
		case <-ctx.Done():
		}
	}
	var prev FrameStats
	err := serialport.Pump(ctx, port, make([]byte, 256), func(p []byte) {
		var good, bad uint64
		var firstErr error
		if uhf == nil {
			framer.Feed(p, func(id string) { emit(id, 0, false, 0) })
			d := framer.Stats
			s.update(rc.Name, func(st *Stats) {
				st.Reads += d.Frames - prev.Frames
				st.BadChecksum += d.BadChecksum - prev.BadChecksum
				st.Malformed += d.Torn - prev.Torn
				st.NoiseBytes += d.NoiseBytes - prev.NoiseBytes
			})
			bad = (d.BadChecksum - prev.BadChecksum) + (d.Torn - prev.Torn)
			if bad > 0 {
				firstErr = fmt.Errorf("%d bad or torn frames", bad)
			}
			prev = d
		} else {
			overlong := lines.Overlong
			lines.Feed(p, func(line []byte) {
				r, err := uhf.Parse(line)
				if err != nil {
					bad++
					if firstErr == nil {
						firstErr = fmt.Errorf("line %q: %w", truncate(line, 80), err)
					}
					return
				}
				good++
				emit(r.EPC, r.RSSI, r.HasRSSI, r.Antenna)
			})
			s.update(rc.Name, func(st *Stats) {
				st.Reads += good
				st.Malformed += bad
				st.Overlong += lines.Overlong - overlong
			})
		}
		if firstErr != nil && !logged {
			log.Warn("rfid: rejected bad input (logged once per open; counted in stats)", "err", firstErr)
			logged = true
		}
	})
	return err
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

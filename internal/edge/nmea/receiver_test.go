package nmea

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"twinchain/internal/edge/serialport"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// ptyService runs a Service on a real pseudo-terminal and returns the
// master to write to, a function returning the fixes reported so far, and
// a stop function that waits for Run to return.
func ptyService(t *testing.T, cfg Config, now func() time.Time) (io.Writer, func() []wire.GPSFix, *Service, func()) {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close(); slave.Close() })
	cfg.Receivers = []ReceiverConfig{{Name: "ublox", Port: slave.Name()}}
	cfg.SetDefaults("gw-s1-dock")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var fixes []wire.GPSFix
	opened := make(chan struct{})
	var once sync.Once
	open := func(path string, baud int) (io.ReadWriteCloser, error) {
		p, err := serialport.Open(path, baud)
		if err == nil {
			once.Do(func() { close(opened) })
		}
		return p, err
	}
	svc := New(cfg, open, now, slog.New(slog.NewTextHandler(io.Discard, nil)), func(f wire.GPSFix) {
		mu.Lock()
		fixes = append(fixes, f)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the service did not open the pseudo-terminal within 10s")
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
	get := func() []wire.GPSFix {
		mu.Lock()
		defer mu.Unlock()
		return append([]wire.GPSFix(nil), fixes...)
	}
	return master, get, svc, stop
}

// TestServiceOnPseudoTerminal plays a receiver on a real pseudo-terminal,
// with noise and bad sentences between good ones: each epoch is reported
// once, complete, the last one when the line goes quiet, dated by the
// receiver (the agent's clock is a year off).
func TestServiceOnPseudoTerminal(t *testing.T) {
	agentNow := func() time.Time { return time.Now().AddDate(1, 0, 0) }
	w, fixes, svc, stop := ptyService(t, Config{ReportInterval: 50 * time.Millisecond, EpochTimeout: 150 * time.Millisecond}, agentNow)
	epoch := func(sec int, lat string) string {
		hms := fmt.Sprintf("1200%02d.00", sec)
		return Sentence("GPRMC,"+hms+",A,"+lat+",N,01324.2973,E,3.888,87.5,251126,,,A") +
			Sentence("GPVTG,87.5,T,,M,3.888,N,7.2,K,A") +
			Sentence("GPGGA,"+hms+","+lat+",N,01324.2973,E,1,09,0.8,34.2,M,45.0,M,,") +
			Sentence("GPGSA,A,3,01,02,03,04,05,06,07,08,09,,,,1.5,0.8,1.2")
	}
	w.Write([]byte("\xf8\x80\x00" + strings.Repeat("\xe6", 300) + "\r\n"))
	w.Write([]byte(epoch(1, "5231.2005")))
	w.Write([]byte("$GPGGA,120001.00,5231.20\r\n"))
	w.Write([]byte(epoch(2, "5231.3005")))
	testsvc.Eventually(t, 20*time.Second, "two fixes", func() bool { return len(fixes()) == 2 })
	st := svc.Stats()["ublox"]
	stop()
	got := fixes()
	if len(got) != 2 {
		t.Fatalf("%d fixes, want 2 (one per epoch): %+v", len(got), got)
	}
	for i, f := range got {
		want := time.Date(2026, 11, 25, 12, 0, 1+i, 0, time.UTC)
		if f.Asset != "gw-s1-dock" || !f.FixTime.Equal(want) || f.AltM != 34.2 || f.Sats != 9 || f.HDOP != 0.8 ||
			math.Abs(f.SpeedMS-2) > 0.01 || f.CourseDeg != 87.5 || f.Quality != 1 {
			t.Errorf("fix %d = %+v, want gw-s1-dock's complete epoch at %s", i, f, want)
		}
	}
	if math.Abs(got[1].Lat-52.521675) > 1e-6 {
		t.Errorf("last fix latitude %f, want 52.521675", got[1].Lat)
	}
	if st.Malformed != 1 || st.Checksum != 1 || st.Epochs != 2 || st.Fixes != 2 {
		t.Errorf("stats = %+v, want 1 malformed (the overlong garbage), 1 checksum (the torn GGA), 2 epochs and fixes", st)
	}
}

// TestServiceReportInterval plays a 5 Hz receiver: with a 1 s report
// interval one whole epoch a second goes out, by the receiver's time.
func TestServiceReportInterval(t *testing.T) {
	w, fixes, _, stop := ptyService(t, Config{ReportInterval: time.Second, EpochTimeout: 100 * time.Millisecond}, time.Now)
	var b strings.Builder
	for ms := 0; ms <= 2400; ms += 200 {
		hms := fmt.Sprintf("1200%02d.%02d", 1+ms/1000, ms%1000/10)
		b.WriteString(Sentence("GNGGA," + hms + ",5231.2005,N,01324.2973,E,1,09,0.8,34.2,M,45.0,M,,"))
		b.WriteString(Sentence("GNRMC," + hms + ",A,5231.2005,N,01324.2973,E,0.0,0.0,251126,,,A"))
	}
	w.Write([]byte(b.String()))
	testsvc.Eventually(t, 20*time.Second, "three fixes", func() bool { return len(fixes()) == 3 })
	stop()
	got := fixes()
	for i, f := range got {
		if want := time.Date(2026, 11, 25, 12, 0, 1+i, 0, time.UTC); !f.FixTime.Equal(want) {
			t.Errorf("fix %d at %s, want %s", i, f.FixTime, want)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d fixes from 2.4 s of a 5 Hz receiver with a 1 s interval, want 3", len(got))
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // part of the error; empty: valid
	}{
		{"defaults", Config{Receivers: []ReceiverConfig{{Port: "/dev/ttyACM0"}}}, ""},
		{"no port", Config{Receivers: []ReceiverConfig{{Name: "a"}}}, "gps.receivers[0].port"},
		{"same name twice", Config{Receivers: []ReceiverConfig{{Name: "a", Port: "/dev/x"}, {Name: "a", Port: "/dev/y"}}}, "used twice"},
		{"epoch timeout too short", Config{EpochTimeout: time.Millisecond}, "gps.epoch_timeout"},
		{"date floor before GPS", Config{DateFloor: time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)}, "gps.date_floor"},
	}
	for _, tc := range cases {
		tc.cfg.SetDefaults("gw")
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}

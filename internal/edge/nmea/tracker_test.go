package nmea

import (
	"context"
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

var clock = func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }

func feedAll(tr *Tracker, text string) {
	for _, line := range strings.Split(text, "\n") {
		tr.Feed([]byte(strings.TrimRight(line, "\r")))
	}
}

func TestTrackerBadInput(t *testing.T) {
	good := Sentence("GPRMC,120001.00,A,5231.2005,N,01324.2973,E,0.5,87.5,251126,,,A")
	cases := []struct {
		name  string
		lines string
		want  Stats
	}{
		{"good RMC", good, Stats{Used: 1, Fixes: 1}},
		{"bad checksum", strings.Replace(good, "*", "0*", 1), Stats{Checksum: 1}},
		{"missing checksum", "$GPRMC,120001.00,A,5231.2005,N,01324.2973,E,0.5,87.5,251126,,,A", Stats{Checksum: 1}},
		{"truncated", good[:30], Stats{Checksum: 1}},
		{"torn line without $", good[10:], Stats{Malformed: 1}},
		{"binary noise", "\x00\xff\x80\xf8\xf8\xf8", Stats{Malformed: 1}},
		// 9600-baud NMEA read at 4800 baud: nothing like a sentence.
		{"wrong baud garbage", "\xe6\x98\x1e\x86\xe0\x78\x9e\x66\x06\xf8\x80\x1e", Stats{Malformed: 1}},
		{"noise before $ is skipped", "\xf8\xf8" + good, Stats{Used: 1, Fixes: 1}},
		{"RMC void", Sentence("GPRMC,120001.00,V,,,,,,,251126,,,N"), Stats{InvalidFix: 1}},
		{"GGA quality 0", Sentence("GPGGA,120001.00,,,,,0,00,99.99,,,,,,"), Stats{InvalidFix: 1}},
		{"GGA simulated", Sentence("GPGGA,120001.00,5231.2005,N,01324.2973,E,8,09,2.0,695.7,M,51.6,M,,"), Stats{InvalidFix: 1}},
		{"GSA no fix", Sentence("GPGSA,A,1,,,,,,,,,,,,,,,"), Stats{InvalidFix: 1}},
		{"VTG mode N", Sentence("GPVTG,,T,,M,,N,,K,N"), Stats{InvalidFix: 1}},
		{"GGA bad latitude field", Sentence("GPGGA,120001.00,52x1.2005,N,01324.2973,E,1,09,2.0,34.2,M,,M,,"), Stats{Malformed: 1}},
		{"GGA too few fields", Sentence("GPGGA,120001.00,5231.2005"), Stats{Malformed: 1}},
		{"GSV ignored", Sentence("GPGSV,1,1,01,05,60,046,49"), Stats{Ignored: 1}},
		{"unknown talker ignored", Sentence("SNRSTAT,1,2"), Stats{Ignored: 1}},
		{"proprietary ignored", Sentence("PGRME,15.0,M,22.5,M,27.0,M"), Stats{Ignored: 1}},
		{"backwards in time", good + "\n" + Sentence("GPRMC,120000.00,A,5231.2005,N,01324.2973,E,0.5,87.5,251126,,,A"), Stats{Used: 1, Fixes: 1, Backwards: 1}},
	}
	for _, tc := range cases {
		tr := NewTracker("gw-1", clock)
		feedAll(tr, tc.lines)
		if tr.Stats != tc.want {
			t.Errorf("%s: stats = %+v, want %+v", tc.name, tr.Stats, tc.want)
		}
	}
}

func TestTrackerEpoch(t *testing.T) {
	tr := NewTracker("gw-1", clock)
	// One epoch from a multi-GNSS receiver (GN talker), then GSA and VTG.
	feedAll(tr, strings.Join([]string{
		Sentence("GNRMC,120001.00,A,5231.2005,N,01324.2973,E,1.944,87.5,251126,,,A,V"),
		Sentence("GNGGA,120001.00,5231.2005,N,01324.2973,E,2,11,0.9,34.2,M,45.0,M,,"),
		Sentence("GNGSA,A,3,01,02,03,04,,,,,,,,,1.8,1.2,1.5,1"),
		Sentence("GNVTG,90.0,T,,M,2.0,N,3.6,K,D"),
	}, "\n"))
	fix, ok := tr.Take()
	if !ok {
		t.Fatal("Take() = false after a full epoch, want a fix")
	}
	want := wire.GPSFix{Asset: "gw-1", Lat: 52.520008333, Lon: 13.404955, AltM: 34.2, Quality: 2, HDOP: 0.9, Sats: 11,
		SpeedMS: 1, CourseDeg: 90, FixTime: time.Date(2026, 11, 25, 12, 0, 1, 0, time.UTC)}
	if math.Abs(fix.Lat-want.Lat) > 1e-6 || math.Abs(fix.Lon-want.Lon) > 1e-6 {
		t.Errorf("fix position = %f,%f, want %f,%f", fix.Lat, fix.Lon, want.Lat, want.Lon)
	}
	fix.Lat, fix.Lon = want.Lat, want.Lon
	if fix != want {
		t.Errorf("Take() = %+v, want %+v", fix, want)
	}
	if _, ok := tr.Take(); ok {
		t.Errorf("second Take() = true, want false: nothing new")
	}
	// Every constellation's talker is used.
	for i, talker := range []string{"GP", "GL", "GA", "GB", "BD"} {
		sec := 2 + i
		before := tr.Stats.Used
		tr.Feed([]byte(strings.TrimSpace(Sentence(talker + "GGA,12000" + string(rune('0'+sec)) + ".00,5231.2005,N,01324.2973,E,1,08,1.0,34.2,M,,M,,"))))
		if tr.Stats.Used != before+1 {
			t.Errorf("talker %s: GGA not used, stats %+v", talker, tr.Stats)
		}
	}
	// After midnight a GGA arrives before the RMC with the new date.
	tr.Feed([]byte(strings.TrimSpace(Sentence("GPGGA,000000.50,5231.2005,N,01324.2973,E,1,08,1.0,34.2,M,,M,,"))))
	fix, ok = tr.Take()
	if !ok || !fix.FixTime.Equal(time.Date(2026, 11, 26, 0, 0, 0, 5e8, time.UTC)) {
		t.Errorf("fix after midnight = %v, %v, want 2026-11-26 00:00:00.5", fix.FixTime, ok)
	}
}

// TestServiceOnPseudoTerminal plays a receiver on a real pseudo-terminal,
// with noise and bad sentences between good ones, and checks the reports.
func TestServiceOnPseudoTerminal(t *testing.T) {
	master, slave, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer master.Close()
	defer slave.Close()
	cfg := Config{Receivers: []ReceiverConfig{{Name: "ublox", Port: slave.Name()}}, ReportInterval: 50 * time.Millisecond}
	cfg.SetDefaults("gw-s1-dock")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var fixes []wire.GPSFix
	// The port is written only once the service has opened it.
	opened := make(chan struct{})
	markOpened := sync.OnceFunc(func() { close(opened) })
	open := func(path string, baud int) (io.ReadWriteCloser, error) {
		port, err := serialport.Open(path, baud)
		if err == nil {
			markOpened()
		}
		return port, err
	}
	svc := New(cfg, open, clock, slog.New(slog.NewTextHandler(io.Discard, nil)), func(f wire.GPSFix) {
		mu.Lock()
		fixes = append(fixes, f)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-opened:
	case <-time.After(20 * time.Second):
		t.Fatal("the service did not open the port within 20s")
	}
	master.Write([]byte("\xf8\x80\x00" + strings.Repeat("\xe6", 300) + "\r\n"))
	master.Write([]byte(Sentence("GPRMC,120001.00,A,5231.2005,N,01324.2973,E,0.0,0.0,251126,,,A")))
	master.Write([]byte("$GPGGA,120001.00,5231.20\r\n"))
	master.Write([]byte(Sentence("GPRMC,120002.00,A,5231.3005,N,01324.2973,E,0.0,0.0,251126,,,A")))
	// Both fixes parsed, and the newer one reported.
	latest := time.Date(2026, 11, 25, 12, 0, 2, 0, time.UTC)
	testsvc.Eventually(t, 20*time.Second, "the 12:00:02 fix reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(fixes) > 0 && fixes[len(fixes)-1].FixTime.Equal(latest) && svc.Stats()["ublox"].Fixes == 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	last := fixes[len(fixes)-1]
	if last.Asset != "gw-s1-dock" || math.Abs(last.Lat-52.521675) > 1e-6 || !last.FixTime.Equal(time.Date(2026, 11, 25, 12, 0, 2, 0, time.UTC)) {
		t.Errorf("last fix = %+v, want gw-s1-dock at 52.521675 at 12:00:02", last)
	}
	for i := 1; i < len(fixes); i++ {
		if !fixes[i].FixTime.After(fixes[i-1].FixTime) {
			t.Errorf("reports %d and %d not in time order: %s, %s", i-1, i, fixes[i-1].FixTime, fixes[i].FixTime)
		}
	}
	st := svc.Stats()["ublox"]
	if st.Malformed != 1 || st.Checksum != 1 {
		t.Errorf("stats = %+v, want 1 malformed (the overlong garbage) and 1 checksum (the torn GGA)", st)
	}
}

func FuzzNMEA(f *testing.F) {
	f.Add([]byte(Sentence("GNRMC,223745.00,A,3806.62964,N,12237.61382,W,0.040,,110720,,,D,V") +
		Sentence("GNGGA,223745.00,3806.62964,N,12237.61382,W,2,12,0.54,83.1,M,-29.5,M,,0000") +
		Sentence("GNGSA,A,3,29,20,18,16,51,13,44,26,,,,,0.99,0.54,0.83,1") + Sentence("GNVTG,,T,,M,0.040,N,0.075,K,D")))
	f.Add([]byte(Sentence("GPGGA,,,,,,0,,,,M,,M,,") + Sentence("GPRMC,,V,,,,,,,,,,N")))
	f.Add([]byte("$GPGGA,120001.00,5231.20\r\n\xf8\x80\x00"))
	f.Add([]byte(Sentence("GPGGA,999999.99,9999.9999,N,99999.9999,E,1,99,9.9,99999,M,,M,,")))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := NewTracker("gw-fuzz", clock)
		lines := serialport.Lines{Max: 128}
		var last time.Time
		lines.Feed(data, func(line []byte) {
			fix, ok := tr.Feed(line)
			if !ok {
				return
			}
			if fix.FixTime.Before(last) {
				t.Fatalf("fix went back in time: %s after %s", fix.FixTime, last)
			}
			last = fix.FixTime
			if fix.Lat < -90 || fix.Lat > 90 || fix.Lon < -180 || fix.Lon > 180 || math.IsNaN(fix.Lat) {
				t.Fatalf("fix out of range: %+v", fix)
			}
			if fix.Quality < 1 || fix.Quality > 5 {
				t.Fatalf("fix with quality %d reported", fix.Quality)
			}
		})
	})
}

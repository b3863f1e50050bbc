package nmea

import (
	"math"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/serialport"
	"twinchain/internal/wire"
)

// feedAll feeds text line by line, 100 ms apart by the agent's clock from
// start, ends the last epoch, and returns the fixes in order.
func feedAll(tr *Tracker, start time.Time, text string) []Fix {
	var out []Fix
	at := start
	for _, line := range strings.Split(text, "\n") {
		at = at.Add(100 * time.Millisecond)
		if fix, ok := tr.Feed([]byte(strings.TrimRight(line, "\r")), at); ok {
			out = append(out, fix)
		}
	}
	if fix, ok := tr.End(); ok {
		out = append(out, fix)
	}
	return out
}

func lines(ss ...string) string { return strings.Join(ss, "") }

// agentClock is a wrong agent clock: a day and six hours ahead of the
// receivers in these tests. No fix may carry its date.
var agentClock = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

func TestTrackerBadInput(t *testing.T) {
	good := Sentence("GPRMC,120001.00,A,5231.2005,N,01324.2973,E,0.5,87.5,251126,,,A")
	cases := []struct {
		name  string
		lines string
		want  Stats
	}{
		{"good RMC", good, Stats{Used: 1, Epochs: 1, Fixes: 1}},
		{"bad checksum", strings.Replace(good, "*", "0*", 1), Stats{Checksum: 1}},
		{"missing checksum", "$GPRMC,120001.00,A,5231.2005,N,01324.2973,E,0.5,87.5,251126,,,A", Stats{Checksum: 1}},
		{"truncated", good[:30], Stats{Checksum: 1}},
		{"torn line without $", good[10:], Stats{Malformed: 1}},
		{"binary noise", "\x00\xff\x80\xf8\xf8\xf8", Stats{Malformed: 1}},
		// 9600-baud NMEA read at 4800 baud: nothing like a sentence.
		{"wrong baud garbage", "\xe6\x98\x1e\x86\xe0\x78\x9e\x66\x06\xf8\x80\x1e", Stats{Malformed: 1}},
		{"noise before $ is skipped", "\xf8\xf8" + good, Stats{Used: 1, Epochs: 1, Fixes: 1}},
		{"RMC void", Sentence("GPRMC,120001.00,V,,,,,,,251126,,,N"), Stats{InvalidFix: 1, Epochs: 1}},
		{"GGA quality 0", Sentence("GPGGA,120001.00,,,,,0,00,99.99,,,,,,"), Stats{InvalidFix: 1, Epochs: 1}},
		{"GGA simulated", Sentence("GPGGA,120001.00,5231.2005,N,01324.2973,E,8,09,2.0,695.7,M,51.6,M,,"), Stats{InvalidFix: 1, Epochs: 1}},
		{"GGA 0 satellites", Sentence("GPGGA,120001.00,5231.2005,N,01324.2973,E,1,00,3.3,10.8,M,-33.3,M,,"), Stats{Used: 1, InvalidFix: 1, Epochs: 1}},
		{"GSA no fix", Sentence("GPGSA,A,1,,,,,,,,,,,,,,,"), Stats{Used: 1, InvalidFix: 1}},
		{"VTG mode N", Sentence("GPVTG,,T,,M,,N,,K,N"), Stats{InvalidFix: 1}},
		{"GGA with a fix and no time", Sentence("GPGGA,,5231.2005,N,01324.2973,E,1,09,2.0,34.2,M,,M,,"), Stats{Malformed: 1}},
		{"GGA bad latitude field", Sentence("GPGGA,120001.00,52x1.2005,N,01324.2973,E,1,09,2.0,34.2,M,,M,,"), Stats{Malformed: 1}},
		{"GGA latitude out of range", Sentence("GPGGA,120001.00,9131.2005,N,01324.2973,E,1,09,2.0,34.2,M,,M,,"), Stats{Malformed: 1}},
		{"GGA too few fields", Sentence("GPGGA,120001.00,5231.2005"), Stats{Malformed: 1}},
		{"ZDA without a time", Sentence("GPZDA,,,,,00,00"), Stats{Ignored: 1}},
		{"GSV ignored", Sentence("GPGSV,1,1,01,05,60,046,49"), Stats{Ignored: 1}},
		{"unknown talker ignored", Sentence("SNRSTAT,1,2"), Stats{Ignored: 1}},
		{"proprietary ignored", Sentence("PGRME,15.0,M,22.5,M,27.0,M"), Stats{Ignored: 1}},
		{"backwards in time", good + "\n" + Sentence("GPRMC,120000.00,A,5231.2005,N,01324.2973,E,0.5,87.5,251126,,,A"),
			Stats{Used: 2, Epochs: 2, Fixes: 1, Backwards: 1}},
	}
	for _, tc := range cases {
		tr := NewTracker("gw-1", time.Time{})
		feedAll(tr, agentClock, tc.lines)
		if tr.Stats != tc.want {
			t.Errorf("%s: stats = %+v, want %+v", tc.name, tr.Stats, tc.want)
		}
	}
}

// TestTrackerEpoch checks that a fix comes out once, complete, when its
// epoch ends: not while its sentences are still coming in.
func TestTrackerEpoch(t *testing.T) {
	tr := NewTracker("gw-1", time.Time{})
	epoch := []string{
		Sentence("GNRMC,120001.00,A,5231.2005,N,01324.2973,E,1.944,87.5,251126,,,A,V"),
		Sentence("GNVTG,87.5,T,,M,1.944,N,3.6,K,D"),
		Sentence("GNGGA,120001.00,5231.2005,N,01324.2973,E,2,11,0.9,34.2,M,45.0,M,,"),
		Sentence("GNGSA,A,3,01,02,03,04,,,,,,,,,1.8,1.2,1.5,1"),
		Sentence("GPGSV,1,1,04,05,01,047,,10,29,224,31,13,22,062,23,15,40,094,38,1"),
		Sentence("GNGLL,5231.2005,N,01324.2973,E,120001.00,A,D"),
	}
	for i, line := range epoch {
		if fix, ok := tr.Feed([]byte(strings.TrimSpace(line)), agentClock); ok {
			t.Fatalf("sentence %d of the epoch gave a fix before the epoch ended: %+v", i, fix)
		}
	}
	fix, ok := tr.Feed([]byte(strings.TrimSpace(Sentence("GNRMC,120002.00,A,5231.2005,N,01324.2973,E,1.944,87.5,251126,,,A,V"))), agentClock)
	if !ok {
		t.Fatal("the next epoch's first sentence gave no fix, want the finished epoch's")
	}
	want := wire.GPSFix{Asset: "gw-1", Lat: 52.520008333, Lon: 13.404955, AltM: 34.2, Quality: 2, HDOP: 0.9, Sats: 11,
		SpeedMS: 1.944 * knot, CourseDeg: 87.5, FixTime: time.Date(2026, 11, 25, 12, 0, 1, 0, time.UTC)}
	if math.Abs(fix.Lat-want.Lat) > 1e-6 || math.Abs(fix.Lon-want.Lon) > 1e-6 {
		t.Errorf("fix position = %f,%f, want %f,%f", fix.Lat, fix.Lon, want.Lat, want.Lon)
	}
	fix.Lat, fix.Lon = want.Lat, want.Lon
	if fix.GPSFix != want || fix.Date != DateRMC || !fix.HasAlt || !fix.HasSpeed || !fix.HasCourse {
		t.Errorf("fix = %+v, want %+v dated by its RMC with altitude, speed and course", fix, want)
	}
	if _, ok := tr.End(); !ok {
		t.Error("End() after an RMC-only epoch = no fix, want its fix")
	}
	if _, ok := tr.End(); ok {
		t.Error("second End() gave a fix, want none: one fix per epoch")
	}
	// A sentence of the closed epoch that comes late makes no second fix.
	tr.Feed([]byte(strings.TrimSpace(Sentence("GNGGA,120002.00,5231.2005,N,01324.2973,E,2,11,0.9,34.2,M,45.0,M,,"))), agentClock)
	if fix, ok := tr.End(); ok {
		t.Errorf("a straggler of a closed epoch gave a second fix %+v", fix)
	}
	// Every constellation's talker is used.
	for i, talker := range []string{"GP", "GL", "GA", "GB", "BD"} {
		sec := 3 + i
		before := tr.Stats.Used
		tr.Feed([]byte(strings.TrimSpace(Sentence(talker+"GGA,12000"+string(rune('0'+sec))+".00,5231.2005,N,01324.2973,E,1,08,1.0,34.2,M,,M,,"))), agentClock)
		if tr.Stats.Used != before+1 {
			t.Errorf("talker %s: GGA not used, stats %+v", talker, tr.Stats)
		}
	}
}

// TestTrackerDates covers where a fix's date comes from: the receiver only.
func TestTrackerDates(t *testing.T) {
	floor2017 := time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		floor time.Time
		text  string
		want  []time.Time // zero: no date
		src   []DateSource
	}{
		{
			// A receiver with GGA and no RMC or ZDA: no date, not the agent's.
			name: "GGA only",
			text: lines(Sentence("GPGGA,120001.00,5231.2005,N,01324.2973,E,1,08,1.0,34.2,M,,M,,"),
				Sentence("GPGGA,120002.00,5231.2005,N,01324.2973,E,1,08,1.0,34.2,M,,M,,")),
			want: []time.Time{{}, {}},
			src:  []DateSource{DateNone, DateNone},
		},
		{
			// ZDA dates the GGA of its epoch (hemi.log's order: GGA, VTG,
			// ZDA) and is carried to the next epoch, which has none.
			name: "GGA dated by ZDA",
			text: lines(Sentence("GPGGA,194058.00,4221.8236441,N,07101.9438734,W,1,04,1.4,6.786,M,-33.057,M,,"),
				Sentence("GPVTG,346.88,T,1.52,M,0.04,N,0.07,K,A"),
				Sentence("GPZDA,194058.00,07,09,2018,00,00"),
				Sentence("GPGGA,194058.50,4221.8236149,N,07101.9438435,W,1,04,1.4,6.668,M,-33.057,M,,")),
			want: []time.Time{time.Date(2018, 9, 7, 19, 40, 58, 0, time.UTC), time.Date(2018, 9, 7, 19, 40, 58, 5e8, time.UTC)},
			src:  []DateSource{DateZDA, DateCarried},
		},
		{
			// The first GGA of a stream, before the epoch's RMC: the RMC's date.
			name: "first GGA before RMC",
			text: lines(Sentence("GPGGA,021005.000,3723.2475,N,12158.3416,W,1,07,1.0,9.0,M,,M,,"),
				Sentence("GNRMC,021005.000,A,3723.2475,N,12158.3416,W,0.0,0.0,150419,,,A")),
			want: []time.Time{time.Date(2019, 4, 15, 2, 10, 5, 0, time.UTC)},
			src:  []DateSource{DateRMC},
		},
		{
			// The date carried over midnight: the receiver's day moves on.
			name: "carried over midnight",
			text: lines(Sentence("GPRMC,235959.50,A,5231.2005,N,01324.2973,E,0.0,0.0,311226,,,A"),
				Sentence("GPGGA,000000.50,5231.2005,N,01324.2973,E,1,08,1.0,34.2,M,,M,,")),
			want: []time.Time{time.Date(2026, 12, 31, 23, 59, 59, 5e8, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 5e8, time.UTC)},
			src:  []DateSource{DateRMC, DateCarried},
		},
		{
			// GPS week 0 after the 2019 rollover: 1999-08-22 is 2019-04-07.
			name:  "1024-week rollover",
			floor: floor2017,
			text:  Sentence("GPRMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A"),
			want:  []time.Time{time.Date(2019, 4, 7, 0, 2, 31, 420e6, time.UTC)},
			src:   []DateSource{DateRMC},
		},
		{
			// Garbage dates ("2208-1", day 0, month 13) are no dates.
			name: "invalid dates",
			text: lines(Sentence("GPRMC,000231.099,A,4829.0005,N,00022.0015,E,0.15,212.28,2208-1,,,A"),
				Sentence("GPRMC,000232.099,A,4829.0005,N,00022.0015,E,0.15,212.28,001326,,,A"),
				Sentence("GPZDA,000233.099,00,13,2026,00,00"),
				Sentence("GPGGA,000233.099,4829.0005,N,00022.0015,E,1,08,1.0,34.2,M,,M,,")),
			want: []time.Time{{}, {}, {}},
			src:  []DateSource{DateNone, DateNone, DateNone},
		},
	}
	for _, tc := range cases {
		tr := NewTracker("gw-1", tc.floor)
		fixes := feedAll(tr, agentClock, tc.text)
		if len(fixes) != len(tc.want) {
			t.Errorf("%s: %d fixes, want %d", tc.name, len(fixes), len(tc.want))
			continue
		}
		for i, f := range fixes {
			if !f.FixTime.Equal(tc.want[i]) || f.Date != tc.src[i] {
				t.Errorf("%s: fix %d at %s (%s), want %s (%s)", tc.name, i, f.FixTime, f.Date, tc.want[i], tc.src[i])
			}
			if f.Date != DateNone && f.TimeOfDay != f.FixTime.Sub(f.FixTime.Truncate(day)) {
				t.Errorf("%s: fix %d time of day %s, fix time %s", tc.name, i, f.TimeOfDay, f.FixTime)
			}
		}
	}
}

// TestTrackerCarriesOverSilence dates a GGA that comes 30 hours after the
// last ZDA: the agent's clock measures the silence (not the date), so the
// fix is two days on, not the nearest time of day.
func TestTrackerCarriesOverSilence(t *testing.T) {
	tr := NewTracker("gw-1", time.Time{})
	t0 := agentClock
	tr.Feed([]byte(strings.TrimSpace(Sentence("GPGGA,230000.00,5231.2005,N,01324.2973,E,1,08,1.0,34.2,M,,M,,"))), t0)
	tr.Feed([]byte(strings.TrimSpace(Sentence("GPZDA,230000.00,24,11,2026,00,00"))), t0)
	if _, ok := tr.End(); !ok {
		t.Fatal("no fix from the ZDA-dated epoch")
	}
	tr.Feed([]byte(strings.TrimSpace(Sentence("GPGGA,050000.00,5231.2005,N,01324.2973,E,1,08,1.0,34.2,M,,M,,"))), t0.Add(30*time.Hour))
	fix, ok := tr.End()
	want := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC) // 24 Nov 23:00 + 30 h; not 25 Nov, the nearest 05:00
	if !ok || !fix.FixTime.Equal(want) || fix.Date != DateCarried {
		t.Errorf("fix after 30 h of silence = %s (%s), want %s carried", fix.FixTime, fix.Date, want)
	}
}

// TestTrackerNoFix: quality 0, RMC status V, GSA mode 1 and 0 satellites
// each mean no fix; 0 satellites in a GGA is overruled by a GSA of the same
// epoch that lists the satellites of a 3D fix (gpsd does the same).
func TestTrackerNoFix(t *testing.T) {
	gga := func(q, sats string) string {
		return Sentence("GPGGA,120001.00,5231.2005,N,01324.2973,E," + q + "," + sats + ",1.0,34.2,M,,M,,")
	}
	cases := []struct {
		name string
		text string
		fix  bool
	}{
		{"GGA quality 1", gga("1", "08"), true},
		{"GGA quality 0", gga("0", "08"), false},
		{"GGA 0 satellites (hemi.log)", lines(gga("1", "00"), Sentence("GPVTG,330.63,T,345.26,M,0.00,N,0.00,K,A"), Sentence("GPZDA,120001.00,07,09,2018,00,00")), false},
		{"GGA 0 satellites, GSA 3D (furuno_gl_ga.log)", lines(gga("2", "00"), Sentence("GNGSA,A,3,68,69,70,78,84,85,,,,,,,1.5,1.3,1.0,2")), true},
		{"RMC status V", lines(gga("1", "08"), Sentence("GPRMC,120001.00,V,5231.2005,N,01324.2973,E,0.0,0.0,251126,,,N")), false},
		{"GSA mode 1", lines(gga("1", "08"), Sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99")), false},
		{"GSA mode 1 for one system, 3D for another", lines(gga("1", "08"), Sentence("GNGSA,A,3,01,02,03,04,,,,,,,,,1.8,1.2,1.5,1"), Sentence("GNGSA,A,1,,,,,,,,,,,,,1.8,1.2,1.5,3")), true},
		{"VTG mode N", lines(gga("1", "08"), Sentence("GPVTG,,T,,M,,N,,K,N")), false},
	}
	for _, tc := range cases {
		tr := NewTracker("gw-1", time.Time{})
		fixes := feedAll(tr, agentClock, tc.text)
		if got := len(fixes) == 1; got != tc.fix {
			t.Errorf("%s: %d fixes, want a fix: %v", tc.name, len(fixes), tc.fix)
		}
	}
}

func FuzzNMEA(f *testing.F) {
	f.Add([]byte(Sentence("GNRMC,223745.00,A,3806.62964,N,12237.61382,W,0.040,,110720,,,D,V") +
		Sentence("GNGGA,223745.00,3806.62964,N,12237.61382,W,2,12,0.54,83.1,M,-29.5,M,,0000") +
		Sentence("GNGSA,A,3,29,20,18,16,51,13,44,26,,,,,0.99,0.54,0.83,1") + Sentence("GNVTG,,T,,M,0.040,N,0.075,K,D")))
	f.Add([]byte(Sentence("GPGGA,,,,,,0,,,,M,,M,,") + Sentence("GPRMC,,V,,,,,,,,,,N")))
	f.Add([]byte("$GPGGA,120001.00,5231.20\r\n\xf8\x80\x00"))
	f.Add([]byte(Sentence("GPGGA,999999.99,9999.9999,N,99999.9999,E,1,99,9.9,99999,M,,M,,")))
	f.Add([]byte(Sentence("GPZDA,194058.00,07,09,2018,00,00") + Sentence("GPGGA,194058.50,4221.8236149,N,07101.9438435,W,1,04,1.4,6.668,M,-33.057,M,,") +
		Sentence("GNGNS,213712.000,4111.59903,N,11156.54809,W,AANN,13,0.93,01482.5,-016.5,,")))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := NewTracker("gw-fuzz", DefaultDateFloor)
		lines := serialport.Lines{Max: 128}
		var last time.Time
		check := func(fix Fix) {
			if fix.Date != DateNone {
				if !fix.FixTime.After(last) {
					t.Fatalf("fix not after the last: %s after %s", fix.FixTime, last)
				}
				if fix.FixTime.Before(DefaultDateFloor) {
					t.Fatalf("fix dated %s, before the floor", fix.FixTime)
				}
				last = fix.FixTime
			} else if !fix.FixTime.IsZero() {
				t.Fatalf("undated fix with a time: %+v", fix)
			}
			if fix.Lat < -90 || fix.Lat > 90 || fix.Lon < -180 || fix.Lon > 180 || math.IsNaN(fix.Lat) || math.IsNaN(fix.Lon) {
				t.Fatalf("fix out of range: %+v", fix)
			}
			if fix.Quality < 1 || fix.Quality > 5 {
				t.Fatalf("fix with quality %d reported", fix.Quality)
			}
		}
		lines.Feed(data, func(line []byte) {
			if fix, ok := tr.Feed(line, time.Time{}); ok {
				check(fix)
			}
		})
		if fix, ok := tr.End(); ok {
			check(fix)
		}
	})
}

package nmea

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/nmea/nmeatest"
)

// gpsdCorpus is the folder of real receiver captures with gpsd's fixes:
// $TWINCHAIN_NMEA_CORPUS, else ../shared/testdata/nmea beside the
// repository root (or beside a folder above it, for a worktree in a subfolder).
func gpsdCorpus(t *testing.T) string {
	t.Helper()
	dir := nmeatest.Corpus(os.Getenv("TWINCHAIN_NMEA_CORPUS"))
	if dir == "" {
		t.Skip("gpsd NMEA corpus (../shared/testdata/nmea) not found")
	}
	return dir
}

// gpsdFloor is gpsd's date floor: 2017-01-01, from its leap-second count
// (18). A receiver date before it is a week-number rollover that gpsd moves
// forward by 1024 weeks.
var gpsdFloor = time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)

// captureFloors are the date floors the captures are replayed with (none
// for the others). gpsd applied its floor to some captures when it wrote
// their .chk files and not to others (its regression mode skips the
// correction when a capture's "# Date:" line parses); the comparison moves
// gpsd's own dates over the same floor, as gpsd does live.
var captureFloors = map[string]time.Time{
	// Spoofed to 2019-04-07 and cold booted: the receiver reports GPS
	// week 0 (1999-08-22); gpsd's .chk keeps 1999.
	"gp-320fw-2019-04-07-coldboot.log": gpsdFloor,
	// A Telit HE910 just after the 2019 rollover: 1999-08-22.
	"april6_2019.log": gpsdFloor,
	// A real 2014-02-19 that gpsd's .chk moved to 2033-10-05: the floor
	// does the same (a receiver reporting 2014 today has rolled over).
	"rst39.log": gpsdFloor,
}

// replay feeds a capture to a Tracker line by line, as the serial reader
// would at 9600 baud (the agent's clock advances by each line's time on the
// wire), ends the last epoch as a quiet line would, and returns the fixes.
func replay(t *testing.T, path string, floor time.Time) ([]Fix, Stats) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker("gw-test", floor)
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) // the agent's clock: wrong, and never used as a date
	var fixes []Fix
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 0 && line[0] == '#' {
			continue
		}
		at = at.Add(time.Duration(len(line)+2) * 10 * time.Second / 9600)
		if fix, ok := tr.Feed(line, at); ok {
			fixes = append(fixes, fix)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if fix, ok := tr.End(); ok {
		fixes = append(fixes, fix)
	}
	return fixes, tr.Stats
}

// captures lists the .log files with a .chk beside them in dir.
func captures(t *testing.T, dir string) []string {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var out []string
	for _, l := range logs {
		if _, err := os.Stat(l + ".chk"); err == nil {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no .log files with a .chk in %s", dir)
	}
	return out
}

// captureResult is one capture's comparison with gpsd.
type captureResult struct {
	name                    string
	epochs, fixes, matched  int
	gpsd, missed            int
	dates                   map[DateSource]int
	rollovers               int
	problems                []string
	stats                   Stats
	gpsdUntimed, unverified int
}

func (r *captureResult) problem(format string, args ...any) {
	if len(r.problems) < 8 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	} else if len(r.problems) == 8 {
		r.problems = append(r.problems, "...")
	}
}

// compareWithGpsd replays one capture and checks every fix against gpsd's
// fix for the same instant: one fix per epoch; the receiver's date and time
// (gpsd's, plus 1024 weeks where gpsd would have corrected a rollover
// live); latitude and longitude within 1e-6 degrees; and every field gpsd
// has for that epoch (altitude within 1 mm, course and speed, HDOP), so no
// fix goes out before its epoch is complete. And every epoch where gpsd has
// a fix, the tracker has one too; where gpsd has none, neither has it.
func compareWithGpsd(t *testing.T, log string) captureResult {
	name := filepath.Base(log)
	floor := captureFloors[name]
	fixes, stats := replay(t, log, floor)
	x, err := nmeatest.ReadChk(log+".chk", floor)
	if err != nil {
		t.Fatal(err)
	}
	want, untimed := x.Epochs, x.Untimed
	res := captureResult{name: name, epochs: int(stats.Epochs), fixes: len(fixes), dates: map[DateSource]int{},
		stats: stats, gpsdUntimed: len(untimed)}
	byTOD := map[time.Duration][]nmeatest.Epoch{}
	for at, e := range want {
		if e.Fix() {
			res.gpsd++
			tod := at.Sub(at.Truncate(day))
			byTOD[tod] = append(byTOD[tod], e)
		}
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	seen := map[time.Time]bool{}
	seenTOD := map[time.Duration]bool{}
	for _, f := range fixes {
		res.dates[f.Date]++
		if f.Rollover {
			res.rollovers++
		}
		if f.Date == DateNone {
			if seenTOD[f.TimeOfDay] {
				res.problem("two fixes at time of day %s", f.TimeOfDay)
			}
			seenTOD[f.TimeOfDay] = true
			if !f.FixTime.IsZero() {
				res.problem("undated fix with a time %s", f.FixTime)
			}
			// gpsd may know the date (it reads the capture's "# Date:"
			// line); match by time of day.
			found := false
			for _, e := range append(byTOD[f.TimeOfDay], untimed...) {
				if near(f.Lat, *e.Lat) && near(f.Lon, *e.Lon) {
					found = true
				}
			}
			if found {
				res.matched++
			} else {
				res.problem("undated fix at %s %.7f,%.7f: gpsd has no fix at that time of day", f.TimeOfDay, f.Lat, f.Lon)
			}
			continue
		}
		if seen[f.FixTime] {
			res.problem("two fixes at %s", f.FixTime)
		}
		seen[f.FixTime] = true
		if f.TimeOfDay != f.FixTime.Sub(f.FixTime.Truncate(day)) {
			res.problem("fix at %s: time of day %s does not match", f.FixTime, f.TimeOfDay)
		}
		e, ok := want[f.FixTime]
		if !ok {
			// gpsd reported nothing for this instant: the capture ends
			// in it, or gpsd's end-of-cycle guess skipped it.
			res.unverified++
			continue
		}
		if !e.Fix() {
			res.problem("fix at %s (%s) %.7f,%.7f: gpsd says no fix at that time", f.FixTime, f.Date, f.Lat, f.Lon)
			continue
		}
		bad := false
		if !near(f.Lat, *e.Lat) || !near(f.Lon, *e.Lon) {
			res.problem("fix at %s: %.9f,%.9f, gpsd %.9f,%.9f", f.FixTime, f.Lat, f.Lon, *e.Lat, *e.Lon)
			bad = true
		}
		if e.AltMSL != nil && (!f.HasAlt || math.Abs(f.AltM-*e.AltMSL) > 1e-3) {
			res.problem("fix at %s: altitude %.4f (present %v), gpsd %.4f", f.FixTime, f.AltM, f.HasAlt, *e.AltMSL)
			bad = true
		}
		if e.Track != nil {
			d := math.Mod(math.Abs(f.CourseDeg-*e.Track), 360)
			if !f.HasCourse || math.Min(d, 360-d) > 0.01 {
				res.problem("fix at %s: course %.4f (present %v), gpsd track %.4f", f.FixTime, f.CourseDeg, f.HasCourse, *e.Track)
				bad = true
			}
			if e.Speed != nil && (!f.HasSpeed || math.Abs(f.SpeedMS-*e.Speed) > 0.01) {
				res.problem("fix at %s: speed %.4f (present %v), gpsd %.4f", f.FixTime, f.SpeedMS, f.HasSpeed, *e.Speed)
				bad = true
			}
		}
		if len(e.HDOP) > 0 && !slices.ContainsFunc(e.HDOP, func(h float64) bool { return math.Abs(f.HDOP-h) <= 0.01 }) {
			res.problem("fix at %s: HDOP %.2f, gpsd %v", f.FixTime, f.HDOP, e.HDOP)
			bad = true
		}
		if len(e.USat) > 0 && !slices.Contains(e.USat, f.Sats) {
			res.problem("fix at %s: %d satellites, gpsd %v", f.FixTime, f.Sats, e.USat)
			bad = true
		}
		if !bad {
			res.matched++
		}
	}
	// Coverage: every instant gpsd has a fix for, the tracker has one too.
	var missed []string
	for at, e := range want {
		if !e.Fix() || seen[at] {
			continue
		}
		if seenTOD[at.Sub(at.Truncate(day))] {
			continue // reported without a date
		}
		missed = append(missed, at.Format("15:04:05.000"))
	}
	sort.Strings(missed)
	res.missed = len(missed)
	// A fix older than one already made is dropped (a receiver that
	// stepped its clock back); gpsd reports it.
	if uint64(len(missed)) > stats.Backwards {
		res.problem("gpsd has %d fixes the tracker has not (%d dropped as going back in time): %v", len(missed), stats.Backwards, missed[:min(len(missed), 6)])
	}
	if res.unverified > max(2, res.fixes/20) { // the first and the last epoch may be cut
		res.problem("%d of %d fixes at instants gpsd reported nothing for, want at most 2 or 5%%", res.unverified, res.fixes)
	}
	return res
}

// TestAgainstGpsd replays real receiver captures (the shared corpus and
// testdata/) and compares every fix with gpsd's for the same bytes.
func TestAgainstGpsd(t *testing.T) {
	var logs []string
	logs = append(logs, captures(t, gpsdCorpus(t))...)
	logs = append(logs, captures(t, "testdata")...)
	var table []string
	for _, log := range logs {
		t.Run(filepath.Base(log), func(t *testing.T) {
			r := compareWithGpsd(t, log)
			for _, p := range r.problems {
				t.Error(p)
			}
			table = append(table, fmt.Sprintf("| %s | %d | %d | %d | %d+%d | %d | %d | %s |", r.name, r.epochs, r.fixes, r.matched, r.gpsd, r.gpsdUntimed, r.missed, r.unverified, r.dateSummary()))
		})
	}
	t.Logf("\n| capture | epochs | fixes | matched to gpsd | gpsd fixes (+ without time) | gpsd's not made | gpsd silent | date source |\n|---|---|---|---|---|---|---|---|\n%s", strings.Join(table, "\n"))
}

func (r captureResult) dateSummary() string {
	var parts []string
	for _, d := range []DateSource{DateRMC, DateZDA, DateCarried, DateNone} {
		if n := r.dates[d]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", d, n))
		}
	}
	if r.rollovers > 0 {
		parts = append(parts, fmt.Sprintf("(%d moved +1024 weeks)", r.rollovers))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

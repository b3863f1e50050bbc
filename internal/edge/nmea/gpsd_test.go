package nmea

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/internal/wire"
)

// gpsdCorpus is the folder of real receiver captures with gpsd's fixes:
// $TWINCHAIN_NMEA_CORPUS, else ../shared/testdata/nmea beside the
// repository root (or beside a folder above it, for a worktree in a subfolder).
func gpsdCorpus(t *testing.T) string {
	t.Helper()
	dirs := []string{os.Getenv("TWINCHAIN_NMEA_CORPUS")}
	for up := "../../../.."; len(up) <= len("../../../../../.."); up += "/.." {
		dirs = append(dirs, filepath.Join(up, "shared", "testdata", "nmea"))
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "README.md")); err == nil {
			return dir
		}
	}
	t.Skipf("gpsd NMEA corpus not found in %q", dirs)
	return ""
}

type tpv struct {
	Class  string   `json:"class"`
	Mode   int      `json:"mode"`
	Status int      `json:"status"`
	Time   string   `json:"time"`
	Lat    *float64 `json:"lat"`
	Lon    *float64 `json:"lon"`
	AltMSL *float64 `json:"altMSL"`
}

// replay feeds a capture to a Tracker line by line, as the serial reader
// would, and returns every fix it produced (the last state of each epoch).
func replay(t *testing.T, path string) ([]wire.GPSFix, Stats) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := NewTracker("gw-test", func() time.Time { return time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC) })
	var fixes []wire.GPSFix
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 0 && line[0] == '#' {
			continue
		}
		fix, ok := tr.Feed(line)
		if !ok {
			continue
		}
		if n := len(fixes); n > 0 && fixes[n-1].FixTime.Equal(fix.FixTime) {
			fixes[n-1] = fix
		} else {
			fixes = append(fixes, fix)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return fixes, tr.Stats
}

func readTPVs(t *testing.T, path string) []tpv {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []tpv
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, `"class":"TPV"`) {
			continue
		}
		var v tpv
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

// TestAgainstGpsd replays real receiver captures and checks every fix the
// tracker reports against the fixes gpsd derived from the same bytes: each of
// our fixes must match a gpsd fix (same time when gpsd gives one, latitude and
// longitude within 1e-6 degrees, altitude within 1 mm), and we must find
// nearly every position gpsd found.
func TestAgainstGpsd(t *testing.T) {
	dir := gpsdCorpus(t)
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(logs) == 0 {
		t.Fatalf("no .log files in %s", dir)
	}
	for _, log := range logs {
		name := filepath.Base(log)
		t.Run(name, func(t *testing.T) {
			fixes, stats := replay(t, log)
			var want []tpv
			for _, v := range readTPVs(t, log+".chk") {
				// gpsd reports a simulator's output (status 8) as a fix; the
				// agent refuses it as not a real position.
				if v.Mode >= 2 && v.Lat != nil && v.Lon != nil && v.Status != 8 {
					want = append(want, v)
				}
			}
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
			matches := func(f wire.GPSFix, v tpv) bool {
				if v.Time != "" {
					gt, err := time.Parse(time.RFC3339Nano, v.Time)
					if err != nil || !gt.Equal(f.FixTime) {
						return false
					}
				}
				return near(f.Lat, *v.Lat) && near(f.Lon, *v.Lon)
			}
			// Each fix at a time gpsd also has must have gpsd's position.
			gpsdTimes := map[time.Time]bool{}
			for _, v := range want {
				if gt, err := time.Parse(time.RFC3339Nano, v.Time); err == nil {
					gpsdTimes[gt] = true
				}
			}
			unmatched := 0
			for _, f := range fixes {
				if len(gpsdTimes) > 0 && !gpsdTimes[f.FixTime] {
					unmatched++ // gpsd skipped this epoch, or the capture ends in it
					continue
				}
				found := false
				for _, v := range want {
					if matches(f, v) {
						found = true
						if v.AltMSL != nil && f.AltM != 0 && math.Abs(f.AltM-*v.AltMSL) > 1e-3 {
							t.Errorf("fix at %s: alt %.4f, gpsd altMSL %.4f", f.FixTime, f.AltM, *v.AltMSL)
						}
						break
					}
				}
				if !found {
					t.Errorf("fix %+v: gpsd has another position at that time", f)
				}
			}
			if float64(unmatched) > 0.05*float64(len(fixes)) {
				t.Errorf("%d of %d fixes at times gpsd has no fix for, want at most 5%%", unmatched, len(fixes))
			}
			// Coverage: the positions gpsd found, we found too.
			missed := 0
			for _, v := range want {
				found := false
				for _, f := range fixes {
					if matches(f, v) {
						found = true
						break
					}
				}
				if !found {
					missed++
				}
			}
			t.Logf("%s: %d fixes (%d at times gpsd has no fix for), gpsd %d positions, %d of them not reported; stats %+v", name, len(fixes), unmatched, len(want), missed, stats)
			if len(want) > 0 && float64(missed) > 0.1*float64(len(want)) {
				t.Errorf("missed %d of gpsd's %d positions, want at most 10%%", missed, len(want))
			}
			if len(want) == 0 && len(fixes) != 0 {
				t.Errorf("%d fixes from a capture where gpsd has none", len(fixes))
			}
		})
	}
}

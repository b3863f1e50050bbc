package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"twinchain/internal/edge/nmea/nmeatest"
	"twinchain/internal/sim/devicesim"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestGPSCaptures plays real receiver captures (gpsd's regression corpus,
// internal/edge/nmea/testdata) on pseudo-terminals at 9600 baud, quiet for
// a moment between epochs as a receiver is, into the real edge-agent, one
// receiver each, and checks the fixes that reach a real Mosquitto against
// gpsd's fixes for the same bytes: one fix per epoch, every epoch gpsd has
// a fix for, the receiver's date and time (or no date while the receiver
// has sent none), position within 1e-6 degrees.
func TestGPSCaptures(t *testing.T) {
	if testing.Short() {
		t.Skip("plays captures at 9600 baud for about 20 s")
	}
	agentBin, _ := binaries(t)
	// date_floor 2012-01-01: the captures' genuine dates (2012, 2018) stay,
	// GPS week 0 after the 2019 rollover (1999-08-22) is 2019-04-07.
	floor := time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC)
	captures := []struct {
		name, file string
		from       int // first line played (of the file)
	}{
		{"hemi", "hemi.log", 600},    // GGA/VTG/ZDA, no RMC; 0-satellite GGAs; 2 Hz
		{"mr350p", "mr-350p.log", 0}, // GGA/GSA/ZDA, ZDA before its epoch's GGA
		{"april6", "april6_2019.log", 0},
		{"coldboot", "gp-320fw-2019-04-07-coldboot.log", 0}, // torn lines, garbage dates, week 0
	}
	dir := t.TempDir()
	broker := testsvc.StartMosquitto(t, "")
	sub := subscribe(t, broker.URL(), "gps-checker")

	var receivers []string
	ptys := map[string]*devicesim.PTY{}
	for _, c := range captures {
		p, err := devicesim.OpenPTY(9600)
		if err != nil {
			t.Skipf("no pseudo-terminals: %v", err)
		}
		t.Cleanup(func() { p.Close() })
		ptys[c.name] = p
		receivers = append(receivers, fmt.Sprintf("{name: %s, port: %s, asset: gps-%s}", c.name, p.Path, c.name))
	}
	conf := filepath.Join(dir, "agent.yaml")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`gateway_id: gw-gps
state_dir: %s
mqtt: {broker: %s, backoff_min: 200ms, backoff_max: 2s}
gps:
  report_interval: 100ms
  epoch_timeout: 1s # the epochs end at the next one's first sentence; only the last by quiet line
  date_floor: 2012-01-01
  receivers: [%s]
gpu: {source: none}
`, filepath.Join(dir, "agent"), broker.URL(), strings.Join(receivers, ", "))), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	agent := testsvc.StartProcess(t, agentBin, "run", "--config", conf)
	testsvc.Eventually(t, 20*time.Second, "the agent to open the receivers", func() bool {
		return strings.Count(agent.Output.String(), "gps receiver open") == len(captures)
	})

	// Play every capture at once, each on its own line.
	want := map[string]nmeatest.Expected{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(captures))
	for _, c := range captures {
		path := filepath.Join("..", "internal", "edge", "nmea", "testdata", c.file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		x, err := nmeatest.ReadChk(path+".chk", floor)
		if err != nil {
			t.Fatal(err)
		}
		want[c.name] = x
		lines := bytes.SplitAfter(data, []byte("\n"))
		played := bytes.Join(lines[min(c.from, len(lines)):], nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := devicesim.PlayCapture(ctx, ptys[c.name], played, 150*time.Millisecond); err != nil {
				errs <- fmt.Errorf("%s: %w", c.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Every fix gpsd has (in the lines played) arrives; then the agent stops.
	fixes := func() map[string][]wire.GPSFix {
		out := map[string][]wire.GPSFix{}
		for _, m := range sub.snapshot() {
			if m.env.Kind != wire.KindGPS {
				continue
			}
			f, err := wire.DecodeBody[wire.GPSFix](&m.env)
			if err != nil {
				t.Errorf("gps message %d: %v", m.env.Seq, err)
				continue
			}
			out[f.Asset] = append(out[f.Asset], f)
		}
		return out
	}
	covered := func(got []wire.GPSFix, e nmeatest.Epoch) bool {
		for _, f := range got {
			if f.FixTime.Equal(e.Time) {
				return true
			}
		}
		return false
	}
	all := func() bool {
		got := fixes()
		for _, c := range captures {
			for _, e := range want[c.name].Fixes() {
				if !covered(got["gps-"+c.name], e) {
					return false
				}
			}
		}
		return true
	}
	// Wait at most 30 s; what is missing then is reported below, epoch by epoch.
	for deadline := time.Now().Add(30 * time.Second); !all() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	stop(t, agent)

	got := fixes()
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	var table []string
	for _, c := range captures {
		x, fs := want[c.name], got["gps-"+c.name]
		matched, undated, unverified := 0, 0, 0
		seen := map[time.Time]bool{}
		for _, f := range fs {
			if f.FixTime.IsZero() {
				// No date yet: the position must be one gpsd reported.
				undated++
				ok := false
				for _, e := range append(x.Fixes(), x.Untimed...) {
					ok = ok || near(f.Lat, *e.Lat) && near(f.Lon, *e.Lon)
				}
				if !ok {
					t.Errorf("%s: undated fix at %.7f,%.7f: gpsd has no such position", c.name, f.Lat, f.Lon)
				} else {
					matched++
				}
				continue
			}
			if seen[f.FixTime] {
				t.Errorf("%s: two fixes at %s, want one per epoch", c.name, f.FixTime)
			}
			seen[f.FixTime] = true
			e, ok := x.Epochs[f.FixTime]
			switch {
			case !ok:
				unverified++ // gpsd reported nothing for this instant (the capture ends in it)
			case !e.Fix():
				t.Errorf("%s: fix at %s: gpsd says no fix at that time", c.name, f.FixTime)
			case !near(f.Lat, *e.Lat) || !near(f.Lon, *e.Lon):
				t.Errorf("%s: fix at %s at %.9f,%.9f, gpsd %.9f,%.9f", c.name, f.FixTime, f.Lat, f.Lon, *e.Lat, *e.Lon)
			default:
				matched++
			}
		}
		var missed []string
		for _, e := range x.Fixes() {
			if !seen[e.Time] {
				missed = append(missed, e.Time.Format(time.RFC3339Nano))
			}
		}
		sort.Strings(missed)
		if len(missed) > 0 {
			t.Errorf("%s: no fix for %d epochs gpsd has one for: %v", c.name, len(missed), missed)
		}
		if unverified > 1 {
			t.Errorf("%s: %d fixes at instants gpsd reported nothing for, want at most 1 (the capture's last)", c.name, unverified)
		}
		table = append(table, fmt.Sprintf("| %s | %d | %d | %d | %d | %d |", c.file, len(x.Fixes()), len(fs), matched, len(fs)-undated, undated))
	}
	t.Logf("through a pty at 9600 baud, edge-agent and Mosquitto:\n| capture | gpsd fixes | published | matched to gpsd | with the receiver's date | without a date |\n|---|---|---|---|---|---|\n%s",
		strings.Join(table, "\n"))
}

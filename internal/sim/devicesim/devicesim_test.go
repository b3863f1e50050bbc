package devicesim

import (
	"math"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/gpu"
	"twinchain/internal/edge/nmea"
)

// TestEpochParses checks the simulated receiver's sentences through the
// agent's own NMEA path: the fix it reads back is the one played.
func TestEpochParses(t *testing.T) {
	at := time.Date(2026, 11, 25, 23, 59, 59, 500e6, time.UTC)
	cases := []struct{ lat, lon float64 }{{52.520008, 13.404954}, {-33.8688, 151.2093}, {40.7128, -74.006}, {-0.5, -0.5}}
	for _, c := range cases {
		tr := nmea.NewTracker("a", nmea.DefaultDateFloor)
		for _, line := range strings.Split(Epoch(at, c.lat, c.lon, 8, 45), "\n") {
			tr.Feed([]byte(line), at)
		}
		fix, ok := tr.End()
		if !ok || math.Abs(fix.Lat-c.lat) > 1e-6 || math.Abs(fix.Lon-c.lon) > 1e-6 || !fix.FixTime.Equal(at) ||
			math.Abs(fix.SpeedMS-8) > 0.01 || fix.CourseDeg != 45 || fix.AltM != 34.2 || fix.Sats != 12 {
			t.Errorf("Epoch(%v,%v) read back as %+v, %v", c.lat, c.lon, fix, ok)
		}
		if tr.Stats.Dropped() != 0 {
			t.Errorf("Epoch(%v,%v): %+v dropped", c.lat, c.lon, tr.Stats)
		}
	}
}

func TestRoute(t *testing.T) {
	d := &SerialDevices{cfg: DefaultSerialConfig()}
	r := d.cfg.Route
	lat, lon, _ := d.position(0)
	if lat != r[0].Lat || lon != r[0].Lon {
		t.Errorf("position(0) = %f,%f, want the start %v", lat, lon, r[0])
	}
	total := metres(r[0], r[1]) + metres(r[1], r[2])
	end := time.Duration(total / d.cfg.SpeedMS * float64(time.Second))
	lat, lon, _ = d.position(end)
	if math.Abs(lat-r[2].Lat) > 1e-5 || math.Abs(lon-r[2].Lon) > 1e-5 {
		t.Errorf("position(end) = %f,%f, want the last waypoint %v", lat, lon, r[2])
	}
	lat, lon, _ = d.position(2 * end) // and back
	if math.Abs(lat-r[0].Lat) > 1e-5 || math.Abs(lon-r[0].Lon) > 1e-5 {
		t.Errorf("position(2*end) = %f,%f, want back at the start", lat, lon)
	}
}

func TestGPUHost(t *testing.T) {
	a, b := NewGPUHost(8, 3), NewGPUHost(8, 3)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	sa, sb := a.Next(t0), b.Next(t0)
	if sa.Devices[5].UUID != sb.Devices[5].UUID || sa.Devices[5].Serial != sb.Devices[5].Serial {
		t.Errorf("same seed, different GPUs: %s vs %s", sa.Devices[5].UUID, sb.Devices[5].UUID)
	}
	if err := sa.Check(); err != nil {
		t.Errorf("snapshot Check = %v", err)
	}
	a.InjectXID(2, 79)
	a.InjectECC(2, true)
	s := a.Next(t0.Add(time.Second))
	var ev gpu.Events
	ev.Apply(&s)
	tel := gpu.Telemetry("h", &s, &ev)
	if g := tel.GPUs[2]; g.LastXID != 79 || g.XIDCount != 1 || g.ECCDoubleBit != 1 {
		t.Errorf("after injecting: %+v, want xid 79 once and one double-bit error", g)
	}
}

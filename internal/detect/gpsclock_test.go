package detect

import (
	"testing"
	"time"

	"twinchain/internal/twin"
)

// TestGPSClockAnomaly: a fix dated six hours after its arrival is reported
// as a clock anomaly and kept out of the movement detectors, so the
// correct fixes after it still raise geofence_exit (a fix from the future
// used to hold the entry delay open for six hours).
func TestGPSClockAnomaly(t *testing.T) {
	cfg := Defaults()
	cfg.Sites = map[string]SiteConfig{"s1": {Geofence: square}}
	east := func(m float64) float64 { return 13.408 + m/(111320*0.6088) } // metres east of the fence
	ahead := func(in Input, by time.Duration) Input {
		in.Message.GPS.FixTime = in.Message.GPS.FixTime.Add(by)
		return in
	}
	f := newFleet()
	steps := []Input{
		f.change("srv", at(0), func(a *twin.Asset) { a.Kind, a.Site, a.Custody.Status = twin.KindServer, "s1", twin.StatusMaintenance }),
		fix("gw", 1, at(0), "srv", 52.5, east(-10)),
		ahead(fix("gw", 2, at(10), "srv", 52.5, east(60)), 6*time.Hour),
	}
	for i := range 8 {
		steps = append(steps, fix("gw", uint64(i+3), at(float64(20+i*10)), "srv", 52.5, east(60)))
	}
	got := feed(t, cfg, nil, in(steps...))
	check(t, "a fix six hours ahead, then correct fixes outside the fence", got, []string{"geofence_exit srv", "gps_clock_anomaly srv"})
	for _, fd := range got {
		if fd.Type == TypeGPSClockAnomaly && (fd.Evidence.Values["ahead"] != "6h0m0s" || len(fd.Evidence.Messages) != 1 || fd.Evidence.Messages[0].Seq != 2) {
			t.Errorf("clock anomaly evidence = %+v, want message 2, 6h0m0s ahead", fd.Evidence)
		}
	}
	// A minute ahead is within twin.MaxFixLead: receiver and service clocks
	// differ that much, and the fix is used.
	f = newFleet()
	got = feed(t, cfg, nil, in(
		f.change("srv", at(0), func(a *twin.Asset) { a.Kind, a.Site, a.Custody.Status = twin.KindServer, "s1", twin.StatusMaintenance }),
		ahead(fix("gw", 1, at(0), "srv", 52.5, east(-10)), time.Minute)))
	check(t, "a minute ahead", got, nil)
	// A simulated fleet runs its clock ahead of the service's and dates its
	// messages and fixes by it: no anomaly.
	sim := fix("gw", 1, at(300), "srv", 52.5, east(-10))
	sim.Message.Recorded = at(0)
	got = feed(t, cfg, nil, in(sim))
	check(t, "a simulated fleet five minutes ahead", got, nil)
}

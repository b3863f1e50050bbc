package ingest

import (
	"testing"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestGPSFixAhead: a fix dated six hours after it arrived (an agent that
// dated a GGA with its own wrong clock) is a clock anomaly, not a position.
// The twin keeps the correct fixes before and after it, records location
// events for them only, and a restart that replays the message log comes
// back to the same fix.
func TestGPSFixAhead(t *testing.T) {
	const gw = "gw-gps"
	cfg := Config{CheckpointInterval: time.Hour}
	r := newRig(t, cfg, gw)
	r.in.skipFinalCheckpoint = true
	// The rig's clock (the receive time) is t0+1h and a few milliseconds.
	recv := t0.Add(time.Hour)
	seq := uint64(0)
	send := func(fix wire.GPSFix) {
		t.Helper()
		seq++
		if out := r.submit(gw, wire.KindGPS, seal(t, gw, seq, recv.Add(time.Duration(seq)*time.Second), wire.KindGPS, fix)); !out.Accepted() {
			t.Fatalf("fix %d: %s %v", seq, out.Reason, out.Err)
		}
	}
	fix := func(lat float64, at time.Time) wire.GPSFix {
		return wire.GPSFix{Lat: lat, Lon: 13.4, Quality: 1, Sats: 9, HDOP: 0.9, FixTime: at}
	}
	send(fix(52.50, recv.Add(-20*time.Second)))
	send(fix(52.60, recv.Add(6*time.Hour)))              // 11 km away and six hours ahead
	send(fix(52.51, recv.Add(-10*time.Second)))          // correct again: 1.1 km on
	send(fix(52.52, recv.Add(-5*time.Second)))           // and on
	send(fix(52.55, recv.Add(-9*time.Second)))           // late: older than the kept fix
	send(wire.GPSFix{Lat: 52.53, Lon: 13.4, Quality: 1}) // no date (a GGA-only receiver): in arrival order
	send(fix(52.54, recv.Add(-2*time.Second)))
	send(fix(52.54001, recv.Add(-1*time.Second))) // 1 m on: an observation, no event (replayed after a crash)

	check := func(when string, a *twin.Asset) {
		t.Helper()
		if a == nil || a.Location.GPS == nil {
			t.Fatalf("%s: gateway twin %+v has no fix", when, a)
		}
		if g := a.Location.GPS; g.Lat != 52.54001 || !g.FixTime.Equal(recv.Add(-time.Second)) || a.Location.Lat != 52.54 {
			t.Errorf("%s: kept fix %.5f at %s, location %.5f; want the last fix, 52.54001 at %s, location 52.54", when, g.Lat, g.FixTime, a.Location.Lat, recv.Add(-time.Second))
		}
	}
	check("live", r.in.w.twins[gw])
	events, err := r.store.AssetEvents(gw, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var lats []string
	for _, e := range events {
		for _, c := range e.Changes {
			if c.Field == "location.lat" {
				lats = append(lats, c.New)
			}
		}
	}
	want := []string{"52.5", "52.51", "52.52", "52.53", "52.54"}
	if len(lats) != len(want) {
		t.Fatalf("location events to %v, want %v (never the fix from the future)", lats, want)
	}
	for i := range want {
		if lats[i] != want[i] {
			t.Errorf("location events to %v, want %v (never the fix from the future)", lats, want)
			break
		}
	}
	// A crash before the checkpoint: the fix is rebuilt from the message
	// log, judged by each message's receive time.
	r.stop()
	r.stop = nil
	r.store.Close()
	r.open(cfg)
	check("after replay", r.in.w.twins[gw])
}

// TestGPSSimulatedClock: a simulated fleet runs its clock minutes ahead
// of the service's and dates its messages and fixes by it. Its fixes are
// positions, not clock anomalies, and keep their order.
func TestGPSSimulatedClock(t *testing.T) {
	const gw = "gw-sim"
	r := newRig(t, Config{}, gw)
	sim := t0.Add(time.Hour + 5*time.Minute) // the rig's clock is t0+1h; ingest takes reading times up to 10 min ahead
	for i, lat := range []float64{52.50, 52.51, 52.52} {
		at := sim.Add(time.Duration(i) * time.Minute)
		fix := wire.GPSFix{Lat: lat, Lon: 13.4, Quality: 1, Sats: 9, FixTime: at}
		if out := r.submit(gw, wire.KindGPS, seal(t, gw, uint64(i+1), at, wire.KindGPS, fix)); !out.Accepted() {
			t.Fatalf("fix %d: %s %v", i, out.Reason, out.Err)
		}
	}
	// A late fix from the simulated past is older than the kept one.
	late := wire.GPSFix{Lat: 52.40, Lon: 13.4, Quality: 1, Sats: 9, FixTime: sim.Add(30 * time.Second)}
	r.submit(gw, wire.KindGPS, seal(t, gw, 4, sim.Add(30*time.Second), wire.KindGPS, late))
	a := r.in.w.twins[gw]
	if a == nil || a.Location.GPS == nil || a.Location.GPS.Lat != 52.52 || a.Location.Lat != 52.52 {
		t.Errorf("twin location = %+v, want the simulated fleet's last fix, 52.52", a)
	}
}

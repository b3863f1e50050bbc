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

// TestGPSKeptFixAhead: a twin that already holds a fix from the future
// (stored before fixes were checked) takes the next correct one.
func TestGPSKeptFixAhead(t *testing.T) {
	now := t0.Add(time.Hour)
	kept := &wire.GPSFix{Lat: 52.6, FixTime: now.Add(6 * time.Hour)}
	next := &wire.GPSFix{Lat: 52.5, FixTime: now.Add(-time.Second)}
	if twin.FixOlder(next, kept, now) {
		t.Error("FixOlder(correct fix, kept fix six hours ahead) = true: the twin stays frozen")
	}
	if !twin.FixOlder(next, &wire.GPSFix{FixTime: now}, now) {
		t.Error("FixOlder(older fix, kept fix) = false, want true")
	}
	if twin.FixAhead(&wire.GPSFix{FixTime: now.Add(time.Minute)}, now) || !twin.FixAhead(kept, now) {
		t.Errorf("FixAhead: a minute ahead is clock jitter, six hours is an anomaly (MaxFixLead %s)", twin.MaxFixLead)
	}
}

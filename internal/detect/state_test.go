package detect

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestInstant: an instant is the same instant as the time it was made of,
// the zero time is the zero instant (and no other time is: not the Unix
// epoch, not a nanosecond after year 1), and comparisons and differences
// of the times it gives back are those of the originals.
func TestInstant(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	times := []time.Time{
		{},
		time.Unix(0, 0),
		time.Unix(0, 0).UTC(),
		time.Time{}.Add(time.Nanosecond),
		time.Time{}.Add(time.Second),
		t0,
		t0.Add(999999999),
		t0.In(berlin),
		time.Unix(-1, 5),
		time.Date(1600, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2300, 6, 1, 12, 0, 0, 7, berlin),
		time.Now(),
	}
	for _, a := range times {
		i := instantOf(a)
		if i.IsZero() != a.IsZero() {
			t.Errorf("%v: IsZero %v, time's %v", a, i.IsZero(), a.IsZero())
		}
		if !i.Time().Equal(a) {
			t.Errorf("%v: back as %v", a, i.Time())
		}
		for _, b := range times {
			j := instantOf(b)
			// (Round(0): the wall clocks, as for times decoded from messages)
			if got, want := i.Time().Sub(j.Time()), a.Round(0).Sub(b.Round(0)); got != want {
				t.Errorf("%v - %v = %v, want %v", a, b, got, want)
			}
			if i.Time().Before(j.Time()) != a.Before(b) || i.Time().After(j.Time()) != a.After(b) || (i == j) != a.Equal(b) {
				t.Errorf("%v vs %v: order differs", a, b)
			}
		}
	}
}

// TestOverheatingSince: the overheating finding's since is the first hot
// sample's time, in the samples' location, also when that time is the Unix
// epoch (a time that an int64 of Unix nanoseconds would take for unset),
// and the spell's length in the summary is counted from it.
func TestOverheatingSince(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	for _, start := range []time.Time{t0.In(cet), time.Unix(0, 0).UTC(), t0} {
		var ins []Input
		for i := range 40 {
			tm := start.Add(time.Duration(i) * time.Second)
			ins = append(ins, telemetry("gw", uint64(i+1), tm, wire.GPUSample{Asset: "srv.gpu0", UUID: "U", TempC: 95, PowerW: 500, PowerLimitW: 700}))
		}
		got := feed(t, Defaults(), nil, in(ins...))
		check(t, "overheating from "+start.String(), got, []string{"overheating srv.gpu0"})
		if len(got) != 1 {
			continue
		}
		if s, want := got[0].Evidence.Values["since"], start.Format(time.RFC3339); s != want {
			t.Errorf("since = %q, want %q", s, want)
		}
		if want := "srv.gpu0 at 95 °C for 30s (limit 92 °C)"; got[0].Summary != want {
			t.Errorf("summary = %q, want %q", got[0].Summary, want)
		}
	}
}

// TestCloneSlotEvidence: a UUID reported in two slots names, as evidence,
// the other slot's last sample (its message and time) and this one's.
func TestCloneSlotEvidence(t *testing.T) {
	got := feed(t, Defaults(), nil, in(
		telemetry("gw", 1, at(0), wire.GPUSample{Asset: "s.gpu0", UUID: "U"}),
		telemetry("gw2", 1, at(1), wire.GPUSample{Asset: "t.gpu0", UUID: "U"}),
		telemetry("gw2", 2, at(1.5), wire.GPUSample{Asset: "t.gpu0", UUID: "U"}),
		telemetry("gw", 2, at(2), wire.GPUSample{Asset: "s.gpu0", UUID: "U"}),
	))
	check(t, "one uuid in two slots", got, []string{"clone_suspected s.gpu0"})
	if len(got) != 1 {
		return
	}
	want := []MessageRef{{Gateway: "gw2", Seq: 2, Time: at(1.5)}, {Gateway: "gw", Seq: 2, Time: at(2)}}
	if ev := got[0].Evidence.Messages; !slices.Equal(ev, want) {
		t.Errorf("evidence = %+v, want %+v", ev, want)
	}
	if v := got[0].Evidence.Values; v["gateway_a"] != "gw2" || v["gateway_b"] != "gw" {
		t.Errorf("values = %v", v)
	}
}

// TestStateKeysAreTheViews: the per-GPU state of the hardware, drift and
// clone detectors is keyed by the view's strings for the GPU's id and
// UUID, not by the strings of the messages (decoded afresh for each), which
// every key would otherwise keep alive.
func TestStateKeysAreTheViews(t *testing.T) {
	f := newFleet()
	s := NewSet(Defaults(), NewView(nil))
	events := []Input{
		f.change("srv", t0, func(a *twin.Asset) { a.Kind, a.Site, a.Identity.Rack = twin.KindServer, "s1", "r1" }),
		f.change("srv.gpu0", t0, gpu("s1", "srv", 0, "GPU-0")),
		f.change("srv.gpu0", t0, func(a *twin.Asset) { a.Location.Zone = "z" }),
	}
	events[2].Event.Asset = strings.Clone(events[2].Event.Asset) // a second event, its own id string
	for _, e := range events {
		if _, err := s.Observe(e); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		tel := &wire.Telemetry{Host: "srv", GPUs: []wire.GPUSample{{Asset: strings.Clone("srv.gpu0"), UUID: strings.Clone("GPU-0"), TempC: 60}}}
		if _, err := s.Observe(Input{Message: &Message{Ref: MessageRef{Gateway: "gw", Seq: uint64(i + 1), Time: at(float64(i))}, Telemetry: tel}}); err != nil {
			t.Fatal(err)
		}
	}
	a := s.view.assets["srv.gpu0"]
	same := func(what, key, want string) {
		if unsafe.StringData(key) != unsafe.StringData(want) {
			t.Errorf("%s key %q is not the view's string", what, key)
		}
	}
	for k := range s.view.assets {
		if k == a.ID {
			same("view", k, a.ID)
		}
	}
	for k := range s.hardware.state {
		same("hardware", k, a.ID)
	}
	for k := range s.drift.state {
		same("drift", k, a.ID)
	}
	for _, k := range s.drift.racks["r1"].ids {
		same("rack", k, a.ID)
	}
	for k, slots := range s.clone.uuids {
		same("clone", k, a.Identity.UUID)
		same("clone slot", slots[0].slot, a.ID)
	}
	if len(s.hardware.state) != 1 || len(s.drift.racks["r1"].ids) != 1 || len(s.clone.uuids) != 1 {
		t.Errorf("state for %d, %d, %d GPUs, want 1", len(s.hardware.state), len(s.drift.racks["r1"].ids), len(s.clone.uuids))
	}
}

// TestSlowDriftZeroTimeStart: a first reading at the zero time does not
// start the baseline; the next reading does, as a first one.
func TestSlowDriftZeroTimeStart(t *testing.T) {
	cfg := Defaults().Drift
	var s slowDrift
	s.update(5, time.Time{}, &cfg)
	if off, fire := s.update(7, t0, &cfg); off != 0 || fire || s.base != 7 || s.level != 7 || s.n != 1 || s.since != instantOf(t0) {
		t.Errorf("after a zero-time reading, the next = %v, %v, state %+v: want it taken as the first", off, fire, s)
	}
	var u slowDrift
	u.update(5, t0, &cfg)
	if u.update(7, t0.Add(time.Second), &cfg); u.base != 5 || u.n != 1 {
		t.Errorf("a second reading restarted the baseline: %+v", u)
	}
}

// TestRackReadings: the rack readings hold what a map per rack by GPU id
// would (the latest reading of each GPU seen in the rack, for every rack it
// was ever in), through GPUs moving between racks and back.
func TestRackReadings(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := []string{"a", "b", "c", "d", "e"}
	state := map[string]*driftState{}
	racks := map[string]*rackReadings{}
	want := map[string]map[string]peerReading{}
	for step := range 2000 {
		id, rack := ids[rng.IntN(len(ids))], fmt.Sprint("r", rng.IntN(3))
		if step%7 != 0 { // mostly where it was
			for r, m := range want {
				if _, ok := m[id]; ok && rng.IntN(2) == 0 {
					rack = r
				}
			}
		}
		if state[id] == nil {
			state[id] = &driftState{}
		}
		if racks[rack] == nil {
			racks[rack], want[rack] = &rackReadings{}, map[string]peerReading{}
		}
		p := peerReading{temp: float64(step), load: rng.Float64(), t: instantOf(at(float64(step))), model: int32(step % 2)}
		racks[rack].set(state[id], id, p)
		want[rack][id] = p
		for r, m := range want {
			got := map[string]peerReading{}
			for i, id := range racks[r].ids {
				if _, dup := got[id]; dup {
					t.Fatalf("step %d: %s twice in rack %s", step, id, r)
				}
				got[id] = racks[r].readings[i]
			}
			if !maps.Equal(got, m) {
				t.Fatalf("step %d: rack %s = %v, want %v", step, r, got, m)
			}
		}
	}
}

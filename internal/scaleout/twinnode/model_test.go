package twinnode

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestImpossibleTravel: one GPU reported by gateways of two sites 424 km
// apart (Berlin, Frankfurt) ten minutes apart raises one impossible travel
// on the read model, whichever partition reported it first; the same GPU
// at another gateway of the same site, or a day later, does not; and the
// alert is what any node serves at GET /alerts.
func TestImpossibleTravel(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	changes := []Change{
		{Gateway: "gw-ber-1", Partition: 1, Seq: 1, Kind: "firmware", UUIDs: []string{"GPU-a", "GPU-b"}, Time: t0},
		{Gateway: "gw-ber-2", Partition: 2, Seq: 1, Kind: "firmware", UUIDs: []string{"GPU-b"}, Time: t0.Add(time.Minute)}, // same site
		{Gateway: "gw-fra-1", Partition: 3, Seq: 1, Kind: "firmware", UUIDs: []string{"GPU-c"}, Time: t0.Add(10 * time.Minute)},
		{Gateway: "gw-fra-1", Partition: 3, Seq: 2, Kind: "firmware", UUIDs: []string{"GPU-c", "GPU-a"}, Time: t0.Add(10 * time.Minute)},
		{Gateway: "gw-ber-1", Partition: 1, Seq: 2, Kind: "firmware", UUIDs: []string{"GPU-c"}, Time: t0.Add(24 * time.Hour)}, // a day later: possible
	}
	md := NewModel(testPlaces, 0)
	for i, c := range changes {
		md.Apply(uint64(i+1), c)
	}
	var travel []Alert
	for _, a := range md.Alerts() {
		if a.Type == "impossible_travel" {
			travel = append(travel, a)
		}
	}
	if len(travel) != 1 {
		t.Fatalf("impossible travels: %+v, want one (GPU-a, gw-ber-1 -> gw-fra-1)", travel)
	}
	a := travel[0]
	if a.UUID != "GPU-a" || len(a.Gateways) != 2 || a.Gateways[0] != "gw-ber-1" || a.Gateways[1] != "gw-fra-1" || a.Seconds != 600 || a.DistanceM < 420_000 || a.DistanceM > 430_000 {
		t.Errorf("alert %+v, want GPU-a from gw-ber-1 to gw-fra-1, about 424 km in 600 s", a)
	}

	// In the other order (Frankfurt's partition folded first, its reading
	// later in time) the same travel is found.
	md2 := NewModel(testPlaces, 0)
	md2.Apply(1, changes[3])
	md2.Apply(2, changes[0])
	if got := md2.Alerts(); len(got) != 2 || got[0].Type != "impossible_travel" || got[0].UUID != "GPU-a" || got[0].Seconds != 600 || got[1].Type != "clone" {
		t.Errorf("alerts folded the other way: %+v, want an impossible travel of GPU-a and a clone", got)
	}

	if v := served(t, md, "/alerts"); v.Pos != uint64(len(changes)) || v.Fleet != nil || len(v.Alerts) != len(md.Alerts()) {
		t.Errorf("GET /alerts: %+v, want pos %d, no fleet, the model's %d alerts", v, len(changes), len(md.Alerts()))
	}
}

// TestShipments: a GPU moved from one site to another under a declared
// shipment is not a clone: its reading at the destination is its arrival.
// One reported at a third site on the way is misrouted (one alert); one
// reported at the origin again after it arrived is in two places (a
// clone), while a reading from before its arrival, folded late, is not.
// Without a shipment, the move is a clone as before. A shipment that does
// not check, or whose id is known, is counted bad and skipped.
func TestShipments(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	ship := Shipment{ID: "shp-1", UUIDs: []string{"GPU-a", "GPU-b"}, From: "ber", To: "fra", Declared: t0.Add(time.Hour), By: "asset-manager"}
	changes := []Change{
		invChange("gw-ber-1", 1, 1, t0, "GPU-a", "GPU-b", "GPU-c"),
		{Kind: KindShipment, Time: ship.Declared, Shipment: &ship},
		{Kind: KindShipment, Shipment: &Shipment{ID: "shp-bad", UUIDs: []string{"GPU-c"}, From: "ber", To: "ber"}},
		{Kind: KindShipment, Shipment: &Shipment{ID: "shp-1", UUIDs: []string{"GPU-c"}, From: "ber", To: "fra"}}, // a known id
		invChange("gw-fra-1", 3, 1, t0.Add(day), "GPU-a"),                                                        // GPU-a arrives
		invChange("gw-muc-1", 4, 1, t0.Add(day), "GPU-b"),                                                        // GPU-b on the way, at a third site: misrouted
		invChange("gw-muc-1", 4, 2, t0.Add(day+time.Hour), "GPU-b"),                                              // again: no second alert
		invChange("gw-fra-1", 3, 2, t0.Add(2*day), "GPU-a", "GPU-b"),                                             // GPU-b arrives too
		invChange("gw-ber-1", 1, 2, t0.Add(2*time.Hour), "GPU-a"),                                                // a reading from before GPU-a arrived, folded late
		invChange("gw-fra-1", 3, 3, t0.Add(2*day), "GPU-c"),                                                      // GPU-c moved with no shipment: a clone
		invChange("gw-ber-2", 2, 1, t0.Add(3*day), "GPU-a"),                                                      // GPU-a back at the origin after it arrived: a clone
	}
	md := NewModel(testPlaces, 0)
	for i, c := range changes {
		md.Apply(uint64(i+1), c)
	}
	got := alertLines(md)
	want := []string{
		"shipment_misrouted GPU-b gw-muc-1 shp-1",
		"clone GPU-c gw-ber-1,gw-fra-1 ",
		"clone GPU-a gw-fra-1,gw-ber-2 ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if md.Bad() != 2 {
		t.Errorf("bad changes: %d, want 2 (a shipment to its own site, a known id)", md.Bad())
	}
	v := md.View()
	if len(v.Shipments) != 1 {
		t.Fatalf("shipments: %+v, want shp-1 only", v.Shipments)
	}
	s := v.Shipments[0]
	wantArrived := []Passage{{UUID: "GPU-a", Gateway: "gw-fra-1", At: t0.Add(day)}, {UUID: "GPU-b", Gateway: "gw-fra-1", At: t0.Add(2 * day)}}
	if s.ID != "shp-1" || s.By != "asset-manager" || !slices.Equal(s.UUIDs, ship.UUIDs) || !slices.Equal(s.Arrived, wantArrived) {
		t.Errorf("shipment %+v, want shp-1 with GPU-a and GPU-b arrived at gw-fra-1: %+v", s, wantArrived)
	}

	if v := served(t, md, "/shipments"); v.Pos != uint64(len(changes)) || v.Fleet != nil || v.Alerts != nil || len(v.Shipments) != 1 || !slices.Equal(v.Shipments[0].Arrived, wantArrived) {
		t.Errorf("GET /shipments: %+v, want pos %d and shp-1 only", v, len(changes))
	}
}

// served is what md's Handler answers to GET path.
func served(t *testing.T, md *Model, path string) View {
	t.Helper()
	srv := httptest.NewServer(md.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestShipmentOverdue: a shipment with a due time falls due when a reading
// newer than that time is folded (from any gateway: the stream's own
// clock, not a node's): each of its GPUs not arrived by then raises one
// shipment_overdue with where it was last seen, once; one that arrives
// later is listed as arrived. A shipment all arrived before its due time,
// one without a due time, and a GPU shipped again since raise nothing.
func TestShipmentOverdue(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	ship := func(s Shipment) Change { return Change{Kind: KindShipment, Time: s.Declared, Shipment: &s} }
	changes := []Change{
		invChange("gw-ber-1", 1, 1, t0, "GPU-a", "GPU-b", "GPU-c", "GPU-d", "GPU-e", "GPU-f"),
		ship(Shipment{ID: "shp-late", UUIDs: []string{"GPU-a", "GPU-b"}, From: "ber", To: "fra", Declared: t0, Due: t0.Add(2 * day)}),
		ship(Shipment{ID: "shp-ontime", UUIDs: []string{"GPU-c"}, From: "ber", To: "muc", Declared: t0, Due: t0.Add(2 * day)}),
		ship(Shipment{ID: "shp-nodate", UUIDs: []string{"GPU-d"}, From: "ber", To: "muc", Declared: t0}),
		ship(Shipment{ID: "shp-first", UUIDs: []string{"GPU-e"}, From: "ber", To: "fra", Declared: t0, Due: t0.Add(day)}),
		ship(Shipment{ID: "shp-again", UUIDs: []string{"GPU-e"}, From: "ber", To: "muc", Declared: t0.Add(time.Hour)}), // GPU-e's newest: no date
		ship(Shipment{ID: "shp-bad", UUIDs: []string{"GPU-f"}, From: "ber", To: "fra", Declared: t0, Due: t0}),         // due at its declaration: bad
		invChange("gw-fra-1", 2, 1, t0.Add(day), "GPU-a"),                                                              // GPU-a arrives in time
		invChange("gw-muc-1", 3, 1, t0.Add(day), "GPU-c"),                                                              // GPU-c arrives in time
		invChange("gw-fra-1", 2, 2, t0.Add(2*day), "GPU-a"),                                                            // exactly due: not past it
		invChange("gw-ber-1", 1, 2, t0.Add(2*day+time.Minute), "GPU-f"),                                                // past shp-late's due time: GPU-b overdue, last seen at gw-ber-1
		invChange("gw-muc-1", 3, 2, t0.Add(3*day), "GPU-c"),                                                            // later still: no second alert
		invChange("gw-fra-1", 2, 3, t0.Add(4*day), "GPU-b"),                                                            // GPU-b arrives late
	}
	md := NewModel(testPlaces, 0)
	for i, c := range changes {
		md.Apply(uint64(i+1), c)
		if i == 9 && len(md.Alerts()) != 0 {
			t.Fatalf("alerts at the due time itself: %+v, want none", md.Alerts())
		}
	}
	got := alertLines(md)
	if want := []string{"shipment_overdue GPU-b gw-ber-1 shp-late"}; !slices.Equal(got, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if md.Bad() != 1 {
		t.Errorf("bad changes: %d, want 1 (a shipment due at its declaration)", md.Bad())
	}
	overdue := map[string]bool{}
	var late ShipmentView
	for _, s := range served(t, md, "/shipments").Shipments {
		overdue[s.ID] = s.Overdue
		if s.ID == "shp-late" {
			late = s
		}
	}
	if want := map[string]bool{"shp-late": true, "shp-ontime": false, "shp-nodate": false, "shp-first": false, "shp-again": false}; !maps.Equal(overdue, want) {
		t.Errorf("GET /shipments: overdue %v, want %v", overdue, want)
	}
	if len(late.Arrived) != 2 || late.Arrived[1] != (Passage{UUID: "GPU-b", Gateway: "gw-fra-1", At: t0.Add(4 * day)}) || !late.Due.Equal(t0.Add(2*day)) {
		t.Errorf("shp-late as served: %+v, want its due time and GPU-b arrived late at gw-fra-1", late)
	}
}

// TestShipmentDeparture: a shipped GPU departs at the first inventory of
// the origin's gateway that no longer lists it, once; a GPU gone with no
// shipment, a GPU gone from a gateway that is not at its shipment's
// origin, and an inventory folded late (older than the gateway's newest)
// record no departure. Departed and arrived together say what is on its
// way, as any node serves it.
func TestShipmentDeparture(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	h := time.Hour
	ship := func(s Shipment) Change { return Change{Kind: KindShipment, Time: s.Declared, Shipment: &s} }
	changes := []Change{
		invChange("gw-ber-1", 1, 1, t0, "GPU-a", "GPU-b", "GPU-c", "GPU-d"),
		ship(Shipment{ID: "shp-1", UUIDs: []string{"GPU-a", "GPU-b"}, From: "ber", To: "fra", Declared: t0.Add(h)}),
		ship(Shipment{ID: "shp-2", UUIDs: []string{"GPU-d"}, From: "fra", To: "ber", Declared: t0.Add(h)}), // to ber, not from it
		invChange("gw-ber-1", 1, 2, t0.Add(2*h), "GPU-b", "GPU-c", "GPU-d"),                                // GPU-a departs
		invChange("gw-ber-1", 1, 3, t0.Add(90*time.Minute)),                                                // folded late: nothing
		invChange("gw-ber-1", 1, 4, t0.Add(3*h), "GPU-a"),                                                  // GPU-b departs; GPU-c (no shipment) and GPU-d (arrived at ber, shp-2 left fra) do not
		invChange("gw-ber-1", 1, 5, t0.Add(4*h)),                                                           // GPU-a gone again: it departed already
		invChange("gw-fra-1", 2, 1, t0.Add(5*h), "GPU-a"),                                                  // GPU-a arrives; GPU-b is on its way
	}
	md := NewModel(testPlaces, 0)
	for i, c := range changes {
		md.Apply(uint64(i+1), c)
	}
	var s1 ShipmentView
	for _, s := range served(t, md, "/shipments").Shipments {
		switch s.ID {
		case "shp-1":
			s1 = s
		case "shp-2":
			if len(s.Departed) != 0 || len(s.Arrived) != 1 {
				t.Errorf("shp-2 departed %+v, arrived %+v, want no departure (its GPU left ber, its destination) and one arrival", s.Departed, s.Arrived)
			}
		}
	}
	want := []Passage{{UUID: "GPU-a", Gateway: "gw-ber-1", At: t0.Add(2 * h)}, {UUID: "GPU-b", Gateway: "gw-ber-1", At: t0.Add(3 * h)}}
	if !slices.Equal(s1.Departed, want) {
		t.Errorf("shp-1 departed %+v, want %+v", s1.Departed, want)
	}
	if arrived := []Passage{{UUID: "GPU-a", Gateway: "gw-fra-1", At: t0.Add(5 * h)}}; !slices.Equal(s1.Arrived, arrived) {
		t.Errorf("shp-1 arrived %+v, want %+v", s1.Arrived, arrived)
	}
	if got := alertLines(md); len(got) != 0 {
		t.Errorf("alerts %q, want none", got)
	}
}

// TestAlertAck: alerts have ids made of the changes stream's position
// that raised them, the same on every node; the first acknowledgement of
// an alert stands, a second one, one of an alert never raised and one
// without a name are counted bad; a copy of the view cannot change the
// model's.
func TestAlertAck(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ack := func(id, by string) Change {
		return Change{Kind: KindAlertAck, Time: t0.Add(time.Hour), Ack: &AlertAck{Alert: id, By: by, At: t0.Add(time.Hour)}}
	}
	changes := []Change{
		invChange("gw-ber-1", 1, 1, t0, "GPU-a"),
		invChange("gw-fra-1", 3, 1, t0.Add(10*time.Minute), "GPU-a"), // an impossible travel and a clone
		ack("2.2", "alice"),
		ack("2.2", "bob"), // second: bad
		ack("9.1", "eve"), // never raised: bad
		ack("2.1", ""),    // no name: bad
		invChange("gw-muc-1", 4, 1, t0.Add(20*time.Minute), "GPU-a"), // the clone at a third site (same alert), 300 km in 10 minutes (a new one)
	}
	md := NewModel(testPlaces, 0)
	for i, c := range changes {
		md.Apply(uint64(i+1), c)
	}
	v := served(t, md, "/alerts")
	var got []string
	for _, a := range v.Alerts {
		by := "-"
		if a.Acked != nil {
			by = a.Acked.By
		}
		got = append(got, a.ID+" "+a.Type+" "+strings.Join(a.Gateways, ",")+" "+by)
	}
	want := []string{"2.1 impossible_travel gw-ber-1,gw-fra-1 -", "2.2 clone gw-ber-1,gw-fra-1,gw-muc-1 alice", "7.1 impossible_travel gw-fra-1,gw-muc-1 -"}
	if !slices.Equal(got, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if md.Bad() != 3 {
		t.Errorf("bad changes: %d, want 3 (a second acknowledgement, an unknown alert, no name)", md.Bad())
	}
	if _, ok := md.View().Fleet[""]; ok {
		t.Error("an acknowledgement made a gateway in the fleet view")
	}
	c := md.View()
	c.Alerts[1].Acked.By = "mallory"
	if md.Alerts()[1].Acked.By != "alice" {
		t.Error("changing a view's acknowledgement changed the model's")
	}
}

// testPlaces are where the read model's tests put their gateways: two in
// Berlin, one in Frankfurt (424 km away), one in Munich.
var testPlaces = map[string]Place{
	"gw-ber-1": {Site: "ber", Lat: 52.5200, Lon: 13.4050},
	"gw-ber-2": {Site: "ber", Lat: 52.5200, Lon: 13.4050},
	"gw-fra-1": {Site: "fra", Lat: 50.1109, Lon: 8.6821},
	"gw-muc-1": {Site: "muc", Lat: 48.1351, Lon: 11.5820},
}

// invChange is gateway gw's inventory change (partition p, sequence seq) of
// the GPUs uuids read at at.
func invChange(gw string, p int, seq uint64, at time.Time, uuids ...string) Change {
	return Change{Gateway: gw, Partition: p, Seq: seq, Kind: "firmware", UUIDs: uuids, Time: at}
}

// alertLines are md's alerts, one line each: type, GPU, gateways, shipment.
func alertLines(md *Model) []string {
	var got []string
	for _, a := range md.Alerts() {
		got = append(got, a.Type+" "+a.UUID+" "+strings.Join(a.Gateways, ",")+" "+a.Shipment)
	}
	return got
}

package twinnode

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestImpossibleTravel: one GPU reported by gateways of two sites 505 km
// apart (Berlin, Frankfurt) ten minutes apart raises one impossible travel
// on the read model, whichever partition reported it first; the same GPU
// at another gateway of the same site, or a day later, does not; and the
// alert is what any node serves at GET /alerts.
func TestImpossibleTravel(t *testing.T) {
	places := map[string]Place{
		"gw-ber-1": {Site: "ber", Lat: 52.5200, Lon: 13.4050},
		"gw-ber-2": {Site: "ber", Lat: 52.5200, Lon: 13.4050},
		"gw-fra-1": {Site: "fra", Lat: 50.1109, Lon: 8.6821},
	}
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	changes := []Change{
		{Gateway: "gw-ber-1", Partition: 1, Seq: 1, Kind: "firmware", UUIDs: []string{"GPU-a", "GPU-b"}, Time: t0},
		{Gateway: "gw-ber-2", Partition: 2, Seq: 1, Kind: "firmware", UUIDs: []string{"GPU-b"}, Time: t0.Add(time.Minute)}, // same site
		{Gateway: "gw-fra-1", Partition: 3, Seq: 1, Kind: "firmware", UUIDs: []string{"GPU-c"}, Time: t0.Add(10 * time.Minute)},
		{Gateway: "gw-fra-1", Partition: 3, Seq: 2, Kind: "firmware", UUIDs: []string{"GPU-c", "GPU-a"}, Time: t0.Add(10 * time.Minute)},
		{Gateway: "gw-ber-1", Partition: 1, Seq: 2, Kind: "firmware", UUIDs: []string{"GPU-c"}, Time: t0.Add(24 * time.Hour)}, // a day later: possible
	}
	md := NewModel(places, 0)
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
	md2 := NewModel(places, 0)
	md2.Apply(1, changes[3])
	md2.Apply(2, changes[0])
	if got := md2.Alerts(); len(got) != 2 || got[0].Type != "impossible_travel" || got[0].UUID != "GPU-a" || got[0].Seconds != 600 || got[1].Type != "clone" {
		t.Errorf("alerts folded the other way: %+v, want an impossible travel of GPU-a and a clone", got)
	}

	srv := httptest.NewServer(md.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Pos != uint64(len(changes)) || v.Fleet != nil || len(v.Alerts) != len(md.Alerts()) {
		t.Errorf("GET /alerts: %+v, want pos %d, no fleet, the model's %d alerts", v, len(changes), len(md.Alerts()))
	}
}

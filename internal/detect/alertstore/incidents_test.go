package alertstore

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
)

// TestRackCoolingIsOneIncident: a rack's cooling fails; the 16 alerts of
// its GPUs (overheating and thermal slowdown on two servers) form ONE
// incident with every alert as a member, critical as its worst member.
// An XID on a server elsewhere is another incident; so is the same rack
// overheating again after the first incident was resolved, and an
// overheating beyond the correlation window.
func TestRackCoolingIsOneIncident(t *testing.T) {
	clk := &clock{t: t0}
	s, db := open(t, filepath.Join(t.TempDir(), "detect.db"), alert.DefaultConfig(), clk.now)
	defer db.Close()
	placed := func(f detect.Finding, host, rack string) detect.Finding { f.Host, f.Rack = host, rack; return f }
	var fs []detect.Finding
	for h := range 2 {
		host := fmt.Sprintf("srv-%d", h+1)
		for g := range 4 {
			gpu := fmt.Sprintf("%s.gpu%d", host, g)
			fs = append(fs, placed(finding(detect.TypeThermalSlowdown, gpu, detect.Warning, 10*g), host, "r1"),
				placed(finding(detect.TypeOverheating, gpu, detect.Critical, 60+10*g), host, "r1"))
		}
	}
	fs = append(fs, placed(finding(detect.TypeXID, "srv-9.gpu0", detect.Critical, 30), "srv-9", "r2"))
	res, err := s.Apply(fs, nil, nil)
	if err != nil || len(res.Opened) != 17 {
		t.Fatalf("Apply: %d opened (%v), want 17", len(res.Opened), err)
	}
	ins, _, err := s.Incidents(alert.IncidentFilter{}, 100, "")
	if err != nil || len(ins) != 2 {
		t.Fatalf("incidents: %d (%v), want 2: the rack and the XID", len(ins), err)
	}
	rack, xid := ins[1], ins[0] // newest first
	if rack.Cause != "thermal" || rack.Scope != "rack r1" || len(rack.Alerts) != 16 || len(rack.Assets) != 8 || rack.Severity != detect.Critical ||
		rack.State != alert.Open || !slices.Equal(rack.Hosts, []string{"srv-1", "srv-2"}) || !rack.FirstSeen.Equal(t0) || !rack.LastSeen.Equal(t0.Add(90*time.Second)) {
		t.Errorf("rack incident = %+v", rack)
	}
	if xid.Cause != "hardware" || xid.Scope != "host srv-9" || len(xid.Alerts) != 1 {
		t.Errorf("xid incident = %+v", xid)
	}
	for _, a := range res.Opened {
		want := rack.ID
		if a.Asset == "srv-9.gpu0" {
			want = xid.ID
		}
		if got, _ := s.Get(a.ID); got.Incident != want {
			t.Errorf("alert %s (%s) incident %q, want %s", a.ID, a.Asset, got.Incident, want)
		}
	}
	if open, _, _ := s.Incidents(alert.IncidentFilter{MinSeverity: detect.Critical, Cause: "thermal"}, 100, ""); len(open) != 1 {
		t.Errorf("filter critical thermal: %d incidents, want 1", len(open))
	}

	// Resolving all but one leaves it open; the last one resolves it.
	for i, id := range rack.Alerts {
		if _, err := s.Resolve(id, "alice", "cooling fixed"); err != nil {
			t.Fatal(err)
		}
		in, _ := s.Incident(rack.ID)
		if last := i == len(rack.Alerts)-1; (in.State == alert.Resolved) != last {
			t.Fatalf("after resolving %d of %d members the incident is %s", i+1, len(rack.Alerts), in.State)
		}
	}
	if in, _ := s.Incident(rack.ID); in.Resolved.IsZero() {
		t.Error("a resolved incident has no resolved time")
	}
	res, err = s.Apply([]detect.Finding{
		placed(finding(detect.TypeOverheating, "srv-1.gpu0", detect.Critical, 200), "srv-1", "r1"),
		placed(finding(detect.TypeOverheating, "srv-9.gpu1", detect.Critical, 3600), "srv-9", "r2"),
		placed(finding(detect.TypeOverheating, "srv-9.gpu2", detect.Critical, 3660), "srv-9", "r2"),
		placed(finding(detect.TypeOverheating, "srv-9.gpu3", detect.Critical, 3660+16*60), "srv-9", "r2"), // past the 15 min window
	}, nil, nil)
	if err != nil || len(res.Opened) != 4 {
		t.Fatalf("Apply again: %d opened (%v)", len(res.Opened), err)
	}
	if res.Opened[0].Incident == rack.ID || res.Opened[1].Incident != res.Opened[2].Incident {
		t.Errorf("again after resolve: incident %s (the resolved one is %s); two within the window: %s and %s",
			res.Opened[0].Incident, rack.ID, res.Opened[1].Incident, res.Opened[2].Incident)
	}
	if res.Opened[3].Incident == res.Opened[2].Incident {
		t.Errorf("an alert past the correlation window joined incident %s", res.Opened[3].Incident)
	}
	all, _, _ := s.Incidents(alert.IncidentFilter{}, 100, "")
	if len(all) != 5 {
		t.Errorf("%d incidents, want 5", len(all))
	}
	page, next, _ := s.Incidents(alert.IncidentFilter{}, 4, "")
	rest, _, _ := s.Incidents(alert.IncidentFilter{}, 4, next)
	if len(page) != 4 || len(rest) != 1 || rest[0].ID != "IN-1" {
		t.Errorf("pages of 3: %d then %d", len(page), len(rest))
	}
}

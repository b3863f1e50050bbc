package ingest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"twinchain/internal/wire"
)

// TestUnboundAsset is the attack of issue 11: a gateway enrolled with a
// site-wide token (no asset list) reported a double-bit ECC error on
// another host's GPU. A gateway without a list now reports only assets no
// gateway lists and no other gateway reports; the real host's stream goes
// on.
func TestUnboundAsset(t *testing.T) {
	r := newRig(t, Config{}, "gw-rogue", "gw-new")
	listed := registryGateway("gw-host-a")
	listed.Assets = []string{"srv-a", "srv-a.gpu0", "srv-a.gpu1"}
	if err := r.reg.Put(listed); err != nil {
		t.Fatal(err)
	}
	other := registryGateway("gw-host-b")
	other.Site = "s2"
	if err := r.reg.Put(other); err != nil {
		t.Fatal(err)
	}
	seqs := map[string]uint64{}
	send := func(gw string, kind wire.Kind, body any, want Reason) {
		t.Helper()
		seqs[gw]++
		out := r.submit(gw, kind, seal(t, gw, seqs[gw], t0.Add(time.Duration(seqs[gw])*time.Second), kind, body))
		if out.Reason != want {
			t.Errorf("%s %s: Submit = %q (%v), want %q", gw, kind, out.Reason, out.Err, want)
		}
		if out.Reason != "" && out.Reason != ReasonDuplicate {
			seqs[gw]-- // not stored: the agent sends the number again
		}
	}
	send("gw-host-a", wire.KindTelemetry, telemetry("srv-a", 2, 0), "")
	// A listed asset, another gateway's list.
	send("gw-rogue", wire.KindTelemetry, telemetry("srv-a", 2, 1), ReasonUnboundAsset)
	// Unlisted, but reported by another gateway without a list first.
	send("gw-new", wire.KindFirmware, inventory("srv-n", 1, "1"), "")
	send("gw-rogue", wire.KindTelemetry, telemetry("srv-n", 1, 1), ReasonUnboundAsset)
	send("gw-rogue", wire.KindGPS, wire.GPSFix{Asset: "gw-host-a", Lat: 1, Quality: 1}, ReasonUnboundAsset) // another gateway
	// Its own assets, first reported by it: claimed.
	send("gw-rogue", wire.KindTelemetry, telemetry("srv-r", 1, 0), "")
	send("gw-rogue", wire.KindTelemetry, telemetry("srv-r", 1, 0), "")
	// Another site's asset, reported by nobody so far but at site s1.
	send("gw-host-b", wire.KindGPS, wire.GPSFix{Asset: "srv-r.gpu0", Lat: 1, Quality: 1}, ReasonUnboundAsset)
	send("gw-host-a", wire.KindTelemetry, telemetry("srv-a", 2, 0), "")

	for _, id := range []string{"srv-a.gpu0", "srv-n.gpu0"} {
		a, err := r.store.Asset(id)
		if err != nil || a.Health.ECCDoubleBit != 0 {
			t.Errorf("%s after the forgery: ecc_dbe %d (%v), want 0", id, a.Health.ECCDoubleBit, err)
		}
	}
	if a, err := r.store.Asset("srv-r.gpu0"); err != nil || a.Gateway != "gw-rogue" {
		t.Errorf("claimed srv-r.gpu0: gateway %q (%v), want gw-rogue", a.Gateway, err)
	}
	if n := r.in.Stats().Rejected[ReasonUnboundAsset]; n != 4 {
		t.Errorf("Rejected[unbound_asset] = %d, want 4", n)
	}
	if !ReasonUnboundAsset.Retry() {
		t.Errorf("unbound_asset is final: an agent would delete data an operator may still bind")
	}
}

// TestRFIDFlood is the attack of issue 11: one signed 240 KB RFID message of 4,000
// made-up tags created 4,000 assets. RFID never creates assets now; the
// reads are counted and make one unknown_tags notice. A known tag of
// another site's asset moves nothing either.
func TestRFIDFlood(t *testing.T) {
	r := newRig(t, Config{}, "gw-host", "gw-dock", "gw-far")
	other := registryGateway("gw-far")
	other.Site = "s2"
	if err := r.reg.Put(other); err != nil {
		t.Fatal(err)
	}
	if out := r.submit("gw-host", wire.KindFirmware, seal(t, "gw-host", 1, t0, wire.KindFirmware, inventory("srv-h", 1, "1"))); !out.Accepted() {
		t.Fatal(out.Err)
	}
	before := r.store.LastEventID()
	var flood wire.RFID
	for i := range 1500 { // ~240 KB, under MaxEnvelopeSize
		flood.Reads = append(flood.Reads, wire.RFIDRead{Reader: "r", ReadPoint: "door", Zone: "dock", EPC: fmt.Sprintf("E2%020X", i), Count: 1})
	}
	flood.Reads = append(flood.Reads, wire.RFIDRead{Reader: "r", ReadPoint: "door", Zone: "dock", EPC: "E200srv-h", Count: 1}) // srv-h's tag, same site
	if out := r.submit("gw-dock", wire.KindRFID, seal(t, "gw-dock", 1, t0.Add(time.Second), wire.KindRFID, flood)); !out.Accepted() {
		t.Fatalf("flood: %s %v", out.Reason, out.Err)
	}
	far := wire.RFID{Reads: []wire.RFIDRead{{Reader: "r", ReadPoint: "gate", Zone: "s2-gate", EPC: "E200srv-h", Count: 1}}}
	if out := r.submit("gw-far", wire.KindRFID, seal(t, "gw-far", 1, t0.Add(2*time.Second), wire.KindRFID, far)); !out.Accepted() {
		t.Fatalf("other site: %s %v", out.Reason, out.Err)
	}
	h, err := r.store.Asset("srv-h")
	if err != nil || h.Location.Zone != "dock" {
		t.Errorf("srv-h location = %+v (%v), want zone dock (the other site's read ignored)", h.Location, err)
	}
	events, err := r.store.EventsAfter(before, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Asset != "srv-h" && e.Asset != "gw-dock" && e.Asset != "gw-far" {
			t.Errorf("RFID reads made an event on %s: %+v", e.Asset, e)
		}
	}
	st := r.in.Stats()
	if st.UnknownTags != 1501 {
		t.Errorf("Stats.UnknownTags = %d, want 1501", st.UnknownTags)
	}
	var notices []Rejection
	for _, rj := range r.in.Recent(time.Time{}) {
		if rj.Reason == ReasonUnknownTags {
			notices = append(notices, rj)
		}
	}
	if len(notices) != 2 || notices[0].Gateway != "gw-dock" || notices[1].Gateway != "gw-far" {
		t.Errorf("unknown_tags notices = %+v, want one for gw-dock and one for gw-far", notices)
	}
}

// TestRejectionsCountedBySource: 900 unsigned messages under 300 made-up
// ids from one connection count under that connection, not 300 gateways.
func TestRejectionsCountedBySource(t *testing.T) {
	r := newRig(t, Config{}, "gw-real")
	attacker := Source{Client: "svc:x", Remote: "10.0.0.9:5555"}
	for i := range 900 {
		gw := fmt.Sprintf("gw-fake-%03d", i%300)
		data, err := wire.Seal(testKey("forger"), gw, uint64(i+1), t0, wire.KindStatus, status(wire.StateOnline))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := r.in.Submit(attacker, wire.Topic(gw, wire.KindStatus), data); err != nil || out.Reason != ReasonUnknownGateway {
			t.Fatalf("Submit = %q, %v; want unknown_gateway", out.Reason, err)
		}
	}
	forged, _ := wire.Seal(testKey("forger"), "gw-real", 1, t0, wire.KindStatus, status(wire.StateOnline))
	if out, _ := r.in.Submit(Source{Client: "gw-real", Remote: "10.0.0.2:4000"}, wire.Topic("gw-real", wire.KindStatus), forged); out.Reason != ReasonBadSignature {
		t.Fatalf("forgery: %q, want bad_signature", out.Reason)
	}
	st := r.in.Stats()
	want := []SourceStats{
		{Source: "gw-real@10.0.0.2", Rejected: map[Reason]uint64{ReasonBadSignature: 1}},
		{Source: "svc:x@10.0.0.9", Rejected: map[Reason]uint64{ReasonUnknownGateway: 900}},
	}
	if !reflect.DeepEqual(st.Sources, want) {
		t.Errorf("Stats.Sources = %+v, want %+v", st.Sources, want)
	}
	for _, rj := range r.in.Recent(time.Time{}) {
		if rj.Source != attacker && rj.Source.Client != "gw-real" {
			t.Errorf("rejection without its source: %+v", rj)
		}
	}
}

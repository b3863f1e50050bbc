package ingest

import (
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

package ingest

import (
	"context"
	"errors"
	"testing"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

func TestChangeCustodyIsAnEventWithActorAndNote(t *testing.T) {
	r := newRig(t, Config{}, "gw-a")
	if out := r.submit("gw-a", wire.KindTelemetry, seal(t, "gw-a", 1, t0, wire.KindTelemetry, wire.Telemetry{Host: "srv-a", GPUs: []wire.GPUSample{{Asset: "srv-a.gpu0", UUID: "U"}}})); !out.Accepted() {
		t.Fatalf("telemetry: %v", out.Err)
	}
	ctx := context.Background()
	if err := r.in.SetCustodyStatus(ctx, "srv-a.gpu0", twin.StatusQuarantined, "detect", "alert AL-1"); err != nil {
		t.Fatal(err)
	}
	a, err := r.store.Asset("srv-a.gpu0")
	if err != nil {
		t.Fatal(err)
	}
	if a.Custody.Status != twin.StatusQuarantined {
		t.Errorf("custody after SetCustodyStatus = %s, want quarantined", a.Custody.Status)
	}
	evs, err := r.store.AssetEvents("srv-a.gpu0", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if last.Type != twin.EventCustodyChanged || last.Source.Actor != "detect" || last.Note != "alert AL-1" || last.Revision != a.Revision {
		t.Errorf("last event = %+v, want custody_changed by detect noting AL-1 at revision %d", last, a.Revision)
	}
	// A later message still folds onto the new revision.
	if out := r.submit("gw-a", wire.KindTelemetry, seal(t, "gw-a", 2, t0.Add(1e9), wire.KindTelemetry, wire.Telemetry{Host: "srv-a", GPUs: []wire.GPUSample{{Asset: "srv-a.gpu0", UUID: "U", XIDCount: 1, LastXID: 79}}})); !out.Accepted() {
		t.Fatalf("telemetry after the change: %v", out.Err)
	}
	if b, _ := r.store.Asset("srv-a.gpu0"); b.Revision != a.Revision+1 || b.Custody.Status != twin.StatusQuarantined {
		t.Errorf("after more telemetry: revision %d status %s, want %d quarantined", b.Revision, b.Custody.Status, a.Revision+1)
	}
	if err := r.in.SetCustodyStatus(ctx, "nope", twin.StatusQuarantined, "detect", ""); !errors.Is(err, ErrNoAsset) {
		t.Errorf("SetCustodyStatus(missing asset) = %v, want ErrNoAsset", err)
	}
	if err := r.in.SetCustodyStatus(ctx, "srv-a.gpu0", "lost", "detect", ""); err == nil {
		t.Errorf("SetCustodyStatus(bad status) = nil, want an error")
	}
}

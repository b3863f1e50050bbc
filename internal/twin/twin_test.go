package twin

import (
	"reflect"
	"testing"
	"time"
)

func TestDiffApplyRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var a Asset
	steps := []Asset{
		{ID: "srv-1.gpu0", Kind: KindGPU, Site: "s1", Parent: "srv-1", Identity: Identity{UUID: "GPU-a", Serial: "1"}, Firmware: Firmware{VBIOS: "96.00.1"}, Custody: Custody{Status: StatusInService}, Health: Health{State: HealthOK}},
		{ID: "srv-1.gpu0", Kind: KindGPU, Site: "s1", Parent: "srv-1", Identity: Identity{UUID: "GPU-b", Serial: "2"}, Firmware: Firmware{VBIOS: "96.00.1"}, Custody: Custody{Status: StatusInService}, Health: Health{State: HealthOK}},
		{ID: "srv-1.gpu0", Kind: KindGPU, Site: "s1", Parent: "srv-1", Identity: Identity{UUID: "GPU-b", Serial: "2"}, Firmware: Firmware{VBIOS: "96.00.2"}, Location: Location{Zone: "dock", Lat: 52.5, Lon: 13.4}, Custody: Custody{Status: StatusQuarantined}, Health: Health{State: HealthCritical, ECCDoubleBit: 2, XIDCount: 1, LastXID: 48, RowRemapFailure: true}},
	}
	wantTypes := []EventType{EventRegistered, EventIdentityChanged, EventFirmwareChanged}
	var events []Event
	for i, next := range steps {
		changes := Diff(&a, &next)
		if len(changes) == 0 {
			t.Fatalf("step %d: Diff found no changes", i)
		}
		e := Event{ID: uint64(i + 1), Asset: next.ID, Revision: a.Revision + 1, Type: TypeOf(a.Revision, changes), Time: t0.Add(time.Duration(i) * time.Second), Changes: changes}
		if e.Type != wantTypes[i] {
			t.Errorf("step %d: TypeOf = %q, want %q", i, e.Type, wantTypes[i])
		}
		var err error
		if a, err = Apply(a, e); err != nil {
			t.Fatalf("step %d: Apply: %v", i, err)
		}
		events = append(events, e)
		if got := Diff(&a, &next); len(got) != 0 {
			t.Errorf("step %d: after Apply, Diff = %v, want none", i, got)
		}
		if a.Revision != uint64(i+1) {
			t.Errorf("step %d: revision = %d, want %d", i, a.Revision, i+1)
		}
	}
	folded, err := Fold(events)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(folded, a) {
		t.Errorf("Fold(events) = %+v, want %+v", folded, a)
	}
}

func TestApplyRejectsOutOfOrderRevision(t *testing.T) {
	a := Asset{ID: "x", Revision: 3}
	for _, rev := range []uint64{0, 3, 5} {
		if _, err := Apply(a, Event{Asset: "x", Revision: rev}); err == nil {
			t.Errorf("Apply(revision %d onto 3) = nil error, want an error", rev)
		}
	}
	if _, err := Apply(a, Event{Asset: "y", Revision: 4}); err == nil {
		t.Errorf("Apply(event of another asset) = nil error, want an error")
	}
	if _, err := Apply(a, Event{Asset: "x", Revision: 4, Changes: []Change{{Field: "nope", New: "1"}}}); err == nil {
		t.Errorf("Apply(unknown field) = nil error, want an error")
	}
	if _, err := Apply(a, Event{Asset: "x", Revision: 4, Changes: []Change{{Field: "health.ecc_dbe", New: "x"}}}); err == nil {
		t.Errorf("Apply(bad number) = nil error, want an error")
	}
}

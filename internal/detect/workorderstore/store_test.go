package workorderstore

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/detect/workorder"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/twin"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestLifecycleAndMatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "detect.db")
	db := openDB(t, path)
	s, err := NewStore(db, workorder.DefaultPolicy(), func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	flash := workorder.Order{Asset: "srv-1", Reason: "VBIOS update", Changes: []workorder.Expected{{Field: "firmware.vbios", To: "96.00.A1"}}, Start: t0, End: t0.Add(4 * time.Hour)}
	if _, err := s.Create(flash, "alice", "security-guest"); !errors.Is(err, workorder.ErrForbidden) {
		t.Errorf("Create by a role that may not create = %v, want workorder.ErrForbidden", err)
	}
	if _, err := s.Create(workorder.Order{Asset: "x", Start: t0, End: t0}, "alice", "maintenance"); !errors.Is(err, workorder.ErrInvalid) {
		t.Errorf("Create(no changes, empty window) = %v, want workorder.ErrInvalid", err)
	}
	o, err := s.Create(flash, "alice", "maintenance")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != "WO-1" || o.State != workorder.Pending {
		t.Errorf("Create = %s %s, want WO-1 pending", o.ID, o.State)
	}
	vbios := twin.Change{Field: "firmware.vbios", Old: "96.00.99", New: "96.00.A1"}
	if id, ok := s.Match("srv-1.gpu3", []string{"srv-1"}, vbios, t0.Add(time.Hour)); ok {
		t.Errorf("Match before approval = %s, want none", id)
	}
	if _, err := s.Approve(o.ID, "alice", "security"); !errors.Is(err, workorder.ErrForbidden) {
		t.Errorf("Approve by the creator = %v, want workorder.ErrForbidden", err)
	}
	if _, err := s.Approve(o.ID, "bob", "maintenance"); !errors.Is(err, workorder.ErrForbidden) {
		t.Errorf("Approve by a non-approving role = %v, want workorder.ErrForbidden", err)
	}
	if _, err := s.Approve("WO-9", "bob", "security"); !errors.Is(err, workorder.ErrNotFound) {
		t.Errorf("Approve(WO-9) = %v, want workorder.ErrNotFound", err)
	}
	if o, err = s.Approve(o.ID, "bob", "security"); err != nil || o.State != workorder.Approved || o.ApprovedBy != "bob" {
		t.Fatalf("Approve = %+v, %v, want approved by bob", o, err)
	}
	if _, err := s.Approve(o.ID, "carol", "security"); !errors.Is(err, workorder.ErrConflict) {
		t.Errorf("second Approve = %v, want workorder.ErrConflict", err)
	}
	tests := []struct {
		name  string
		asset string
		anc   []string
		c     twin.Change
		at    time.Time
		want  bool
	}{
		{"the GPU of the host in the window", "srv-1.gpu3", []string{"srv-1"}, vbios, t0.Add(time.Hour), true},
		{"the host itself", "srv-1", nil, vbios, t0.Add(time.Hour), true},
		{"another host", "srv-2.gpu3", []string{"srv-2"}, vbios, t0.Add(time.Hour), false},
		{"after the window", "srv-1.gpu3", []string{"srv-1"}, vbios, t0.Add(5 * time.Hour), false},
		{"another version", "srv-1.gpu3", []string{"srv-1"}, twin.Change{Field: "firmware.vbios", New: "66.6"}, t0.Add(time.Hour), false},
		{"another part", "srv-1.gpu3", []string{"srv-1"}, twin.Change{Field: "firmware.driver", New: "96.00.A1"}, t0.Add(time.Hour), false},
	}
	for _, tt := range tests {
		if _, got := s.Match(tt.asset, tt.anc, tt.c, tt.at); got != tt.want {
			t.Errorf("Match(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if err := s.Record(o.ID, workorder.Coverage{Event: 7, Asset: "srv-1.gpu3", Field: vbios.Field, Value: vbios.New, Time: t0}); err != nil {
		t.Fatal(err)
	}
	move, err := s.Create(workorder.Order{Asset: "rack-3", Changes: []workorder.Expected{{Field: "location"}}, Start: t0, End: t0.Add(time.Hour)}, "alice", "asset_manager")
	if err != nil {
		t.Fatal(err)
	}
	// Reopen: orders, approval and coverage survive.
	db.Close()
	db = openDB(t, path)
	defer db.Close()
	s, err = NewStore(db, workorder.DefaultPolicy(), func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("WO-1")
	if err != nil || got.State != workorder.Approved || len(got.Covered) != 1 || got.Covered[0].Event != 7 {
		t.Errorf("after reopen Get(WO-1) = %+v, %v, want approved with one coverage", got, err)
	}
	if l := s.List("", workorder.Pending); len(l) != 1 || l[0].ID != move.ID {
		t.Errorf("List(pending) = %+v, want only %s", l, move.ID)
	}
	if _, err := s.Approve(move.ID, "bob", "asset_manager"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Match("rack-3", nil, twin.Change{Field: "location.zone", New: "dock"}, t0.Add(time.Minute)); !ok {
		t.Errorf("a location order does not cover a zone change")
	}
	if _, err := s.Cancel(move.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if id, ok := s.Match("rack-3", nil, twin.Change{Field: "location.zone", New: "dock"}, t0.Add(time.Minute)); ok {
		t.Errorf("a cancelled order still covers: %s", id)
	}
}

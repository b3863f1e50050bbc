package detectsvc

import (
	"crypto/ed25519"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/twin"
)

// TestAlertLifecycleEvents: raising, acknowledging and resolving an alert
// each store a twin event on its asset (real ingest and twin store) whose
// note names the alert, and the alert record keeps their ids; the asset's
// events still fold to its twin. A step for an asset without a twin keeps
// the error.
func TestAlertLifecycleEvents(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 50 * time.Millisecond
	seed := sha256.Sum256([]byte("gw-a"))
	r := &rig{t: t, dir: t.TempDir(), key: ed25519.NewKeyFromSeed(seed[:]), events: true}
	r.open(cfg)
	t.Cleanup(r.close)
	now := time.Now().UTC().Add(-time.Hour)
	r.telemetry(1, now, 0)
	r.telemetry(2, now.Add(time.Second), 1)
	recorded := func(n int) func([]alert.Alert) bool {
		return func(as []alert.Alert) bool {
			for _, a := range as {
				if a.Asset == "srv-a.gpu0" && len(a.Lifecycle) == n && a.Lifecycle[n-1].Event != 0 {
					return true
				}
			}
			return false
		}
	}
	items := r.waitAlerts("the raised step recorded", recorded(1))
	id := items[0].ID
	if _, err := r.svc.Alerts().Acknowledge(id, "alice", "looking"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Alerts().Resolve(id, "bob", "reseated"); err != nil {
		t.Fatal(err)
	}
	r.waitAlerts("three steps recorded", recorded(3))
	a, err := r.svc.Alerts().Get(id)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := r.store.AssetEvents("srv-a.gpu0", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint64]twin.Event{}
	for _, e := range evs {
		byID[e.ID] = e
	}
	for i, want := range []struct {
		step alert.Step
		typ  twin.EventType
		by   string
	}{{alert.StepRaised, twin.EventAlertRaised, "detect"}, {alert.StepAcknowledged, twin.EventAlertAcknowledged, "alice"}, {alert.StepResolved, twin.EventAlertResolved, "bob"}} {
		l := a.Lifecycle[i]
		e, ok := byID[l.Event]
		if l.Step != want.step || !ok {
			t.Fatalf("lifecycle[%d] = %+v, want step %s with an event of srv-a.gpu0", i, l, want.step)
		}
		if e.Type != want.typ || len(e.Changes) != 0 || e.Source.Actor != "alerts" || e.Note != alert.LifecycleNote(id, a.Type, &l) ||
			!strings.Contains(e.Note, "alert "+id+" ") || !strings.Contains(e.Note, "by "+want.by) {
			t.Errorf("event %d = %s by %q changes %v note %q, want %s by alerts naming %s by %s", e.ID, e.Type, e.Source.Actor, e.Changes, e.Note, want.typ, id, want.by)
		}
	}
	if last := a.Lifecycle[2]; last.EvidenceHash != alert.EvidenceHash(a.Evidence) || last.Count != a.Count {
		t.Errorf("resolved step hash %s count %d, want the alert's %s count %d", last.EvidenceHash, last.Count, alert.EvidenceHash(a.Evidence), a.Count)
	}
	folded, err := twin.Fold(evs)
	tw, _ := r.store.Asset("srv-a.gpu0")
	if err != nil || folded.Revision != tw.Revision || folded.Revision != evs[len(evs)-1].Revision {
		t.Errorf("Fold(events of srv-a.gpu0) = revision %d (%v), want the twin's %d", folded.Revision, err, tw.Revision)
	}

	// An alert on an asset that has no twin: the step keeps the error.
	if _, err := r.svc.Alerts().Apply([]detect.Finding{{Type: detect.TypeUnknownAsset, Asset: "ghost", Severity: detect.Warning, Time: now, Summary: "ghost"}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	got := r.waitAlerts("the ghost step failed", func(as []alert.Alert) bool {
		for _, a := range as {
			if a.Asset == "ghost" && len(a.Lifecycle) == 1 && a.Lifecycle[0].Error != "" {
				return true
			}
		}
		return false
	})
	for _, a := range got {
		if a.Asset == "ghost" && (a.Lifecycle[0].Event != 0 || !strings.Contains(a.Lifecycle[0].Error, "no such asset")) {
			t.Errorf("ghost step = %+v, want no event and a no-such-asset error", a.Lifecycle[0])
		}
	}
	if f := r.svc.Recorder().Failed.Load(); f != 1 {
		t.Errorf("recorder failures = %d, want 1 (the ghost)", f)
	}
}

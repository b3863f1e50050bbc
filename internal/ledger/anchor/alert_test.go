package anchor

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/detect/alertstore"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
)

// TestAlertLifecycleAnchored: an alert's raised, acknowledged and resolved
// steps go through the real ingest onto the event log, get anchored on the
// embedded ledger with the other events, and the alert bundle proves them
// and the evidence; an edited evidence hash in the stored alert, or edited
// evidence, fails verification.
// anchoredAlert raises, acknowledges and resolves an alert on a real
// swap through the real ingest, waits until its steps are anchored, and
// returns it, its store and a function that exports a bundle of a record.
func anchoredAlert(t *testing.T) (*rig, *alertstore.Store, *alertstore.LifecycleRecorder, alert.Alert, func(alert.Alert) *proofbundle.Bundle) {
	r := newRig(t, Config{Interval: 30 * time.Millisecond, MaxBatch: 4})
	r.inventory("GPU-b1", "96.00.89.00.01")
	r.inventory("GPU-SWAPPED", "96.00.89.00.01") // gpu1's UUID changes
	r.waitAnchored("inventory")
	evs, err := r.store.AssetEvents("srv-s1-001.gpu1", 0, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("gpu1 events = %d (%v), want registered and the swap", len(evs), err)
	}
	swap := evs[1]

	db, err := bolt.Open(filepath.Join(r.dir, "detect.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	alerts, err := alertstore.NewStore(db, alert.DefaultConfig(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	alerts.RecordLifecycle()
	rec := alertstore.NewLifecycleRecorder(alerts, r.in, func(err error) bool { return errors.Is(err, ingest.ErrNoAsset) }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(run(t, rec.Run))
	res, err := alerts.Apply([]detect.Finding{{Type: detect.TypeSubstitution, Asset: swap.Asset, Severity: detect.Critical, Time: swap.Time,
		Summary: "fingerprint changed", Evidence: detect.Evidence{Events: []twin.Event{swap}}}}, nil, nil)
	if err != nil || len(res.Opened) != 1 {
		t.Fatalf("Apply = %+v, %v; want one opened alert", res, err)
	}
	id := res.Opened[0].ID
	if _, err := alerts.Acknowledge(id, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := alerts.Resolve(id, "alice", "swap approved after the fact"); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 20*time.Second, "three lifecycle steps recorded", func() bool { return rec.Recorded.Load() >= 3 })
	if n := rec.Recorded.Load(); n != 3 {
		t.Fatalf("recorded %d lifecycle steps, want 3", n)
	}
	r.waitAnchored("lifecycle")
	a, err := alerts.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range a.Lifecycle {
		got, err := r.store.EventsAfter(l.Event-1, 1)
		if err != nil || len(got) != 1 || got[0].Type != l.Step.EventType() || !strings.Contains(got[0].Note, "alert "+id+" ") {
			t.Errorf("lifecycle[%d] %s event %d = %+v (%v), want %s naming %s", i, l.Step, l.Event, got, err, l.Step.EventType(), id)
		}
		if _, err := r.led.AnchorForEvent(svc, l.Event); err != nil {
			t.Errorf("lifecycle event %d: no anchor: %v", l.Event, err)
		}
	}

	x := &proofbundle.Exporter{Tree: r.tree, Anchors: auditorAnchors{r.led}, Blocks: r.fl, Key: serviceKey.Public().(ed25519.PublicKey)}
	bundle := func(a alert.Alert) *proofbundle.Bundle {
		t.Helper()
		raw, _ := json.Marshal(a)
		b, err := x.Alert(context.Background(), raw)
		if err != nil {
			t.Fatalf("alert bundle: %v", err)
		}
		data, _ := json.Marshal(b) // through JSON, as a file travels
		b, err = proofbundle.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return r, alerts, rec, a, bundle
}

func TestAlertLifecycleAnchored(t *testing.T) {
	_, _, _, a, bundle := anchoredAlert(t)
	pub := serviceKey.Public().(ed25519.PublicKey)
	b := bundle(a)
	if n := len(b.Alert.Events); n != 4 {
		t.Errorf("alert bundle proves %d events, want 4 (the swap and three steps)", n)
	}
	if rep := proofbundle.Verify(b, pub); !rep.OK() {
		t.Fatalf("alert bundle does not verify: %+v", rep.Failed())
	}

	for _, tc := range []struct {
		name   string
		edit   func(*alert.Alert)
		failed string
	}{
		{"stored evidence hash changed", func(a *alert.Alert) { a.Lifecycle[0].EvidenceHash = alert.EvidenceHash(nil) }, "alert raised"},
		{"evidence changed", func(a *alert.Alert) { a.Evidence[0].Summary = "nothing to see" }, "alert evidence"},
		{"state changed", func(a *alert.Alert) { a.State = alert.Acknowledged }, "alert state"},
		{"severity changed", func(a *alert.Alert) { a.Lifecycle[2].Severity = detect.Info }, "alert resolved"},
	} {
		edited := a
		edited.Evidence = append([]alert.EvidenceRecord(nil), a.Evidence...)
		edited.Lifecycle = append([]alert.LifecycleEvent(nil), a.Lifecycle...)
		tc.edit(&edited)
		eb := *b
		ap := *b.Alert
		ap.Alert, _ = json.Marshal(edited)
		eb.Alert = &ap
		rep := proofbundle.Verify(&eb, pub)
		if f := rep.Failed(); len(f) != 1 || f[0].Name != tc.failed {
			t.Errorf("%s: failed checks = %+v, want exactly %q", tc.name, f, tc.failed)
		}
	}
}

// TestAlertBundleCoversEveryField: every field an analyst reads on an
// alert is proven by its bundle, or shown as not proven: each edit of a
// stored, resolved alert fails verification, and a lifecycle cut back to
// "raised" (with its state and history) verifies only as the alert was
// then, its state now shown as not proven. An open alert that merged a
// finding after its last step shows what changed since as not proven.
func TestAlertBundleCoversEveryField(t *testing.T) {
	r, alerts, rec, a, bundle := anchoredAlert(t)
	pub := serviceKey.Public().(ed25519.PublicKey)
	b := bundle(a)
	if rep := proofbundle.Verify(b, pub); !rep.Verified() || len(rep.Unproven()) != 0 {
		t.Fatalf("resolved alert bundle: failed %+v, not proven %+v; want everything proven", rep.Failed(), rep.Unproven())
	}
	verify := func(edited alert.Alert) *proofbundle.Report {
		eb := *b
		ap := *b.Alert
		ap.Alert, _ = json.Marshal(edited)
		eb.Alert = &ap
		return proofbundle.Verify(&eb, pub)
	}
	later := func(tm time.Time) time.Time { return tm.Add(time.Minute) }
	for _, tc := range []struct {
		name string
		edit func(*alert.Alert)
	}{
		{"severity", func(a *alert.Alert) { a.Severity = detect.Info }},
		{"summary", func(a *alert.Alert) { a.Summary = "nothing happened" }},
		{"site", func(a *alert.Alert) { a.Site = "s9" }},
		{"count", func(a *alert.Alert) { a.Count = 7 }},
		{"first seen", func(a *alert.Alert) { a.FirstSeen = later(a.FirstSeen) }},
		{"last seen", func(a *alert.Alert) { a.LastSeen = later(a.LastSeen) }},
		{"opened", func(a *alert.Alert) { a.Opened = later(a.Opened) }},
		{"history comment", func(a *alert.Alert) { a.History[2].Comment = "false alarm" }},
		{"history who", func(a *alert.Alert) { a.History[1].By = "mallory" }},
		{"history time", func(a *alert.Alert) { a.History[1].At = later(a.History[1].At) }},
		{"response", func(a *alert.Alert) { a.Response = "none needed" }},
		{"escalations", func(a *alert.Alert) { a.Escalations = 3 }},
		{"lifecycle cut back to raised", func(a *alert.Alert) { a.Lifecycle = a.Lifecycle[:1] }},
		{"step facts", func(a *alert.Alert) { f := *a.Lifecycle[2].Facts; f.Summary = "x"; a.Lifecycle[2].Facts = &f }},
	} {
		edited := a
		edited.History = append([]alert.Transition(nil), a.History...)
		edited.Lifecycle = append([]alert.LifecycleEvent(nil), a.Lifecycle...)
		tc.edit(&edited)
		if rep := verify(edited); rep.OK() {
			t.Errorf("%s edited: verification passed (not proven: %+v), want a failure", tc.name, rep.Unproven())
		}
	}
	// Cut back consistently to the alert as it was when raised: it verifies
	// as of then, and says its state now is not proven.
	cut := a
	cut.State, cut.History, cut.Lifecycle = alert.Open, a.History[:1], a.Lifecycle[:1]
	rep := verify(cut)
	if !rep.OK() || len(rep.Unproven()) != 1 || rep.Unproven()[0].Name != "alert state now" {
		t.Errorf("alert cut back to raised: failed %+v, not proven %+v; want it consistent as of the raised step with its state now not proven", rep.Failed(), rep.Unproven())
	}

	// An open alert that merged a finding after it was raised.
	swap := a.Evidence[0].Evidence.Events[0]
	f := detect.Finding{Type: detect.TypeFirmwareUnauthorised, Asset: swap.Asset, Severity: detect.Warning, Time: swap.Time, Summary: "firmware", Evidence: detect.Evidence{Events: []twin.Event{swap}}}
	res, err := alerts.Apply([]detect.Finding{f}, nil, nil)
	if err != nil || len(res.Opened) != 1 {
		t.Fatalf("Apply = %+v, %v; want one opened alert", res, err)
	}
	f.Time = f.Time.Add(time.Second)
	if _, err := alerts.Apply([]detect.Finding{f}, nil, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for rec.Recorded.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.waitAnchored("the second alert's raise")
	open, err := alerts.Get(res.Opened[0].ID)
	if err != nil || open.Count != 2 || len(open.Lifecycle) != 1 {
		t.Fatalf("merged alert = %+v, %v; want count 2 and one step", open, err)
	}
	rep = proofbundle.Verify(bundle(open), pub)
	var unproven []string
	for _, c := range rep.Unproven() {
		unproven = append(unproven, c.Name)
	}
	if want := []string{"alert state now", "alert count", "alert last_seen"}; !rep.OK() || strings.Join(unproven, ",") != strings.Join(want, ",") {
		t.Errorf("open alert with a merged finding: failed %+v, not proven %v; want %v not proven", rep.Failed(), unproven, want)
	}
}

// TestIncidentAssignAndCommentAnchored: assigning an incident and
// commenting on it records an assigned and a commented step on its member
// alert through the real ingest, anchored like the state steps: the alert
// bundle proves the assignee and the comment, an edited assignee or
// comment fails verification, and after the alert is resolved its state
// step follows them and verifies too.
func TestIncidentAssignAndCommentAnchored(t *testing.T) {
	r, alerts, rec, a, bundle := anchoredAlert(t)
	pub := serviceKey.Public().(ed25519.PublicKey)
	open := openFirmwareAlert(t, alerts, a)
	in, err := alerts.AssignIncident(open.Incident, "carol", "alice", "carol has the site")
	if err != nil || in.Assignee != "carol" || len(in.History) != 1 || in.History[0].Step != alert.StepAssigned {
		t.Fatalf("AssignIncident = %+v, %v; want carol assigned with one history entry", in, err)
	}
	if _, err := alerts.CommentIncident(open.Incident, "carol", "  "); !errors.Is(err, alert.ErrInvalid) {
		t.Errorf("an empty comment: %v, want ErrInvalid", err)
	}
	if _, err := alerts.CommentIncident(open.Incident, "carol", "firmware pushed by the vendor's tool"); err != nil {
		t.Fatal(err)
	}
	testsvc.Eventually(t, 20*time.Second, "raised, assigned and commented recorded", func() bool { return rec.Recorded.Load() >= 6 })
	r.waitAnchored("the assigned and commented steps")
	got, err := alerts.Get(open.ID)
	if err != nil || got.Assignee != "carol" || len(got.Lifecycle) != 3 || got.Lifecycle[1].Step != alert.StepAssigned || got.Lifecycle[2].Step != alert.StepCommented {
		t.Fatalf("member alert = assignee %q lifecycle %+v (%v); want carol, raised, assigned, commented", got.Assignee, got.Lifecycle, err)
	}
	for _, l := range got.Lifecycle {
		evs, err := r.store.EventsAfter(l.Event-1, 1)
		if l.Event == 0 || err != nil || len(evs) != 1 || evs[0].Type != l.Step.EventType() || evs[0].Asset != got.Asset {
			t.Errorf("step %s: event %d = %+v (%v), want %s on %s", l.Step, l.Event, evs, err, l.Step.EventType(), got.Asset)
		}
	}
	b := bundle(got)
	if rep := proofbundle.Verify(b, pub); !rep.OK() {
		t.Fatalf("assigned and commented alert does not verify: %+v", rep.Failed())
	}
	for name, edit := range map[string]func(*alert.Alert){
		"assignee":        func(a *alert.Alert) { a.Assignee = "mallory" },
		"history comment": func(a *alert.Alert) { a.History[2].Comment = "nothing" },
		"history assignee": func(a *alert.Alert) {
			a.History[1].Assignee = "mallory"
		},
	} {
		edited := got
		edited.History = append([]alert.Transition(nil), got.History...)
		edit(&edited)
		eb, ap := *b, *b.Alert
		ap.Alert, _ = json.Marshal(edited)
		eb.Alert = &ap
		if rep := proofbundle.Verify(&eb, pub); rep.OK() {
			t.Errorf("%s edited: verification passed, want a failure", name)
		}
	}
	// A resolved alert takes no more steps; its resolution verifies.
	if _, err := alerts.Resolve(open.ID, "carol", "rolled back"); err != nil {
		t.Fatal(err)
	}
	if _, err := alerts.Comment(open.ID, "carol", "late"); !errors.Is(err, alert.ErrConflict) {
		t.Errorf("comment on a resolved alert: %v, want ErrConflict", err)
	}
	testsvc.Eventually(t, 20*time.Second, "the resolved step recorded", func() bool { return rec.Recorded.Load() >= 7 })
	r.waitAnchored("the resolved step")
	got, _ = alerts.Get(open.ID)
	if rep := proofbundle.Verify(bundle(got), pub); !rep.Verified() {
		t.Errorf("resolved alert after assign and comment: failed %+v", rep.Failed())
	}
}

// TestIncidentAcknowledgeAndResolveAnchored: acknowledging and resolving an
// incident records an acknowledged and a resolved step on its member alert
// through the real ingest, each a twin event in an anchored batch, and the
// member's alert bundle verifies.
func TestIncidentAcknowledgeAndResolveAnchored(t *testing.T) {
	r, alerts, rec, a, bundle := anchoredAlert(t)
	pub := serviceKey.Public().(ed25519.PublicKey)
	open := openFirmwareAlert(t, alerts, a)
	if in, err := alerts.AcknowledgeIncident(open.Incident, "alice", "looking"); err != nil || len(in.History) != 1 || in.History[0].State != alert.Acknowledged {
		t.Fatalf("AcknowledgeIncident = %+v, %v; want one acknowledged history entry", in, err)
	}
	if in, err := alerts.ResolveIncident(open.Incident, "alice", "vendor's rollout"); err != nil || in.State != alert.Resolved {
		t.Fatalf("ResolveIncident = %+v, %v; want the incident resolved", in, err)
	}
	if _, err := alerts.ResolveIncident(open.Incident, "alice", ""); !errors.Is(err, alert.ErrConflict) {
		t.Errorf("resolving a resolved incident: %v, want ErrConflict", err)
	}
	testsvc.Eventually(t, 20*time.Second, "raised, acknowledged and resolved recorded", func() bool { return rec.Recorded.Load() >= 6 })
	r.waitAnchored("the incident's steps")
	got, err := alerts.Get(open.ID)
	if err != nil || got.State != alert.Resolved || len(got.Lifecycle) != 3 || got.Lifecycle[1].Step != alert.Step(alert.Acknowledged) || got.Lifecycle[2].Step != alert.Step(alert.Resolved) {
		t.Fatalf("member alert = state %s lifecycle %+v (%v); want resolved: raised, acknowledged, resolved", got.State, got.Lifecycle, err)
	}
	for _, l := range got.Lifecycle {
		evs, err := r.store.EventsAfter(l.Event-1, 1)
		if l.Event == 0 || err != nil || len(evs) != 1 || evs[0].Type != l.Step.EventType() || evs[0].Asset != got.Asset {
			t.Errorf("step %s: event %d = %+v (%v), want %s on %s", l.Step, l.Event, evs, err, l.Step.EventType(), got.Asset)
		}
	}
	if rep := proofbundle.Verify(bundle(got), pub); !rep.Verified() {
		t.Errorf("alert resolved through its incident does not verify: failed %+v", rep.Failed())
	}
}

// openFirmwareAlert opens an unauthorised-firmware alert on the asset of
// a's swap event, in an incident of its own.
func openFirmwareAlert(t *testing.T, alerts *alertstore.Store, a alert.Alert) alert.Alert {
	t.Helper()
	swap := a.Evidence[0].Evidence.Events[0]
	res, err := alerts.Apply([]detect.Finding{{Type: detect.TypeFirmwareUnauthorised, Asset: swap.Asset, Severity: detect.Warning, Time: swap.Time,
		Summary: "firmware", Evidence: detect.Evidence{Events: []twin.Event{swap}}}}, nil, nil)
	if err != nil || len(res.Opened) != 1 {
		t.Fatalf("Apply = %+v, %v; want one opened alert", res, err)
	}
	return res.Opened[0]
}

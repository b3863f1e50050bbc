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
func TestAlertLifecycleAnchored(t *testing.T) {
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
	defer db.Close()
	alerts, err := alertstore.NewStore(db, alert.DefaultConfig(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	alerts.RecordLifecycle()
	rec := alertstore.NewLifecycleRecorder(alerts, r.in, func(err error) bool { return errors.Is(err, ingest.ErrNoAsset) }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	stop := run(t, rec.Run)
	defer stop()
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

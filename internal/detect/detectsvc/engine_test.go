package detectsvc

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/detect/workorder"
	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// rig is a real twin store and ingest in a temp dir, with the detection
// service over them (no broker: messages go to ingest.Submit directly).
type rig struct {
	t     *testing.T
	dir   string
	key   ed25519.PrivateKey
	store *twinstore.Store
	in    *ingest.Ingest
	svc   *Service
	stop  func()
	// events records alert lifecycle steps through the ingest (Deps.Events).
	events bool
	// reg is the gateway registry; with known set, the engine's KnownAssets.
	reg   *registry.Registry
	known bool
	// approvals turns the run-time checks on (Deps.Approvals).
	approvals detect.Approvals
	// now is the service clock of the ingest and the engine; nil: time.Now.
	now func() time.Time
}

func newRig(t *testing.T, cfg Config) *rig {
	seed := sha256.Sum256([]byte("gw-a"))
	r := &rig{t: t, dir: t.TempDir(), key: ed25519.NewKeyFromSeed(seed[:])}
	r.open(cfg)
	t.Cleanup(r.close)
	return r
}

func (r *rig) open(cfg Config) {
	var err error
	if r.store, err = twinstore.Open(filepath.Join(r.dir, "twins.db"), twinstore.Options{NoSync: true}); err != nil {
		r.t.Fatal(err)
	}
	if r.reg == nil {
		r.reg = registry.New(registry.Gateway{ID: "gw-a", PublicKey: r.key.Public().(ed25519.PublicKey), Site: "s1"})
	}
	log := slog.New(slog.DiscardHandler)
	now := r.now
	if now == nil {
		now = time.Now
	}
	if r.in, err = ingest.New(ingest.Config{}, r.store, r.reg, log, now); err != nil {
		r.t.Fatal(err)
	}
	deps := Deps{Logs: r.store, Source: r.in, Custody: r.in, Log: log, Now: now}
	if r.known {
		deps.Known = r.reg
	}
	if r.events {
		deps.Events = r.in
	}
	deps.Approvals = r.approvals
	if r.svc, err = Open(r.dir, cfg, deps); err != nil {
		r.t.Fatal(err)
	}
	r.in.SetAnnotator(r.svc.Annotate)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { r.in.Run(ctx); done <- struct{}{} }()
	go func() { r.svc.Run(ctx); done <- struct{}{} }()
	r.stop = func() { cancel(); <-done; <-done; r.svc.Close(); r.store.Close() }
}

func (r *rig) close() {
	if r.stop != nil {
		r.stop()
		r.stop = nil
	}
}

func (r *rig) telemetry(seq uint64, tm time.Time, xids uint64) {
	body := wire.Telemetry{Host: "srv-a", GPUs: []wire.GPUSample{{Asset: "srv-a.gpu0", UUID: "U0", TempC: 50, MemTempC: 58, XIDCount: xids, LastXID: 79}}}
	data, err := wire.Seal(r.key, "gw-a", seq, tm, wire.KindTelemetry, body)
	if err != nil {
		r.t.Fatal(err)
	}
	if out, err := r.in.Submit(ingest.Source{}, wire.Topic("gw-a", wire.KindTelemetry), data); err != nil || !out.Accepted() {
		r.t.Fatalf("submit %d: %v %v", seq, out.Err, err)
	}
}

func (r *rig) waitAlerts(what string, cond func([]alert.Alert) bool) []alert.Alert {
	r.t.Helper()
	var items []alert.Alert
	done := false
	defer func() {
		if !done {
			r.t.Logf("alerts: %+v", items)
		}
	}()
	testsvc.Eventually(r.t, 10*time.Second, what, func() bool {
		var err error
		if items, _, err = r.svc.Alerts().List(alert.Filter{}, 100, ""); err != nil {
			r.t.Fatal(err)
		}
		done = cond(items)
		return done
	})
	return items
}

// TestEngineAcrossRestart: an XID opens one alert and, by policy,
// quarantines the GPU (a custody event by "detect"); after a restart the
// engine continues from its cursors: the same condition again merges into
// the open alert instead of opening another, and nothing is re-raised.
func TestEngineAcrossRestart(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 50 * time.Millisecond
	cfg.Alerts.Quarantine = alert.QuarantinePolicy{Enabled: true, MinSeverity: detect.Critical, Types: []detect.Type{detect.TypeXID}}
	r := newRig(t, cfg)
	now := time.Now().UTC().Add(-time.Hour)
	r.telemetry(1, now, 0)
	r.telemetry(2, now.Add(time.Second), 1)
	items := r.waitAlerts("the XID alert", func(a []alert.Alert) bool { return len(a) == 1 && a[0].Response != "" })
	if a := items[0]; a.Type != detect.TypeXID || a.Asset != "srv-a.gpu0" || a.Response != "quarantined" {
		t.Fatalf("alert = %s %s response %q, want gpu_xid srv-a.gpu0 quarantined", a.Type, a.Asset, a.Response)
	}
	tw, err := r.store.Asset("srv-a.gpu0")
	if err != nil || tw.Custody.Status != twin.StatusQuarantined {
		t.Fatalf("custody after the alert = %q (%v), want quarantined", tw.Custody.Status, err)
	}
	evs, _ := r.store.AssetEvents("srv-a.gpu0", 0, 100)
	if last := evs[len(evs)-1]; last.Type != twin.EventCustodyChanged || last.Source.Actor != "detect" {
		t.Errorf("last event = %s by %q, want custody_changed by detect", last.Type, last.Source.Actor)
	}

	r.close()
	r.open(cfg)
	r.telemetry(3, now.Add(2*time.Second), 1)
	r.telemetry(4, now.Add(3*time.Second), 2) // another XID
	items = r.waitAlerts("the second XID merged", func(a []alert.Alert) bool { return len(a) >= 1 && a[0].Count == 2 })
	if len(items) != 1 {
		t.Errorf("after the restart: %d alerts, want the one open alert (count 2)", len(items))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.svc.Collectors()...)
	// The engine moves its position after it has applied a step's findings,
	// so the merged alert can be seen a moment before the position.
	var families []*dto.MetricFamily
	position := -1.0
	testsvc.Eventually(t, 10*time.Second, "twinchain_detect_position{log=message} = 4 after 4 messages", func() bool {
		var err error
		if families, err = reg.Gather(); err != nil {
			t.Fatal(err)
		}
		for _, mf := range families {
			if mf.GetName() == "twinchain_detect_position" {
				for _, m := range mf.GetMetric() {
					if m.GetLabel()[0].GetValue() == "message" {
						position = m.GetGauge().GetValue()
					}
				}
			}
		}
		return position == 4
	})
	if len(families) != 14 {
		t.Errorf("detection metrics gathered %d families, want 14", len(families))
	}
	for _, mf := range families {
		if mf.GetName() == "twinchain_detect_alerts_opened_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 0 {
				t.Errorf("alerts_opened_total after the restart = %g, want 0 (the XID merged)", v)
			}
		}
	}
	if st := r.svc.Engine().Stats.Messages.Load(); st != 2 {
		t.Errorf("after the restart the engine read %d messages, want 2 (from its cursor)", st)
	}
}

func (r *rig) inventory(seq uint64, tm time.Time, vbios, driver string) {
	body := wire.Inventory{Host: wire.HostInfo{Asset: "srv-a", BIOSVersion: "1.0"}, GPUs: []wire.GPUIdentity{{Asset: "srv-a.gpu0", UUID: "U0", Serial: "S0", VBIOS: vbios, Driver: driver}}}
	data, err := wire.Seal(r.key, "gw-a", seq, tm, wire.KindFirmware, body)
	if err != nil {
		r.t.Fatal(err)
	}
	if out, err := r.in.Submit(ingest.Source{}, wire.Topic("gw-a", wire.KindFirmware), data); err != nil || !out.Accepted() {
		r.t.Fatalf("submit %d: %v %v", seq, out.Err, err)
	}
}

// TestWorkOrderCoversAndNotes: an approved order on the host covers a GPU's
// VBIOS flash: no alert, the firmware event's note names the order, the
// order records the event. A later driver change it does not name alarms,
// and its event says no order covers it.
func TestWorkOrderCoversAndNotes(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 50 * time.Millisecond
	r := newRig(t, cfg)
	now := time.Now().UTC().Add(-time.Hour)
	wo, err := r.svc.Orders().Create(workorder.Order{Asset: "srv-a", Changes: []workorder.Expected{{Field: "firmware.vbios", To: "2.0"}}, Start: now, End: now.Add(time.Hour)}, "mia", "maintenance")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Orders().Approve(wo.ID, "sam", "security"); err != nil {
		t.Fatal(err)
	}
	r.inventory(1, now, "1.0", "550")
	r.inventory(2, now.Add(time.Minute), "2.0", "550")
	r.inventory(3, now.Add(2*time.Minute), "2.0", "560")
	items := r.waitAlerts("the driver change alert", func(a []alert.Alert) bool { return len(a) > 0 })
	if len(items) != 1 || items[0].Type != detect.TypeFirmwareUnauthorised || !strings.Contains(items[0].Summary, "firmware.driver") {
		t.Errorf("alerts = %+v, want one firmware_unauthorised for the driver change only", items)
	}
	evs, err := r.store.AssetEvents("srv-a.gpu0", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, e := range evs {
		if e.Type == twin.EventFirmwareChanged {
			notes = append(notes, e.Note)
		}
	}
	if len(notes) != 2 || notes[0] != "firmware.vbios covered by work order "+wo.ID || notes[1] != "" {
		t.Errorf("firmware event notes = %q, want [covered by %s, none]", notes, wo.ID)
	}
	got, _ := r.svc.Orders().Get(wo.ID)
	if len(got.Covered) != 1 || got.Covered[0].Value != "2.0" || got.Covered[0].Event == 0 {
		t.Errorf("order coverage = %+v, want the VBIOS event", got.Covered)
	}
}

// TestKnownAssetsFollowRegistry: the engine reads the registry's asset list
// again when the registry changes (its version moves), not on every step:
// a GPU reported by a gateway without a list is unknown until another
// gateway's list names it.
func TestKnownAssetsFollowRegistry(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 50 * time.Millisecond
	seed := sha256.Sum256([]byte("gw-a"))
	key := ed25519.NewKeyFromSeed(seed[:])
	other := registry.Gateway{ID: "gw-b", PublicKey: key.Public().(ed25519.PublicKey), Site: "s1", Assets: []string{"srv-b"}}
	own := registry.Gateway{ID: "gw-a", PublicKey: key.Public().(ed25519.PublicKey), Site: "s1"}
	r := &rig{t: t, dir: t.TempDir(), key: key, known: true, reg: registry.New(own, other)}
	r.open(cfg)
	t.Cleanup(r.close)
	now := time.Now().UTC().Add(-time.Hour)
	send := func(seq uint64, gpus ...string) uint64 {
		body := wire.Telemetry{Host: "srv-a"}
		for i, g := range gpus {
			body.GPUs = append(body.GPUs, wire.GPUSample{Asset: g, Index: i, UUID: "U-" + g, TempC: 50})
		}
		data, err := wire.Seal(key, "gw-a", seq, now.Add(time.Duration(seq)*time.Second), wire.KindTelemetry, body)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.in.Submit(ingest.Source{}, wire.Topic("gw-a", wire.KindTelemetry), data)
		if err != nil || !out.Accepted() {
			t.Fatalf("submit %d: %v %v", seq, out.Err, err)
		}
		return out.Pos
	}
	unknown := func(items []alert.Alert, asset string) bool {
		for _, a := range items {
			if a.Type == detect.TypeUnknownAsset && a.Asset == asset {
				return true
			}
		}
		return false
	}
	send(1, "srv-a.gpu0")
	r.waitAlerts("srv-a.gpu0 unknown", func(a []alert.Alert) bool { return unknown(a, "srv-a.gpu0") })

	own.Assets = []string{"srv-a", "srv-a.gpu0", "srv-a.gpu1"}
	if err := r.reg.Put(own); err != nil {
		t.Fatal(err)
	}
	pos := send(2, "srv-a.gpu0", "srv-a.gpu1")
	testsvc.Eventually(t, 10*time.Second, "the engine past the second message", func() bool {
		return r.svc.Engine().Stats.MessagePos.Load() >= pos
	})
	items, _, err := r.svc.Alerts().List(alert.Filter{}, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	if unknown(items, "srv-a.gpu1") {
		t.Errorf("srv-a.gpu1 raised unknown_asset after the registry named it: %+v", items)
	}
}

// TestCursorsStoredAtMostEvery: a step that raises nothing moves the
// cursors without a write of its own; they are stored once CursorEvery has
// passed, with the next alert (in its transaction), and when Run ends, so a
// restart reads on from the last message processed.
func TestCursorsStoredAtMostEvery(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 20 * time.Millisecond
	cfg.Engine.CursorEvery = time.Minute
	var clock atomic.Int64
	clock.Store(time.Now().Add(-time.Hour).UnixNano())
	r := &rig{t: t, dir: t.TempDir(), now: func() time.Time { return time.Unix(0, clock.Load()) }}
	seed := sha256.Sum256([]byte("gw-a"))
	r.key = ed25519.NewKeyFromSeed(seed[:])
	r.open(cfg)
	t.Cleanup(r.close)
	stored := func() uint64 {
		t.Helper()
		c, err := r.svc.Alerts().Cursor(cursorMessages)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	processed := func(pos uint64) {
		t.Helper()
		testsvc.Eventually(t, 10*time.Second, fmt.Sprintf("the engine past message %d", pos), func() bool { return r.svc.Engine().Stats.MessagePos.Load() >= pos })
	}
	readings := time.Now().UTC().Add(-2 * time.Hour)
	for seq := uint64(1); seq <= 3; seq++ {
		r.telemetry(seq, readings.Add(time.Duration(seq)*time.Second), 0)
	}
	processed(3)
	time.Sleep(5 * cfg.Engine.Poll) // steps on the poll, within CursorEvery
	if c := stored(); c != 0 {
		t.Errorf("stored message cursor after 3 messages that raised nothing = %d, want 0 (within cursor_every)", c)
	}
	clock.Add(int64(61 * time.Second))
	testsvc.Eventually(t, 10*time.Second, "the cursor stored once cursor_every passed", func() bool { return stored() == 3 })

	r.telemetry(4, readings.Add(4*time.Second), 1) // an XID: an alert
	items := r.waitAlerts("the XID alert", func(a []alert.Alert) bool { return len(a) == 1 })
	if c := stored(); c != 4 || items[0].Type != detect.TypeXID {
		t.Errorf("after the %s alert the stored cursor = %d, want 4 (stored with the alert)", items[0].Type, c)
	}
	r.telemetry(5, readings.Add(5*time.Second), 1) // the same XID count: nothing new
	processed(5)
	if c := stored(); c != 4 {
		t.Errorf("stored cursor after a message that raised nothing = %d, want 4", c)
	}
	r.close()
	r.open(cfg)
	if c := stored(); c != 5 {
		t.Errorf("stored cursor after Run ended = %d, want 5", c)
	}
	processed(5)
	time.Sleep(5 * cfg.Engine.Poll)
	if n := r.svc.Engine().Stats.Messages.Load(); n != 0 {
		t.Errorf("after the restart the engine read %d messages again, want 0", n)
	}
}

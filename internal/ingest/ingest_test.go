package ingest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"twinchain/internal/registry"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// rig is an ingest over a real store in a temporary directory.
type rig struct {
	t     testing.TB
	path  string
	store *twinstore.Store
	reg   *registry.Registry
	in    *Ingest
	stop  func()
	clock func() time.Time // the ingest's clock when set (else 1 ms per call)
}

func newRig(t testing.TB, cfg Config, gateways ...string) *rig {
	t.Helper()
	r := &rig{t: t, path: filepath.Join(t.TempDir(), "twins.db"), reg: registry.New()}
	for _, gw := range gateways {
		if err := r.reg.Put(registry.Gateway{ID: gw, PublicKey: testKey(gw).Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	r.open(cfg)
	t.Cleanup(r.close)
	return r
}

func (r *rig) open(cfg Config) {
	r.t.Helper()
	var err error
	if r.store, err = twinstore.Open(r.path, twinstore.Options{NoSync: true}); err != nil {
		r.t.Fatal(err)
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Nanosecond // the tests read observations from the store
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = time.Nanosecond // most tests submit one message at a time
	}
	var ticks atomic.Int64
	now := func() time.Time { return t0.Add(time.Hour + time.Duration(ticks.Add(1))*time.Millisecond) }
	if r.clock != nil {
		now = r.clock
	}
	if r.in, err = New(cfg, r.store, r.reg, slog.New(slog.NewTextHandler(io.Discard, nil)), now); err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.in.Run(ctx); err != nil {
			r.t.Errorf("Run: %v", err)
		}
	}()
	r.stop = func() { cancel(); <-done }
}

func (r *rig) close() {
	if r.stop != nil {
		r.stop()
		r.stop = nil
		r.store.Close()
	}
}

func (r *rig) reopen(cfg Config) {
	r.close()
	r.open(cfg)
}

func seal(t testing.TB, gw string, seq uint64, ts time.Time, kind wire.Kind, body any) []byte {
	t.Helper()
	b, err := wire.Seal(testKey(gw), gw, seq, ts, kind, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *rig) submit(gw string, kind wire.Kind, payload []byte) Outcome {
	r.t.Helper()
	out, err := r.in.Submit(Source{}, wire.Topic(gw, kind), payload)
	if err != nil {
		r.t.Fatalf("Submit: %v", err)
	}
	return out
}

func status(state string) wire.Status { return wire.Status{State: state, AgentVersion: "test"} }

// TestSequence walks one gateway's stream through every sequence case.
func TestSequence(t *testing.T) {
	const gw = "gw-a"
	r := newRig(t, Config{SeqWindow: 64}, gw)
	msg := func(seq uint64, variant int) []byte {
		return seal(t, gw, seq, t0.Add(time.Duration(seq)*time.Second+time.Duration(variant)), wire.KindStatus, status(wire.StateOnline))
	}
	steps := []struct {
		name    string
		seq     uint64
		variant int // 0: the original bytes; 1: other bytes with the same sequence number
		want    Reason
	}{
		{"first", 1, 0, ""},
		{"redelivered", 1, 0, ReasonDuplicate},
		{"same seq other bytes", 1, 1, ReasonReplay},
		{"jump makes a gap", 5, 0, ""},
		{"out of order fills the gap", 3, 0, ""},
		{"out of order redelivered", 3, 0, ReasonDuplicate},
		{"last of the gap", 4, 0, ""},
		{"jump beyond the window", 100, 0, ""},
		{"older than the window, never stored", 2, 0, ReasonReplay},
		{"older than the window, stored: duplicate", 3, 0, ReasonDuplicate},
		{"older than the window, stored, other bytes", 3, 1, ReasonReplay},
		{"inside the window below the highest", 60, 0, ""},
		{"next", 101, 0, ""},
	}
	for _, s := range steps {
		out := r.submit(gw, wire.KindStatus, msg(s.seq, s.variant))
		if out.Reason != s.want {
			t.Errorf("%s: Submit(seq %d) = %q (%v), want %q", s.name, s.seq, out.Reason, out.Err, s.want)
		}
	}
	st := r.in.Stats()
	if len(st.Gateways) != 1 || st.Gateways[0].LastSeq != 101 || st.Gateways[0].Gaps != 2 || st.Gateways[0].Accepted != 7 {
		t.Fatalf("Stats gateways = %+v, want last_seq 101, 2 gaps, 7 accepted", st.Gateways)
	}
	if st.Rejected[ReasonDuplicate] != 3 || st.Rejected[ReasonReplay] != 3 {
		t.Errorf("Stats rejected = %v, want 3 duplicates and 3 replays", st.Rejected)
	}
	events, err := r.store.AssetEvents(gw, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var gaps int
	for _, e := range events {
		if e.Type == twin.EventSequenceGap {
			gaps++
		}
	}
	if gaps != 2 {
		t.Errorf("sequence_gap events on %s = %d, want 2 (events %+v)", gw, gaps, events)
	}
	if got := r.store.LastPos(); got != 7 {
		t.Errorf("message log length = %d, want 7", got)
	}

	// After a restart the stored sequence numbers are still known, and the
	// twin's revisions continue.
	before, _ := r.store.Asset(gw)
	r.reopen(Config{SeqWindow: 64})
	for _, s := range []struct {
		seq  uint64
		want Reason
	}{{101, ReasonDuplicate}, {60, ReasonDuplicate}, {61, ""}, {102, ""}} {
		if out := r.submit(gw, wire.KindStatus, msg(s.seq, 0)); out.Reason != s.want {
			t.Errorf("after reopen: Submit(seq %d) = %q (%v), want %q", s.seq, out.Reason, out.Err, s.want)
		}
	}
	off := seal(t, gw, 103, t0.Add(200*time.Second), wire.KindStatus, status(wire.StateOffline))
	if out := r.submit(gw, wire.KindStatus, off); !out.Accepted() {
		t.Fatalf("offline status: %v", out.Err)
	}
	after, _ := r.store.Asset(gw)
	if after.Revision != before.Revision+1 || after.Health.State != gatewayOffline {
		t.Errorf("after reopen: gateway revision %d state %q, want %d and %q", after.Revision, after.Health.State, before.Revision+1, gatewayOffline)
	}
}

// TestLastWill: sequence 0 is the signed last will, deduplicated by time.
func TestLastWill(t *testing.T) {
	const gw = "gw-w"
	r := newRig(t, Config{}, gw)
	r.submit(gw, wire.KindStatus, seal(t, gw, 1, t0, wire.KindStatus, status(wire.StateOnline)))
	will := seal(t, gw, 0, t0.Add(time.Second), wire.KindStatus, status(wire.StateOffline))
	for i, want := range []Reason{"", ReasonDuplicate} {
		if out := r.submit(gw, wire.KindStatus, will); out.Reason != want {
			t.Errorf("will #%d: Submit = %q (%v), want %q", i+1, out.Reason, out.Err, want)
		}
	}
	older := seal(t, gw, 0, t0, wire.KindStatus, status(wire.StateOffline))
	if out := r.submit(gw, wire.KindStatus, older); out.Reason != ReasonReplay {
		t.Errorf("older will: Submit = %q, want %q", out.Reason, ReasonReplay)
	}
	onlineWill := seal(t, gw, 0, t0.Add(2*time.Second), wire.KindStatus, status(wire.StateOnline))
	if out := r.submit(gw, wire.KindStatus, onlineWill); out.Reason != ReasonMalformed {
		t.Errorf("online status with seq 0: Submit = %q, want %q", out.Reason, ReasonMalformed)
	}
	a, err := r.store.Asset(gw)
	if err != nil || a.Health.State != gatewayOffline {
		t.Errorf("gateway after will: state %q (%v), want %q", a.Health.State, err, gatewayOffline)
	}
}

// TestChecks: every rejection reason decided before the writer.
func TestChecks(t *testing.T) {
	const gw = "gw-c"
	r := newRig(t, Config{}, gw)
	listed := registryGateway("gw-l")
	listed.Assets = []string{"srv-l", "srv-l.gpu0"}
	if err := r.reg.Put(listed); err != nil {
		t.Fatal(err)
	}
	good := seal(t, gw, 1, t0, wire.KindStatus, status(wire.StateOnline))
	tampered := bytes.Replace(good, []byte(`"agent_version":"test"`), []byte(`"agent_version":"tesT"`), 1)
	forged, _ := wire.Seal(testKey("someone else"), gw, 2, t0, wire.KindStatus, status(wire.StateOnline))
	big := make([]byte, wire.MaxEnvelopeSize+1)
	for _, tc := range []struct {
		name    string
		topic   string
		payload []byte
		want    Reason
	}{
		{"unknown gateway", wire.Topic("gw-x", wire.KindStatus), seal(t, "gw-x", 1, t0, wire.KindStatus, status(wire.StateOnline)), ReasonUnknownGateway},
		{"tampered signature", wire.Topic(gw, wire.KindStatus), tampered, ReasonBadSignature},
		{"wrong key", wire.Topic(gw, wire.KindStatus), forged, ReasonBadSignature},
		{"not json", wire.Topic(gw, wire.KindStatus), []byte("{nope"), ReasonMalformed},
		{"oversize", wire.Topic(gw, wire.KindStatus), big, ReasonOversize},
		{"other gateway's topic", wire.Topic("gw-x", wire.KindStatus), good, ReasonTopicMismatch},
		{"other kind's topic", wire.Topic(gw, wire.KindGPS), good, ReasonTopicMismatch},
		{"bad topic", "twinchain/v1/gw/" + gw, good, ReasonTopicMismatch},
		{"future reading", wire.Topic(gw, wire.KindStatus), seal(t, gw, 3, t0.Add(48*time.Hour), wire.KindStatus, status(wire.StateOnline)), ReasonClockAhead},
		{"body of the wrong shape", wire.Topic(gw, wire.KindTelemetry), seal(t, gw, 4, t0, wire.KindTelemetry, map[string]any{"host": 7}), ReasonMalformed},
		{"unlisted gpu", wire.Topic("gw-l", wire.KindTelemetry), seal(t, "gw-l", 1, t0, wire.KindTelemetry, telemetry("srv-l", 2, 0)), ReasonUnboundAsset},
		{"unlisted host", wire.Topic("gw-l", wire.KindFirmware), seal(t, "gw-l", 2, t0, wire.KindFirmware, inventory("srv-x", 1, "1")), ReasonUnboundAsset},
		{"listed", wire.Topic("gw-l", wire.KindTelemetry), seal(t, "gw-l", 3, t0, wire.KindTelemetry, telemetry("srv-l", 1, 0)), ""},
		{"valid", wire.Topic(gw, wire.KindStatus), good, ""},
	} {
		out, err := r.in.Submit(Source{}, tc.topic, tc.payload)
		if err != nil || out.Reason != tc.want {
			t.Errorf("%s: Submit = %q, %v (%v), want %q", tc.name, out.Reason, err, out.Err, tc.want)
		}
	}
	st := r.in.Stats()
	for reason, want := range map[Reason]uint64{ReasonUnknownGateway: 1, ReasonBadSignature: 2, ReasonMalformed: 2, ReasonOversize: 1, ReasonTopicMismatch: 3, ReasonUnboundAsset: 2, ReasonClockAhead: 1} {
		if st.Rejected[reason] != want {
			t.Errorf("Stats.Rejected[%s] = %d, want %d", reason, st.Rejected[reason], want)
		}
	}
	if recent := r.in.Recent(t0); len(recent) != 12 {
		t.Errorf("Recent = %d rejections, want 12", len(recent))
	}
}

func inventory(host string, gpus int, vbios string) wire.Inventory {
	inv := wire.Inventory{Host: wire.HostInfo{Asset: host, Serial: "SN-" + host, RFIDTag: "E200" + host, BIOSVersion: "1.0"}}
	for i := range gpus {
		id := host + ".gpu" + string(rune('0'+i))
		inv.GPUs = append(inv.GPUs, wire.GPUIdentity{Asset: id, Index: i, UUID: "GPU-" + id, Serial: "S-" + id, VBIOS: vbios, Driver: "550"})
	}
	return inv
}

func telemetry(host string, gpus int, dbe uint64) wire.Telemetry {
	tel := wire.Telemetry{Host: host}
	for i := range gpus {
		tel.GPUs = append(tel.GPUs, wire.GPUSample{Asset: host + ".gpu" + string(rune('0'+i)), Index: i, TempC: 50, ECCDoubleBit: dbe})
	}
	return tel
}

// TestFold follows a host through inventory, telemetry, a firmware change,
// an RFID read, GPS moves and an out-of-order old sample.
func TestFold(t *testing.T) {
	const gw, host = "gw-f", "srv-f"
	r := newRig(t, Config{}, gw)
	seq := uint64(0)
	send := func(ts time.Time, kind wire.Kind, body any) {
		t.Helper()
		seq++
		if out := r.submit(gw, kind, seal(t, gw, seq, ts, kind, body)); !out.Accepted() {
			t.Fatalf("seq %d %s: %s %v", seq, kind, out.Reason, out.Err)
		}
	}
	send(t0, wire.KindFirmware, inventory(host, 2, "96.0"))
	for i := range 3 {
		send(t0.Add(time.Duration(i+1)*time.Second), wire.KindTelemetry, telemetry(host, 2, 0))
	}
	send(t0.Add(10*time.Second), wire.KindTelemetry, telemetry(host, 2, 1)) // a double-bit error
	send(t0.Add(5*time.Second), wire.KindTelemetry, telemetry(host, 2, 0))  // late, older sample
	send(t0.Add(11*time.Second), wire.KindFirmware, inventory(host, 2, "97.0"))
	send(t0.Add(12*time.Second), wire.KindRFID, wire.RFID{Reads: []wire.RFIDRead{{EPC: "E200" + host, Zone: "dock", ReadPoint: "door-1"}, {EPC: "E2FFFF", Zone: "dock", ReadPoint: "door-1"}}})
	send(t0.Add(13*time.Second), wire.KindGPS, wire.GPSFix{Lat: 52.5, Lon: 13.4, Quality: 1, FixTime: t0.Add(13 * time.Second)})
	send(t0.Add(14*time.Second), wire.KindGPS, wire.GPSFix{Lat: 52.50001, Lon: 13.4, Quality: 1, FixTime: t0.Add(14 * time.Second)}) // ~1 m
	send(t0.Add(15*time.Second), wire.KindGPS, wire.GPSFix{Lat: 52.501, Lon: 13.4, Quality: 1, FixTime: t0.Add(15 * time.Second)})   // ~111 m
	send(t0.Add(16*time.Second), wire.KindStatus, wire.Status{State: wire.StateOnline})                                              // the fix must outlive its message

	g, err := r.store.Asset(host + ".gpu1")
	if err != nil {
		t.Fatal(err)
	}
	if g.Health.Samples != 5 || g.Health.ECCDoubleBit != 1 || g.Health.State != twin.HealthCritical {
		t.Errorf("gpu1 health = samples %d dbe %d state %q, want 5, 1, critical", g.Health.Samples, g.Health.ECCDoubleBit, g.Health.State)
	}
	if g.Firmware.VBIOS != "97.0" || g.Identity.UUID != "GPU-"+host+".gpu1" || g.Parent != host || g.Gateway != gw || g.Site != "s1" {
		t.Errorf("gpu1 = %+v, want vbios 97.0, its uuid, parent %s, gateway %s, site s1", g, host, gw)
	}
	if !g.LastSeen.Equal(t0.Add(11 * time.Second)) {
		t.Errorf("gpu1 last seen %s, want %s (the late sample must not move it back)", g.LastSeen, t0.Add(11*time.Second))
	}
	events, err := r.store.AssetEvents(host+".gpu1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var types []twin.EventType
	for i, e := range events {
		types = append(types, e.Type)
		if e.Revision != uint64(i+1) {
			t.Errorf("gpu1 event %d revision %d, want %d", i, e.Revision, i+1)
		}
	}
	wantTypes := []twin.EventType{twin.EventRegistered, twin.EventHealthChanged, twin.EventHealthChanged, twin.EventFirmwareChanged}
	if len(types) != len(wantTypes) {
		t.Fatalf("gpu1 event types = %v, want %v", types, wantTypes)
	}
	for i := range wantTypes {
		if types[i] != wantTypes[i] {
			t.Errorf("gpu1 event types = %v, want %v", types, wantTypes)
			break
		}
	}
	folded, err := twin.Fold(events)
	if err != nil {
		t.Fatal(err)
	}
	if d := twin.Diff(&folded, &g); len(d) != 0 {
		t.Errorf("Fold(events) differs from the stored twin: %v", d)
	}
	h, _ := r.store.Asset(host)
	if h.Location.Zone != "dock" || h.Location.ReadPoint != "door-1" || h.Kind != twin.KindServer {
		t.Errorf("host location = %+v kind %s, want zone dock at door-1, server", h.Location, h.Kind)
	}
	if tag, err := r.store.Asset("tag-E2FFFF"); err == nil {
		t.Errorf("an unknown tag made an asset: %+v", tag)
	}
	if st := r.in.Stats(); st.UnknownTags != 1 {
		t.Errorf("Stats.UnknownTags = %d, want 1", st.UnknownTags)
	}
	gwTwin, _ := r.store.Asset(gw)
	gwEvents, _ := r.store.AssetEvents(gw, 0, 100)
	var moves int
	for _, e := range gwEvents {
		if e.Type == twin.EventLocationChanged {
			moves++
		}
	}
	if moves != 2 || gwTwin.Location.Lat != 52.501 || gwTwin.Location.GPS == nil || gwTwin.Location.GPS.Lat != 52.501 {
		t.Errorf("gateway gps: %d location events, lat %v, fix %+v; want 2 events (the 1 m move is not one), lat 52.501", moves, gwTwin.Location.Lat, gwTwin.Location.GPS)
	}
}

func TestSubmitAfterStop(t *testing.T) {
	r := newRig(t, Config{}, "gw-s")
	r.stop()
	r.stop = nil
	defer r.store.Close()
	_, err := r.in.Submit(Source{}, wire.Topic("gw-s", wire.KindStatus), seal(t, "gw-s", 1, t0, wire.KindStatus, status(wire.StateOnline)))
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Run ended = %v, want ErrClosed", err)
	}
}

func TestSubscribeWakes(t *testing.T) {
	r := newRig(t, Config{}, "gw-s")
	wake, cancel := r.in.Subscribe()
	defer cancel()
	r.submit("gw-s", wire.KindStatus, seal(t, "gw-s", 1, t0, wire.KindStatus, status(wire.StateOnline)))
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up after a commit")
	}
}

// TestReplayAfterCrash: observations and gateway stream states written only
// at checkpoints are rebuilt from the message log after a crash, exactly
// once, with no event; the sequence window still refuses what was stored.
func TestReplayAfterCrash(t *testing.T) {
	const gw, host = "gw-r", "srv-r"
	cfg := Config{CheckpointInterval: time.Hour}
	r := newRig(t, cfg, gw)
	r.in.skipFinalCheckpoint = true
	seq := uint64(1)
	r.submit(gw, wire.KindFirmware, seal(t, gw, seq, t0, wire.KindFirmware, inventory(host, 2, "96.0")))
	const samples = 25
	for i := range samples {
		seq++
		if out := r.submit(gw, wire.KindTelemetry, seal(t, gw, seq, t0.Add(time.Duration(i+1)*time.Second), wire.KindTelemetry, telemetry(host, 2, 0))); !out.Accepted() {
			t.Fatalf("telemetry %d: %s %v", i, out.Reason, out.Err)
		}
	}
	events := r.store.LastEventID()
	// Visible at once, before any checkpoint (published observations).
	if a, err := r.store.Asset(host + ".gpu0"); err != nil || a.Health.Samples != samples || !a.LastSeen.Equal(t0.Add(samples*time.Second)) || a.Health.Latest == nil {
		t.Fatalf("asset before a checkpoint = %+v (%v), want %d samples, last seen %s", a, err, samples, t0.Add(samples*time.Second))
	}
	r.stop() // like a crash: no final checkpoint
	r.stop = nil
	r.store.Close()
	raw, err := twinstore.Open(r.path, twinstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	stale, err := raw.Asset(host + ".gpu0")
	if err != nil {
		t.Fatal(err)
	}
	states, err := raw.GatewayStates()
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].Accepted >= seq || states[0].Pos == 0 {
		t.Fatalf("stored gateway states before replay = %+v, want one with fewer than %d accepted and its position (states wait for a checkpoint)", states, seq)
	}
	epoch := states[0].Epoch
	if n := indexed(t, raw, gw, epoch); n != states[0].Accepted {
		t.Fatalf("sequence-index entries before replay = %d, want %d: those of the messages the stored state counts (the rest wait with it)", n, states[0].Accepted)
	}
	raw.Close()
	if stale.Health.Samples >= samples {
		t.Fatalf("stored samples before replay = %d, want fewer than %d (observations wait for a checkpoint)", stale.Health.Samples, samples)
	}
	r.open(cfg)
	for _, id := range []string{host + ".gpu0", host + ".gpu1"} {
		a, ok := r.in.w.twins[id]
		if !ok || a.Health.Samples != samples || !a.LastSeen.Equal(t0.Add(samples*time.Second)) || a.Health.Latest == nil {
			t.Errorf("%s after replay = %+v, want %d samples, last seen %s", id, a, samples, t0.Add(samples*time.Second))
		}
	}
	if got := r.store.LastEventID(); got != events {
		t.Errorf("replay stored events: last event id %d, want %d", got, events)
	}
	if st := r.in.w.streams[gw].st; st.Accepted != seq || st.Highest != seq || st.Gaps != 0 || !st.LastSeen.Equal(t0.Add(samples*time.Second)) {
		t.Errorf("gateway state after replay = %+v, want %d accepted, highest %d, no gaps, last seen %s", st, seq, seq, t0.Add(samples*time.Second))
	}
	for _, old := range []uint64{seq, seq / 2} {
		if out := r.submit(gw, wire.KindTelemetry, seal(t, gw, old, t0.Add(time.Duration(old-1)*time.Second), wire.KindTelemetry, telemetry(host, 2, 0))); out.Reason != ReasonDuplicate {
			t.Errorf("seq %d again after replay = %q (%v), want duplicate", old, out.Reason, out.Err)
		}
	}
	if out := r.submit(gw, wire.KindTelemetry, seal(t, gw, seq+1, t0.Add(time.Duration(seq)*time.Second), wire.KindTelemetry, telemetry(host, 2, 0))); !out.Accepted() {
		t.Fatalf("next seq after replay: %s %v", out.Reason, out.Err)
	}
	if st := r.in.w.streams[gw].st; st.Accepted != seq+1 || st.Gaps != 0 {
		t.Errorf("gateway state after the next message = %+v, want %d accepted, no gaps", st, seq+1)
	}
	r.close() // a clean stop writes the checkpoint and every state
	raw, err = twinstore.Open(r.path, twinstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	states, err = raw.GatewayStates()
	if err != nil || len(states) != 1 || states[0].Accepted != seq+1 {
		t.Errorf("stored gateway states after a clean stop = %+v (%v), want %d accepted", states, err, seq+1)
	}
	if n := indexed(t, raw, gw, epoch); n != seq+1 {
		t.Errorf("sequence-index entries after a clean stop = %d, want %d", n, seq+1)
	}
	raw.Close()
	r.open(cfg)
	if a, err := r.store.Asset(host + ".gpu1"); err != nil || a.Health.Samples != samples+1 {
		t.Errorf("stored samples after a clean stop and a second replay = %d (%v), want %d", a.Health.Samples, err, samples+1)
	}
}

// indexed counts the sequence-index entries of gateway gw's epoch.
func indexed(t *testing.T, store *twinstore.Store, gw string, epoch uint64) uint64 {
	t.Helper()
	var n uint64
	if err := store.SeqsAbove(gw, epoch, 0, func(uint64) { n++ }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestChange: API changes go through the writer as events with the actor;
// invalid ones are refused, empty ones store nothing.
func TestChange(t *testing.T) {
	const gw, host = "gw-c", "srv-c"
	r := newRig(t, Config{}, gw)
	r.submit(gw, wire.KindFirmware, seal(t, gw, 1, t0, wire.KindFirmware, inventory(host, 1, "96.0")))
	quarantine := func(a *twin.Asset) error { a.Custody.Status = twin.StatusQuarantined; return nil }
	ctx := context.Background()
	for _, tc := range []struct {
		asset  string
		mutate func(*twin.Asset) error
		want   error
	}{
		{"nope", quarantine, ErrNoAsset},
		{host, func(a *twin.Asset) error { a.Custody.Status = "lost"; return nil }, ErrInvalidChange},
		{host, func(a *twin.Asset) error { a.Revision = 99; return nil }, ErrInvalidChange},
		{host, nil, ErrInvalidChange},
	} {
		if _, err := r.in.Change(ctx, tc.asset, "alice", "", tc.mutate); !errors.Is(err, tc.want) {
			t.Errorf("Change(%s) = %v, want %v", tc.asset, err, tc.want)
		}
	}
	if e, err := r.in.Change(ctx, host, "alice", "", func(a *twin.Asset) error { return nil }); err != nil || e.ID != 0 {
		t.Errorf("Change(nothing) = %+v, %v; want no event and no error", e, err)
	}
	before, _ := r.store.Asset(host)
	e, err := r.in.Change(ctx, host, "alice", "alert 7", quarantine)
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != twin.EventCustodyChanged || e.Revision != before.Revision+1 || e.Source.Actor != "alice" || e.Note != "alert 7" || e.ID != r.store.LastEventID() {
		t.Errorf("Change event = %+v, want the stored custody_changed at revision %d by alice with the note", e, before.Revision+1)
	}
	after, _ := r.store.Asset(host)
	if after.Custody.Status != twin.StatusQuarantined || after.Revision != e.Revision {
		t.Errorf("twin after Change = status %q revision %d, want quarantined at %d", after.Custody.Status, after.Revision, e.Revision)
	}
	r.submit(gw, wire.KindTelemetry, seal(t, gw, 2, t0.Add(time.Second), wire.KindTelemetry, telemetry(host, 1, 0)))
	if a, _ := r.store.Asset(host); a.Custody.Status != twin.StatusQuarantined {
		t.Errorf("custody after telemetry = %q, want quarantined", a.Custody.Status)
	}
}

// TestGatewayIsHost: an agent whose gateway id is also its host's asset id
// keeps one twin of kind gateway, without a placement event per message.
func TestGatewayIsHost(t *testing.T) {
	const gw = "gw-h"
	r := newRig(t, Config{}, gw)
	r.submit(gw, wire.KindFirmware, seal(t, gw, 1, t0, wire.KindFirmware, inventory(gw, 1, "96.0")))
	for i := range 3 {
		r.submit(gw, wire.KindTelemetry, seal(t, gw, uint64(i+2), t0.Add(time.Duration(i+1)*time.Second), wire.KindTelemetry, telemetry(gw, 1, 0)))
	}
	a, err := r.store.Asset(gw)
	if err != nil || a.Kind != twin.KindGateway {
		t.Fatalf("twin %s = kind %q (%v), want gateway", gw, a.Kind, err)
	}
	events, _ := r.store.AssetEvents(gw, 0, 100)
	if len(events) > 2 {
		t.Errorf("%s has %d events after 4 messages, want at most 2 (registered, inventory): %+v", gw, len(events), events)
	}
	if g, _ := r.store.Asset(gw + ".gpu0"); g.Parent != gw || g.Health.Samples != 3 {
		t.Errorf("gpu0 parent %q samples %d, want %s and 3", g.Parent, g.Health.Samples, gw)
	}
}

// TestRejectionLogRateLimit: a gateway's reason is logged once a minute,
// with the number of rejections not logged since.
func TestRejectionLogRateLimit(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var s stats
	s.init(4)
	bad := rej(ReasonBadSignature, "gw-a", 1, errors.New("bad signature"))
	for i := range 3 {
		s.reject(log, t0.Add(time.Duration(i)*time.Second), bad)
	}
	s.reject(log, t0.Add(time.Second), rej(ReasonReplay, "gw-a", 2, errors.New("old")))
	s.reject(log, t0.Add(2*time.Second), rej(ReasonBadSignature, "gw-b", 1, errors.New("bad signature")))
	s.reject(log, t0.Add(61*time.Second), bad)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("logged %d lines, want 4 (gw-a bad_signature twice a minute apart, gw-a replay, gw-b):\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[3], "gateway=gw-a") || !strings.Contains(lines[3], "suppressed_since_last_log=2") {
		t.Errorf("last line = %q, want gw-a with 2 suppressed", lines[3])
	}
	if s.rejected[ReasonBadSignature] != 5 || len(s.recent) != 4 {
		t.Errorf("counted %d bad signatures, kept %d recent; want 5 and the ring's 4", s.rejected[ReasonBadSignature], len(s.recent))
	}
}

// TestStoreFailure: when the store cannot commit (and the state cannot be
// reloaded), Submit reports an error for every message, so none is
// acknowledged, and the failures are counted.
func TestStoreFailure(t *testing.T) {
	const gw = "gw-d"
	r := newRig(t, Config{}, gw)
	r.submit(gw, wire.KindStatus, seal(t, gw, 1, t0, wire.KindStatus, status(wire.StateOnline)))
	r.store.Close()
	for seq := uint64(2); seq <= 3; seq++ {
		if _, err := r.in.Submit(Source{}, wire.Topic(gw, wire.KindStatus), seal(t, gw, seq, t0, wire.KindStatus, status(wire.StateOnline))); err == nil {
			t.Errorf("Submit(seq %d) with the store closed = nil error, want an error", seq)
		}
	}
	if st := r.in.Stats(); st.CommitFailures != 2 || st.Accepted != 1 {
		t.Errorf("stats = %d commit failures, %d accepted; want 2 and 1", st.CommitFailures, st.Accepted)
	}
}

// TestAgentStatus: the figures of the newest numbered status are kept per
// gateway and survive a restart; a grown dropped count is recorded as one
// sequence_gap event per increase, not per heartbeat.
func TestAgentStatus(t *testing.T) {
	const gw = "gw-a"
	r := newRig(t, Config{}, gw)
	drops := func() []twin.Event {
		t.Helper()
		events, err := r.store.AssetEvents(gw, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var out []twin.Event
		for _, e := range events {
			if e.Type == twin.EventSequenceGap && strings.HasPrefix(e.Note, "dropped by the agent") {
				out = append(out, e)
			}
		}
		return out
	}
	steps := []struct {
		name      string
		seq       uint64
		at        int // seconds after t0
		st        wire.Status
		want      Reason
		wantQueue int
		wantDrop  uint64
		wantSeqs  [2]uint64
		wantTime  int
		wantNotes []string // every agent-drop note so far
	}{
		{"first heartbeat", 1, 1, wire.Status{State: wire.StateOnline, AgentVersion: "v1", QueueDepth: 3},
			"", 3, 0, [2]uint64{}, 1, nil},
		{"drops reported", 2, 2, wire.Status{State: wire.StateOnline, AgentVersion: "v1", QueueDepth: 900, Dropped: 5, DroppedSeqs: []uint64{10, 14}},
			"", 900, 5, [2]uint64{10, 14}, 2, []string{"dropped by the agent: 5 readings, newest dropped seqs 10..14"}},
		{"same count again", 3, 3, wire.Status{State: wire.StateOnline, AgentVersion: "v1", QueueDepth: 40, Dropped: 5, DroppedSeqs: []uint64{10, 14}},
			"", 40, 5, [2]uint64{10, 14}, 3, []string{"dropped by the agent: 5 readings, newest dropped seqs 10..14"}},
		{"older status arrives late", 4, 0, wire.Status{State: wire.StateOnline, AgentVersion: "v0", QueueDepth: 7, Dropped: 9, DroppedSeqs: []uint64{1, 9}},
			"", 40, 5, [2]uint64{10, 14}, 3, []string{"dropped by the agent: 5 readings, newest dropped seqs 10..14"}},
		{"more drops", 5, 5, wire.Status{State: wire.StateOnline, AgentVersion: "v2", QueueDepth: 1000, Dropped: 8, DroppedSeqs: []uint64{30, 32}},
			"", 1000, 8, [2]uint64{30, 32}, 5, []string{"dropped by the agent: 5 readings, newest dropped seqs 10..14", "dropped by the agent: 3 readings, newest dropped seqs 30..32"}},
		{"bad dropped range", 6, 6, wire.Status{State: wire.StateOnline, Dropped: 9, DroppedSeqs: []uint64{40, 39}},
			ReasonMalformed, 1000, 8, [2]uint64{30, 32}, 5, []string{"dropped by the agent: 5 readings, newest dropped seqs 10..14", "dropped by the agent: 3 readings, newest dropped seqs 30..32"}},
		{"negative queue depth", 7, 7, wire.Status{State: wire.StateOnline, QueueDepth: -1},
			ReasonMalformed, 1000, 8, [2]uint64{30, 32}, 5, []string{"dropped by the agent: 5 readings, newest dropped seqs 10..14", "dropped by the agent: 3 readings, newest dropped seqs 30..32"}},
	}
	check := func(when string, wantQueue int, wantDrop uint64, wantSeqs [2]uint64, wantTime int, wantNotes []string, version string) {
		t.Helper()
		st := r.in.Stats()
		if len(st.Gateways) != 1 {
			t.Fatalf("%s: Stats gateways = %+v, want 1", when, st.Gateways)
		}
		g := st.Gateways[0]
		if g.QueueDepth != wantQueue || g.Dropped != wantDrop || g.DroppedSeqs != wantSeqs || !g.StatusTime.Equal(t0.Add(time.Duration(wantTime)*time.Second)) || g.AgentVersion != version {
			t.Errorf("%s: Stats gateway = queue %d dropped %d seqs %v time %v version %q, want %d %d %v %v %q", when,
				g.QueueDepth, g.Dropped, g.DroppedSeqs, g.StatusTime, g.AgentVersion, wantQueue, wantDrop, wantSeqs, t0.Add(time.Duration(wantTime)*time.Second), version)
		}
		var notes []string
		for _, e := range drops() {
			notes = append(notes, e.Note)
		}
		if strings.Join(notes, "|") != strings.Join(wantNotes, "|") {
			t.Errorf("%s: agent drop events = %q, want %q", when, notes, wantNotes)
		}
	}
	version := ""
	for _, s := range steps {
		out := r.submit(gw, wire.KindStatus, seal(t, gw, s.seq, t0.Add(time.Duration(s.at)*time.Second), wire.KindStatus, s.st))
		if out.Reason != s.want {
			t.Errorf("%s: Submit = %q (%v), want %q", s.name, out.Reason, out.Err, s.want)
		}
		if s.want == "" && s.at == s.wantTime {
			version = s.st.AgentVersion
		}
		check(s.name, s.wantQueue, s.wantDrop, s.wantSeqs, s.wantTime, s.wantNotes, version)
	}
	last := steps[len(steps)-1]
	r.reopen(Config{})
	check("after reopen", last.wantQueue, last.wantDrop, last.wantSeqs, last.wantTime, last.wantNotes, version)
	// The kept count is the baseline after the restart: the same count is no
	// new event, a larger one is.
	r.submit(gw, wire.KindStatus, seal(t, gw, 8, t0.Add(8*time.Second), wire.KindStatus, wire.Status{State: wire.StateOnline, AgentVersion: "v2", Dropped: 8, DroppedSeqs: []uint64{30, 32}}))
	check("same count after reopen", 0, 8, [2]uint64{30, 32}, 8, last.wantNotes, "v2")
	r.submit(gw, wire.KindStatus, seal(t, gw, 9, t0.Add(9*time.Second), wire.KindStatus, wire.Status{State: wire.StateOnline, AgentVersion: "v2", Dropped: 10, DroppedSeqs: []uint64{50, 51}}))
	check("more after reopen", 0, 10, [2]uint64{50, 51}, 9, append(last.wantNotes[:2:2], "dropped by the agent: 2 readings, newest dropped seqs 50..51"), "v2")
}

// TestCheckpointSpread: observations are written CheckpointInterval after
// they changed, a share per commit, not every twin at once; the checkpoint
// is the message before the oldest unwritten change, and a clean stop
// writes the rest.
func TestCheckpointSpread(t *testing.T) {
	var clock atomic.Int64 // seconds after t0+1h
	cfg := Config{CheckpointInterval: 10 * time.Second}
	r := &rig{t: t, path: filepath.Join(t.TempDir(), "twins.db"), reg: registry.New(),
		clock: func() time.Time { return t0.Add(time.Hour + time.Duration(clock.Load())*time.Second) }}
	for _, gw := range []string{"gw-a", "gw-b", "gw-c"} {
		if err := r.reg.Put(registry.Gateway{ID: gw, PublicKey: testKey(gw).Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	r.open(cfg)
	t.Cleanup(r.close)
	first, last := map[string]uint64{}, map[string]uint64{} // each gateway's two telemetry messages
	send := func(gw string, at int64) {
		t.Helper()
		clock.Store(at)
		host := "srv-" + gw
		r.submit(gw, wire.KindFirmware, seal(t, gw, 1, t0, wire.KindFirmware, inventory(host, 2, "96.0")))
		// The first sample sets the health state (an event, written with
		// its batch); the second is an observation only.
		for seq := uint64(2); seq <= 3; seq++ {
			out := r.submit(gw, wire.KindTelemetry, seal(t, gw, seq, t0.Add(time.Duration(at)*time.Second+time.Duration(seq)*time.Millisecond), wire.KindTelemetry, telemetry(host, 2, 0)))
			if !out.Accepted() {
				t.Fatalf("%s at %ds: %s %v", gw, at, out.Reason, out.Err)
			}
			if first[gw] == 0 {
				first[gw] = out.Pos
			}
			last[gw] = out.Pos
		}
	}
	stored := func() map[string]uint64 {
		t.Helper()
		got := map[string]uint64{}
		if err := r.store.ForEachTwin(func(a *twin.Asset, pos uint64) error { got[a.ID] = pos; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	send("gw-a", 1) // gw-a's GPUs observed at 1 s
	send("gw-b", 6) // gw-b's at 6 s
	send("gw-c", 12)
	got := stored()
	if got["srv-gw-a.gpu0"] < last["gw-a"] {
		t.Errorf("gw-a's GPU stored through %d at 12 s, want its observation of 1 s (%d) written", got["srv-gw-a.gpu0"], last["gw-a"])
	}
	if got["srv-gw-b.gpu0"] >= last["gw-b"] {
		t.Errorf("gw-b's GPU stored through %d at 12 s, want its observation of 6 s (%d) not written yet", got["srv-gw-b.gpu0"], last["gw-b"])
	}
	// The host's last seen is an observation of the first sample already.
	if cp, err := r.store.Checkpoint(); err != nil || cp != first["gw-b"]-1 {
		t.Errorf("checkpoint = %d (%v), want %d: before gw-b's oldest unwritten observation", cp, err, first["gw-b"]-1)
	}
	if a, err := r.store.Asset("srv-gw-b.gpu0"); err != nil || !a.LastSeen.Equal(t0.Add(6*time.Second+3*time.Millisecond)) {
		t.Errorf("gw-b's GPU read = last seen %s (%v), want the unwritten 6 s observation", a.LastSeen, err)
	}
	r.close()
	r.open(cfg)
	got = stored()
	for _, gw := range []string{"gw-a", "gw-b"} {
		for _, id := range []string{"srv-" + gw + ".gpu0", "srv-" + gw + ".gpu1"} {
			if got[id] < last[gw] {
				t.Errorf("%s stored through %d after a clean stop, want at least %d", id, got[id], last[gw])
			}
		}
	}
}

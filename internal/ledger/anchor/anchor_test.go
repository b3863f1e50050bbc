package anchor

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

const gw = "gw-srv-s1-001"

var (
	gwKey      = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x11}, 32))
	serviceKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x22}, 32))
)

// flaky is the real embedded ledger with an outage switch: while down is
// set every call fails with ErrUnavailable, as a Fabric peer that cannot be
// reached does. (A fault injector around the real ledger, not a stand-in.)
type flaky struct {
	ledger.Ledger
	down atomic.Bool
}

func (f *flaky) SubmitAnchors(ctx context.Context, in []core.AnchorInput) ([]core.Anchor, error) {
	if f.down.Load() {
		return nil, fmt.Errorf("peer away: %w", ledger.ErrUnavailable)
	}
	return f.Ledger.SubmitAnchors(ctx, in)
}

func (f *flaky) RecordEvidence(ctx context.Context, in core.EvidenceInput) (core.Evidence, error) {
	if f.down.Load() {
		return core.Evidence{}, fmt.Errorf("peer away: %w", ledger.ErrUnavailable)
	}
	return f.Ledger.RecordEvidence(ctx, in)
}

// rig is a real ingest over a real store, a real event tree and the real
// embedded ledger, with an anchorer over them.
type rig struct {
	t      testing.TB
	dir    string
	store  *twinstore.Store
	reg    *registry.Registry
	in     *ingest.Ingest
	tree   *eventtree.Tree
	led    *flaky
	fl     *fileledger.Ledger
	a      *Anchorer
	seq    uint64
	stopIn func()
	stopA  func()
}

func newRig(t *testing.T, cfg Config) *rig { return newRigTB(t, cfg) }

func newRigTB(t testing.TB, cfg Config) *rig { return newRigOn(t, cfg, nil) }

// newRigOn is newRigTB anchoring on led (nil: the embedded ledger).
func newRigOn(t testing.TB, cfg Config, led ledger.Ledger) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), reg: registry.New()}
	if err := r.reg.Put(registry.Gateway{ID: gw, PublicKey: gwKey.Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.store, err = twinstore.Open(filepath.Join(r.dir, "twins.db"), twinstore.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if r.in, err = ingest.New(ingest.Config{}, r.store, r.reg, log, time.Now); err != nil {
		t.Fatal(err)
	}
	r.stopIn = run(t, r.in.Run)
	if led == nil {
		c, fl, err := fileledger.OpenLedger(fileledger.Options{Dir: filepath.Join(r.dir, "ledger"), Key: serviceKey, Org: "Org1MSP"})
		if err != nil {
			t.Fatal(err)
		}
		r.fl, led = fl, c
	}
	r.led = &flaky{Ledger: led}
	r.startAnchorer(cfg)
	t.Cleanup(func() {
		r.stopAnchorer()
		r.stopIn()
		r.store.Close()
		r.led.Close()
	})
	return r
}

func run(t testing.TB, f func(context.Context) error) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	return func() { cancel(); <-done }
}

func (r *rig) startAnchorer(cfg Config) {
	var err error
	if r.tree, err = eventtree.Open(filepath.Join(r.dir, "events"), eventtree.Options{}); err != nil {
		r.t.Fatal(err)
	}
	r.a, err = Open(cfg, filepath.Join(r.dir, "anchor.db"), Deps{Events: r.store, Wake: r.in, Gateways: r.reg, Tree: r.tree, Ledger: r.led, Key: serviceKey})
	if err != nil {
		r.t.Fatal(err)
	}
	r.stopA = run(r.t, r.a.Run)
}

func (r *rig) stopAnchorer() {
	if r.stopA != nil {
		r.stopA()
		r.stopA = nil
		r.a.Close()
		r.tree.Close()
	}
}

// inventory sends a signed firmware message with two GPUs through ingest.
func (r *rig) inventory(uuid1, vbios0 string) {
	r.t.Helper()
	inv := wire.Inventory{Host: wire.HostInfo{Asset: "srv-s1-001", Serial: "HOST-1"}, GPUs: []wire.GPUIdentity{
		{Asset: "srv-s1-001.gpu0", Index: 0, UUID: "GPU-a0", Serial: "S0", PCIBusID: "0000:01:00.0", VBIOS: vbios0, Driver: "550.54"},
		{Asset: "srv-s1-001.gpu1", Index: 1, UUID: uuid1, Serial: "S1", PCIBusID: "0000:02:00.0", VBIOS: "96.00.89.00.01", Driver: "550.54"},
	}}
	r.send(wire.KindFirmware, inv)
}

// send seals body as the gateway's next message and submits it to ingest.
func (r *rig) send(kind wire.Kind, body any) {
	r.t.Helper()
	r.seq++
	raw, err := wire.Seal(gwKey, gw, r.seq, time.Now(), kind, body)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.in.Submit(ingest.Source{}, wire.Topic(gw, kind), raw); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) waitAnchored(what string) {
	r.t.Helper()
	anchored := false
	defer func() {
		if !anchored {
			r.t.Logf("%s: anchorer %+v, event log at %d", what, r.a.Stats(), r.store.LastEventID())
		}
	}()
	testsvc.Eventually(r.t, 20*time.Second, "everything anchored "+what, func() bool {
		st := r.a.Stats()
		anchored = st.AnchoredTo == r.store.LastEventID() && st.PendingBatches == 0 && st.PendingEvidence == 0
		return anchored
	})
}

var svc = ledgertest.As(core.RoleAuditor)

func TestAnchorsEventsAndEvidence(t *testing.T) {
	r := newRig(t, Config{Interval: 30 * time.Millisecond, MaxBatch: 5})
	r.inventory("GPU-b1", "96.00.89.00.01") // registers host and GPUs
	for i := 0; i < 6; i++ {
		r.inventory("GPU-b1", fmt.Sprintf("96.00.89.00.%02d", 10+i)) // firmware changes on gpu0
	}
	r.inventory("GPU-SWAPPED", "96.00.89.00.15") // gpu1's UUID changes: a swap
	r.waitAnchored("first")
	last := r.store.LastEventID()
	if last < 9 {
		t.Fatalf("event log holds %d events, want at least 9", last)
	}
	// Every event is covered by exactly one anchor and the anchors chain.
	evs, err := r.store.EventsAfter(0, int(last))
	if err != nil {
		t.Fatal(err)
	}
	prev, seq := "", uint64(0)
	for id := uint64(1); id <= last; {
		a, err := r.led.AnchorForEvent(svc, id)
		if err != nil {
			t.Fatalf("AnchorForEvent(%d): %v", id, err)
		}
		if a.FirstEvent != id || a.Prev != prev || a.Seq != seq+1 || a.Size > 5 {
			t.Errorf("anchor for event %d = seq %d events %d..%d prev %q, want seq %d from %d after %q, at most 5 events", id, a.Seq, a.FirstEvent, a.LastEvent, a.Prev, seq+1, id, prev)
		}
		prev, seq, id = a.Hash, a.Seq, a.LastEvent+1
	}
	// The tree's leaves are the store's events, and bundles verify.
	x := &proofbundle.Exporter{Tree: r.tree, Anchors: auditorAnchors{r.led}, Blocks: r.fl, Key: serviceKey.Public().(ed25519.PublicKey)}
	for _, e := range evs {
		want, _ := json.Marshal(e)
		b, err := x.Event(context.Background(), e.ID)
		if err != nil {
			t.Fatalf("bundle of event %d: %v", e.ID, err)
		}
		if !bytes.Equal(b.Event.Leaf, want) {
			t.Errorf("leaf of event %d = %s, want the store's %s", e.ID, b.Event.Leaf, want)
		}
		if rep := proofbundle.Verify(b, serviceKey.Public().(ed25519.PublicKey)); !rep.OK() {
			t.Errorf("bundle of event %d does not verify: %+v", e.ID, rep.Failed())
		}
	}
	// Hardware evidence: six firmware changes on gpu0 and the swap on gpu1,
	// each with the envelope the gateway signed.
	fw, err := r.led.ListEvidence(svc, "srv-s1-001.gpu0")
	if err != nil {
		t.Fatal(err)
	}
	if len(fw) != 6 || fw[0].Kind != core.EvidenceFirmware || fw[0].Gateway != gw || fw[0].Seq != 2 {
		t.Errorf("gpu0 evidence = %d records (first %+v), want 6 firmware records from %s starting at seq 2", len(fw), first(fw), gw)
	}
	sw, err := r.led.ListEvidence(svc, "srv-s1-001.gpu1")
	if err != nil {
		t.Fatal(err)
	}
	if len(sw) != 1 || sw[0].Kind != core.EvidenceSwap || sw[0].Seq != 8 {
		t.Errorf("gpu1 evidence = %+v, want one swap at seq 8", sw)
	}
	if err := r.fl.Verify(); err != nil {
		t.Errorf("ledger Verify() = %v", err)
	}
	if err := r.tree.VerifyAll(serviceKey.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("tree VerifyAll() = %v", err)
	}
}

func first(ev []core.Evidence) any {
	if len(ev) == 0 {
		return nil
	}
	return ev[0]
}

type auditorAnchors struct{ l ledger.Ledger }

func (a auditorAnchors) AnchorForEvent(ctx context.Context, id uint64) (core.Anchor, error) {
	return a.l.AnchorForEvent(svc, id)
}

func TestLedgerOutageAndRestart(t *testing.T) {
	r := newRig(t, Config{Interval: 20 * time.Millisecond, MaxBatch: 3, RetryMax: 50 * time.Millisecond})
	r.inventory("GPU-b1", "v0")
	r.waitAnchored("before the outage")
	before := r.a.Stats().AnchoredTo
	r.led.down.Store(true)
	for i := 1; i <= 8; i++ {
		r.inventory("GPU-b1", fmt.Sprintf("v%d", i))
	}
	// Ingest went on; batches wait in the queue.
	testsvc.Eventually(t, 10*time.Second, "batches to queue during the outage", func() bool {
		return r.a.Stats().PendingBatches >= 2 && r.tree.Size() == r.store.LastEventID()
	})
	if st := r.a.Stats(); st.LedgerErrors == 0 {
		t.Errorf("Stats during outage = %+v, want ledger errors counted", st)
	}
	// A restart while the ledger is still away keeps the queue.
	r.stopAnchorer()
	r.inventory("GPU-b1", "v9")
	r.startAnchorer(Config{Interval: 20 * time.Millisecond, MaxBatch: 3, RetryMax: 50 * time.Millisecond})
	if got := r.a.Stats().AnchoredTo; got != before || before == 0 {
		t.Errorf("Stats().AnchoredTo after a restart = %d, want %d (what the last run anchored)", got, before)
	}
	r.led.down.Store(false)
	r.waitAnchored("after the outage")
	head, err := r.led.AnchorHead(svc)
	if err != nil {
		t.Fatal(err)
	}
	if head.LastEvent != r.store.LastEventID() {
		t.Errorf("anchor head ends at event %d, want %d", head.LastEvent, r.store.LastEventID())
	}
	// In order: every anchor starts right after the one before.
	for s := uint64(2); s <= head.Seq; s++ {
		a, _ := r.led.GetAnchor(svc, s)
		p, _ := r.led.GetAnchor(svc, s-1)
		if a.FirstEvent != p.LastEvent+1 || a.Prev != p.Hash {
			t.Errorf("anchor %d starts at %d after anchor %d ending at %d", s, a.FirstEvent, s-1, p.LastEvent)
		}
	}
	ev, _ := r.led.ListEvidence(svc, "srv-s1-001.gpu0")
	if len(ev) != 9 {
		t.Errorf("gpu0 evidence after the outage = %d records, want 9", len(ev))
	}
}

func TestCrashBetweenTreeAndQueue(t *testing.T) {
	r := newRig(t, Config{Interval: time.Hour, MaxBatch: 1000})
	r.stopAnchorer()
	r.inventory("GPU-b1", "v0")
	r.inventory("GPU-b1", "v1") // a firmware change: evidence
	// Append the events to the tree as a batcher would, then "crash" before
	// the batch reaches the queue.
	tree, err := eventtree.Open(filepath.Join(r.dir, "events"), eventtree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := r.store.EventsAfter(0, 100)
	for _, e := range evs {
		b, _ := json.Marshal(e)
		tree.Append(b)
	}
	tree.Close()
	r.startAnchorer(Config{Interval: 20 * time.Millisecond})
	r.waitAnchored("after recovery")
	if got := r.a.Stats().Batches; got != 1 {
		t.Errorf("batches after recovery = %d, want the 1 recovered batch", got)
	}
	if ev, _ := r.led.ListEvidence(svc, "srv-s1-001.gpu0"); len(ev) != 1 {
		t.Errorf("evidence after recovery = %d records, want the firmware change", len(ev))
	}
}

func TestFingerprintHash(t *testing.T) {
	r := newRig(t, Config{Interval: 20 * time.Millisecond})
	r.inventory("GPU-b1", "v0")
	r.inventory("GPU-b1", "v1")
	r.waitAnchored("fingerprint")
	a, err := r.led.GetAsset(svc, "srv-s1-001.gpu0")
	if err != nil {
		t.Fatalf("gpu0 not registered on the ledger by the evidence path: %v", err)
	}
	g, _ := r.store.Asset("srv-s1-001.gpu0")
	b, _ := json.Marshal(g.Identity)
	sum := sha256.Sum256(b)
	if a.FingerprintHash != fmt.Sprintf("%x", sum) {
		t.Errorf("ledger fingerprint of gpu0 = %s, want SHA-256 of its identity %x", a.FingerprintHash, sum)
	}
	// Every asset is registered at its first event, with the fingerprint it
	// had then: gpu1's is its identity before the swap.
	r.inventory("GPU-SWAPPED", "v1")
	r.waitAnchored("swap")
	host, err := r.led.GetAsset(svc, "srv-s1-001")
	if err != nil || host.Kind != "server" {
		t.Errorf("host on the ledger = %+v, %v, want a server", host, err)
	}
	g1, err := r.led.GetAsset(svc, "srv-s1-001.gpu1")
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := r.store.AssetEvents("srv-s1-001.gpu1", 0, 1)
	first, _ := twin.Apply(twin.Asset{}, evs[0])
	now, _ := r.store.Asset("srv-s1-001.gpu1")
	if g1.FingerprintHash != FingerprintHash(&first.Identity) || g1.FingerprintHash == FingerprintHash(&now.Identity) {
		t.Errorf("gpu1 ledger fingerprint = %s, want its first identity's %s (not the swapped %s)", g1.FingerprintHash, FingerprintHash(&first.Identity), FingerprintHash(&now.Identity))
	}
	if st := r.a.Stats(); st.Registered < 3 || st.EvidenceDropped != 0 {
		t.Errorf("Stats = %+v, want at least host and two GPUs registered and nothing dropped", st)
	}
}

// TestMessageCursorFollowsQuietLog: messages that make no event (a steady
// fleet's telemetry) still move the evidence scan's message cursor up to
// the log's end, so retention can remove them (stop 37's bench: with
// retention on, twins.db grew as fast as without, held at the position of
// the last event).
func TestMessageCursorFollowsQuietLog(t *testing.T) {
	r := newRig(t, Config{Interval: 20 * time.Millisecond})
	r.inventory("GPU-b1", "v0")
	r.telemetry(0, 0, 0)
	r.waitAnchored("first")
	events := r.store.LastEventID()
	for range 20 {
		r.telemetry(0, 0, 0)
	}
	testsvc.Eventually(t, 10*time.Second, "the message cursor at the log's end", func() bool {
		return r.store.LastPos() >= 22 && r.a.MessageCursor() == r.store.LastPos()
	})
	if got := r.store.LastEventID(); got != events {
		t.Errorf("the unchanged telemetry made events %d..%d: the test wants messages that make none", events+1, got)
	}
}

// telemetry sends a signed telemetry message for gpu0 through ingest.
func (r *rig) telemetry(xid int, xids, dbe uint64) {
	r.t.Helper()
	tel := wire.Telemetry{Host: "srv-s1-001", GPUs: []wire.GPUSample{{Asset: "srv-s1-001.gpu0", UUID: "GPU-a0", LastXID: xid, XIDCount: xids, ECCDoubleBit: dbe}}}
	r.send(wire.KindTelemetry, tel)
}

func TestHealthEvidence(t *testing.T) {
	r := newRig(t, Config{Interval: 20 * time.Millisecond})
	r.inventory("GPU-b1", "v0")
	r.telemetry(0, 0, 0)
	r.telemetry(13, 1, 0) // a new XID
	r.telemetry(48, 2, 1) // another XID and a double-bit ECC error in one message
	r.telemetry(48, 2, 1) // nothing new
	r.waitAnchored("health")
	ev, err := r.led.ListEvidence(svc, "srv-s1-001.gpu0")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ev {
		got = append(got, fmt.Sprintf("%s@%d", e.Kind, e.Seq))
	}
	// seq 1 inventory, 2 first telemetry, 3 xid, 4 xid+ecc.
	if want := "[xid@3 ecc_dbe@4 xid@4]"; fmt.Sprint(got) != want {
		t.Errorf("gpu0 evidence = %v, want %s", got, want)
	}
	if st := r.a.Stats(); st.EvidenceDropped != 0 {
		t.Errorf("Stats = %+v, want nothing dropped", st)
	}
}

// TestQuarantineReachesLedgerStatus: a twin-service quarantine (here an
// analyst's, through the ingest's change path) becomes the ledger asset's
// status; a release is refused there (leaving quarantine is security's on
// the ledger), counted and logged, and the ledger keeps the quarantine.
func TestQuarantineReachesLedgerStatus(t *testing.T) {
	r := newRig(t, Config{Interval: 20 * time.Millisecond})
	r.inventory("GPU-b1", "v0")
	r.waitAnchored("registration")
	if err := r.in.SetCustodyStatus(context.Background(), "srv-s1-001.gpu1", twin.StatusQuarantined, "analyst-1", "xid 79 storm"); err != nil {
		t.Fatal(err)
	}
	r.waitAnchored("quarantine")
	a, err := r.led.GetAsset(svc, "srv-s1-001.gpu1")
	if err != nil || a.Status != core.StatusQuarantined {
		t.Fatalf("ledger asset after a twin-service quarantine = %+v, %v; want quarantined", a, err)
	}
	if st := r.a.Stats(); st.Statuses != 1 {
		t.Errorf("Stats().Statuses = %d, want 1", st.Statuses)
	}
	dropped := r.a.Stats().EvidenceDropped
	if err := r.in.SetCustodyStatus(context.Background(), "srv-s1-001.gpu1", twin.StatusInService, "analyst-1", "false alarm"); err != nil {
		t.Fatal(err)
	}
	r.waitAnchored("release")
	if a, _ := r.led.GetAsset(svc, "srv-s1-001.gpu1"); a.Status != core.StatusQuarantined {
		t.Errorf("ledger asset after a twin-service release = %s, want still quarantined (security releases on the ledger)", a.Status)
	}
	if got := r.a.Stats().EvidenceDropped; got != dropped+1 {
		t.Errorf("EvidenceDropped after a refused release = %d, want %d", got, dropped+1)
	}
}

// TestRegistrationsBatched: a fleet's first contact (ten hosts of eight
// GPUs behind one gateway, ingested while the anchorer is stopped) is
// registered on the ledger in one transaction, not ninety: every asset is
// there with the fingerprint of its first identity, and a host the ledger
// held already is left as it was.
func TestRegistrationsBatched(t *testing.T) {
	r := newRig(t, Config{Interval: 20 * time.Millisecond})
	byHand := core.AssetRegistration{ID: "srv-s1-005", Kind: "server", FingerprintHash: ledgertest.Hash("registered by hand")}
	if _, err := r.led.RegisterAsset(ledgertest.As(core.RoleAssetManager), byHand); err != nil {
		t.Fatal(err)
	}
	before := r.fl.Height()
	assets := r.firstContact(10)

	calls := map[string]int{}
	for h := before + 1; h <= r.fl.Height(); h++ {
		b, err := r.fl.Block(h)
		if err != nil {
			t.Fatal(err)
		}
		var body fileledger.BlockBody
		if err := json.Unmarshal(b.Body, &body); err != nil {
			t.Fatal(err)
		}
		for _, tx := range body.Txs {
			calls[tx.Func]++
		}
	}
	if calls["RegisterAssets"] != 1 || calls["RegisterAsset"] != 0 {
		t.Errorf("ledger transactions after first contact: %v; want the %d registrations in one RegisterAssets", calls, len(assets))
	}
	for _, id := range assets {
		a, err := r.led.GetAsset(svc, id)
		if err != nil {
			t.Errorf("%s not on the ledger: %v", id, err)
			continue
		}
		tw, _ := r.store.Asset(id)
		want := FingerprintHash(&tw.Identity)
		if id == byHand.ID {
			want = byHand.FingerprintHash
		}
		if a.FingerprintHash != want || a.Revision != 1 {
			t.Errorf("%s on the ledger: fingerprint %s revision %d, want %s revision 1", id, a.FingerprintHash, a.Revision, want)
		}
	}
	if st := r.a.Stats(); st.Registered < uint64(len(assets)) || st.EvidenceDropped != 0 {
		t.Errorf("Stats = %+v, want %d registered, nothing dropped", st, len(assets))
	}
}

// firstContact stops the anchorer, ingests the inventories of hosts
// servers with eight GPUs each, starts the anchorer again and waits until
// it has anchored everything. It returns the gateway, host and GPU ids.
func (r *rig) firstContact(hosts int) []string {
	r.t.Helper()
	r.stopAnchorer()
	assets := []string{gw}
	for h := 1; h <= hosts; h++ {
		host := fmt.Sprintf("srv-s1-%03d", h)
		inv := wire.Inventory{Host: wire.HostInfo{Asset: host, Serial: "HOST-" + host}}
		assets = append(assets, host)
		for g := range 8 {
			id := fmt.Sprintf("%s.gpu%d", host, g)
			inv.GPUs = append(inv.GPUs, wire.GPUIdentity{Asset: id, Index: g, UUID: "GPU-" + id, Serial: "S-" + id,
				PCIBusID: fmt.Sprintf("0000:%02x:00.0", g+1), VBIOS: "96.00.89.00.01", Driver: "550.54"})
			assets = append(assets, id)
		}
		r.send(wire.KindFirmware, inv)
	}
	testsvc.Eventually(r.t, 10*time.Second, "the fleet in the twin store", func() bool {
		_, err := r.store.Asset(assets[len(assets)-1])
		return err == nil
	})
	r.startAnchorer(Config{Interval: 20 * time.Millisecond})
	r.waitAnchored("first contact")
	return assets
}

// TestRegistrationRefusedInBatch: with the gateway key policy at trusted
// keys only, the ledger refuses the service's registration of a gateway,
// and so the batch that carries it; each registration then goes on its
// own, and only the gateway's is dropped.
func TestRegistrationRefusedInBatch(t *testing.T) {
	r := newRig(t, Config{Interval: 20 * time.Millisecond})
	policy, _ := json.Marshal(core.GatewayKeyPolicy{TrustedKeysOnly: true})
	if _, err := r.fl.Submit(context.Background(), core.Caller{ID: "sec-1", MSP: "Org1MSP", Role: core.RoleSecurity}, "SetGatewayKeyPolicy", policy); err != nil {
		t.Fatal(err)
	}
	assets := r.firstContact(2)
	if _, err := r.led.GetAsset(svc, gw); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("gateway %s on the ledger: %v; want it refused (trusted keys only)", gw, err)
	}
	for _, id := range assets[1:] {
		if _, err := r.led.GetAsset(svc, id); err != nil {
			t.Errorf("%s not on the ledger: %v", id, err)
		}
	}
	if st := r.a.Stats(); st.EvidenceDropped != 1 || st.Registered != uint64(len(assets)-1) {
		t.Errorf("Stats = %+v, want the gateway's registration dropped and the %d others registered", st, len(assets)-1)
	}
}

// TestArrivalFromAnotherOrg: the seller's org registers two GPUs and
// transfers their custody to this service's org (Org1MSP). When the
// service first sees them, the ledger compares the observed fingerprints:
// gpu0's matches (in service, arrival_verified), gpu1's does not (a
// substitution in transit: quarantined, recorded in its history).
func TestArrivalFromAnotherOrg(t *testing.T) {
	probe := newRig(t, Config{Interval: 20 * time.Millisecond})
	probe.inventory("GPU-b1", "v0")
	probe.waitAnchored("probe")
	g0, _ := probe.store.Asset("srv-s1-001.gpu0")

	led, _, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: serviceKey, Org: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	as := func(msp string) context.Context {
		return ledger.WithCaller(context.Background(), core.Caller{ID: "am-" + msp, MSP: msp, Role: core.RoleAssetManager})
	}
	for id, fp := range map[string]string{"srv-s1-001.gpu0": FingerprintHash(&g0.Identity), "srv-s1-001.gpu1": FingerprintHash(&twin.Identity{Serial: "ORIGINAL"})} {
		if _, err := led.RegisterAsset(as("SellerMSP"), core.AssetRegistration{ID: id, Kind: "gpu", FingerprintHash: fp}); err != nil {
			t.Fatal(err)
		}
		if _, err := led.OfferCustody(as("SellerMSP"), core.CustodyOffer{Asset: id, To: "Org1MSP"}); err != nil {
			t.Fatal(err)
		}
		if _, err := led.AcceptCustody(as("Org1MSP"), core.CustodyAccept{Asset: id}); err != nil {
			t.Fatal(err)
		}
	}
	r := newRigOn(t, Config{Interval: 20 * time.Millisecond}, led)
	r.inventory("GPU-b1", "v0")
	r.waitAnchored("arrival")
	for id, want := range map[string]core.AssetStatus{"srv-s1-001.gpu0": core.StatusInService, "srv-s1-001.gpu1": core.StatusQuarantined} {
		h, err := r.led.AssetHistory(svc, id)
		if err != nil {
			t.Fatal(err)
		}
		last := h.Changes[len(h.Changes)-1].Type
		if h.Asset.Status != want || (want == core.StatusQuarantined) != (last == core.ChangeSubstitution) {
			t.Errorf("%s after arrival: status %s, last change %s; want %s", id, h.Asset.Status, last, want)
		}
	}
	if st := r.a.Stats(); st.Arrivals != 1 || st.Substitutions != 1 {
		t.Errorf("Stats arrivals %d substitutions %d, want 1 and 1", st.Arrivals, st.Substitutions)
	}
}

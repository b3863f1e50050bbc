// Package anchor anchors twin-service's event log on the ledger. It reads
// the event log from its own position (the event tree's size: event N is
// leaf N-1), after ingest wake-ups and on a timer, so it never blocks ingest.
// It cuts batches every Interval or every MaxBatch events, appends them to
// the event tree, signs a checkpoint of the whole tree, and puts the batch
// (Merkle root, event and time range, size, the tree's size and root) in a
// durable bbolt queue. A second loop submits queued batches to the ledger in
// order; while the ledger is away they wait, and a restart resumes.
//
// Critical changes (an identity swap, a firmware change, a quarantine) are
// also queued one by one and recorded as hardware evidence with the
// gateway-signed envelope from the message log (and so are new XIDs,
// double-bit ECC errors and row-remap failures, which the exposure queries
// and the deployment gate look for), which the chaincode core
// checks against the gateway key registered on the ledger. The gateway and
// the asset are registered on the ledger first when they are not yet.
package anchor

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"twinchain/chaincode/core"
	"twinchain/internal/fastjson"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
)

// Config tunes anchoring. Zero values take the defaults.
type Config struct {
	Interval time.Duration `yaml:"interval"`  // cut a batch at least this often; default 500ms
	MaxBatch int           `yaml:"max_batch"` // events per batch at most; default 1000
	RetryMax time.Duration `yaml:"retry_max"` // longest wait between ledger retries; default 30s
	Origin   string        `yaml:"origin"`    // checkpoint origin; default "twinchain/events"
	CallerID string        `yaml:"caller_id"` // the service's identity on the ledger; default "twin-service"
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Interval < 0 || c.MaxBatch < 0 || c.RetryMax < 0 {
		return errors.New("anchor: interval, max_batch and retry_max must not be negative")
	}
	if c.MaxBatch > 1_000_000 {
		return fmt.Errorf("anchor: max_batch %d is above 1000000", c.MaxBatch)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.Origin == "" {
		c.Origin = "twinchain/events"
	}
	if c.CallerID == "" {
		c.CallerID = "twin-service"
	}
	return c
}

// EventLog is the event log (twinstore.Store).
type EventLog interface {
	EventsAfter(id uint64, limit int) ([]twin.Event, error)
	LastEventID() uint64
	MessagesAfter(pos uint64, limit int) ([]twinstore.Message, error)
	LastPos() uint64
	Asset(id string) (twin.Asset, error)
	AssetEvents(asset string, after uint64, limit int) ([]twin.Event, error)
}

// Waker gives wake-ups after ingest commits (ingest.Ingest).
type Waker interface {
	Subscribe() (wake <-chan struct{}, cancel func())
}

// GatewayKeys looks up a gateway's public key (registry.Registry).
type GatewayKeys interface {
	Lookup(id string) (pub ed25519.PublicKey, site string, ok bool)
}

// Ledger is what anchoring writes.
type Ledger interface {
	SubmitAnchors(ctx context.Context, in []core.AnchorInput) ([]core.Anchor, error)
	RecordEvidence(ctx context.Context, in core.EvidenceInput) (core.Evidence, error)
	RegisterAssets(ctx context.Context, in []core.AssetRegistration) (core.RegisteredAssets, error)
	SetAssetStatus(ctx context.Context, in core.StatusChange) (core.Asset, error)
	GetAsset(ctx context.Context, id string) (core.Asset, error)
	RecordArrival(ctx context.Context, in core.Arrival) (core.Asset, error)
}

// Deps are the anchorer's collaborators.
type Deps struct {
	Events   EventLog
	Wake     Waker // nil: the timer alone
	Gateways GatewayKeys
	Tree     *eventtree.Tree
	Ledger   Ledger
	Key      ed25519.PrivateKey // signs checkpoints
	Log      *slog.Logger
	Now      func() time.Time
}

// Stats are counters for /metrics and tests.
type Stats struct {
	Batches         uint64 `json:"batches"`     // batches cut
	Anchored        uint64 `json:"anchored"`    // batches the ledger accepted
	AnchoredTo      uint64 `json:"anchored_to"` // last event id covered by an accepted anchor
	PendingBatches  int    `json:"pending_batches"`
	PendingEvidence int    `json:"pending_evidence"`
	Evidence        uint64 `json:"evidence"`         // evidence records written
	EvidenceDropped uint64 `json:"evidence_dropped"` // evidence items given up (no envelope, refused by the core)
	Registered      uint64 `json:"registered"`       // assets registered on the ledger at their first event
	Statuses        uint64 `json:"statuses"`         // quarantines (and releases) carried to the ledger's asset status
	Arrivals        uint64 `json:"arrivals"`         // assets received from another org whose fingerprint matched the ledger's
	Substitutions   uint64 `json:"substitutions"`    // assets received whose fingerprint did not: substituted in transit
	LedgerErrors    uint64 `json:"ledger_errors"`    // failed ledger calls (retried)
}

// Anchorer batches and anchors events; see the package doc.
type Anchorer struct {
	cfg Config
	d   Deps
	q   *queue

	kick chan struct{} // batcher -> submitter, capacity 1

	batches, anchored, anchoredTo, evidence, dropped, ledgerErrs, registeredN, statuses, arrivals, substitutions atomic.Uint64
	failing                                                                                                      atomic.Pointer[error]

	regMu      sync.Mutex
	registered map[string]bool // ids known to be on the ledger

	substituted func(Substitution) error // SetSubstitutionAlert
}

// Substitution is an asset received from another organisation whose
// observed fingerprint is not the one its custody was transferred with,
// as the ledger recorded it (core.ChangeSubstitution).
type Substitution struct {
	Asset    string
	Site     string
	Observed twin.Identity // the identity seen here
	// LedgerFingerprint is the hash registered by the sending organisation;
	// ObservedFingerprint the hash of Observed.
	LedgerFingerprint, ObservedFingerprint string
	Registrar                              string // the organisation that registered it (made or sold it)
	// Event is the asset's first event here, which carries the gateway
	// message (gateway, seq) that reported the identity; nil when the log
	// has none.
	Event   *twin.Event
	Receipt ledger.Receipt // where the ledger wrote it (Fabric), else empty
	Time    time.Time      // when the ledger recorded it (service clock)
}

// SetSubstitutionAlert makes fn raise the alert for a substitution in
// transit once the ledger recorded it; call it before Run. An error from
// fn is logged: the ledger record stays.
func (a *Anchorer) SetSubstitutionAlert(fn func(Substitution) error) { a.substituted = fn }

// Open opens the durable queue at queuePath; it starts nothing.
func Open(cfg Config, queuePath string, d Deps) (*Anchorer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Events == nil || d.Tree == nil || d.Ledger == nil || len(d.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("anchor: events, tree, ledger and key are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	q, err := openQueue(queuePath)
	if err != nil {
		return nil, err
	}
	a := &Anchorer{cfg: cfg.withDefaults(), d: d, q: q, kick: make(chan struct{}, 1), registered: map[string]bool{}}
	a.anchoredTo.Store(q.lastAnchored()) // what earlier runs anchored
	return a, nil
}

// Close closes the queue.
func (a *Anchorer) Close() error { return a.q.close() }

// Receipt is where the anchor ending at lastEvent was committed on a
// backend that says (Fabric: transaction id, block number), if known.
func (a *Anchorer) Receipt(lastEvent uint64) (ledger.Receipt, bool) { return a.q.receipt(lastEvent) }

// MessageCursor is the message log position before which the anchorer
// needs no message any more (the evidence scan's cursor): retention may
// remove messages up to it.
func (a *Anchorer) MessageCursor() uint64 { return a.q.meta(keyMsgCursor) }

// Stats returns the counters.
func (a *Anchorer) Stats() Stats {
	b, e := a.q.pending()
	return Stats{Batches: a.batches.Load(), Anchored: a.anchored.Load(), AnchoredTo: a.anchoredTo.Load(),
		PendingBatches: b, PendingEvidence: e, Evidence: a.evidence.Load(), EvidenceDropped: a.dropped.Load(),
		LedgerErrors: a.ledgerErrs.Load(), Registered: a.registeredN.Load(), Statuses: a.statuses.Load(),
		Arrivals: a.arrivals.Load(), Substitutions: a.substitutions.Load()}
}

func (a *Anchorer) ctx(ctx context.Context) context.Context {
	return ledger.WithCaller(ctx, core.Caller{ID: a.cfg.CallerID, Role: core.RoleService})
}

// ErrTampered is wrapped by Run's error when the event tree or the ledger
// refuses to go on because stored data does not match its hashes or
// signatures: anchoring stops (the caller alerts); nothing else ends Run
// before ctx does.
var ErrTampered = errors.New("anchoring stopped: stored data was changed")

func tampered(err error) bool {
	return errors.Is(err, eventtree.ErrTampered) || errors.Is(err, ledger.ErrTampered)
}

// Err is why the batcher is not making progress (the tree or the queue
// cannot be written, e.g. a full disk), or nil. Ledger errors are counted
// in Stats.LedgerErrors instead.
func (a *Anchorer) Err() error {
	if p := a.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// Run batches and submits until ctx ends. Failures to write the tree or
// the queue (a full disk) and ledger errors are retried; only tampering
// ends Run early, with an error wrapping ErrTampered that names the place.
func (a *Anchorer) Run(ctx context.Context) error {
	if size, last := a.d.Tree.Size(), a.d.Events.LastEventID(); size > last {
		a.d.Log.Error("event tree holds more events than the event log: the store lost committed events", "tree", size, "log", last)
	}
	if err := a.recover(); err != nil {
		if tampered(err) {
			return fmt.Errorf("%w: %w", ErrTampered, err)
		}
		a.setFailing(err) // the batcher queues those leaves at its next cut
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.runBatcher(ctx) })
	g.Go(func() error { return a.runSubmitter(ctx) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	if err != nil && tampered(err) {
		return fmt.Errorf("%w: %w", ErrTampered, err)
	}
	return err
}

func (a *Anchorer) setFailing(err error) {
	if a.failing.Swap(&err) == nil {
		a.d.Log.Error("anchoring cannot write the event tree or its queue; retrying (the event log keeps the events)", "err", err)
	}
}

// recover queues the leaves a crash left in the tree without a batch.
func (a *Anchorer) recover() error {
	queued, size := a.q.meta(keyQueuedTo), a.d.Tree.Size()
	if queued >= size {
		return nil
	}
	a.d.Log.Warn("queueing events left in the tree without a batch (a crash, or a failed write)", "first", queued+1, "last", size)
	var lo, hi time.Time
	var ev []evidenceItem
	for i := queued; i < size; i++ {
		e, err := a.leafEvent(i)
		if err != nil {
			return err
		}
		ev = append(ev, critical(&e)...)
		if lo.IsZero() || e.Time.Before(lo) {
			lo = e.Time
		}
		if e.Time.After(hi) {
			hi = e.Time
		}
	}
	return a.queueBatch(queued+1, size, lo, hi, ev, 0)
}

func (a *Anchorer) leafEvent(i uint64) (twin.Event, error) {
	var e twin.Event
	b, err := a.d.Tree.Leaf(i)
	if err == nil {
		err = fastjson.Unmarshal(b, &e)
	}
	if err != nil {
		return e, fmt.Errorf("anchor: leaf %d: %w", i, err)
	}
	return e, nil
}

func (a *Anchorer) runBatcher(ctx context.Context) error {
	var wake <-chan struct{}
	if a.d.Wake != nil {
		w, cancel := a.d.Wake.Subscribe()
		defer cancel()
		wake = w
	}
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	for {
		all := false
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
			all = true
		}
		if err := a.cut(all); err != nil {
			if tampered(err) {
				return err
			}
			a.setFailing(err)
			continue
		}
		if a.failing.Swap(nil) != nil {
			a.d.Log.Info("anchoring writes the event tree again")
		}
	}
}

// cut cuts full batches, and with all the remainder too, up to the end of
// the event log as it stood on entry: events arriving meanwhile wait for the
// next cut, so a busy log cannot keep one cut going (and its batches small).
// It first queues the leaves a failed cut left in the tree without a batch.
func (a *Anchorer) cut(all bool) error {
	if err := a.recover(); err != nil {
		return err
	}
	// The position first: every message up to it has its events in the log
	// up to lastID.
	safePos := a.d.Events.LastPos()
	lastID := a.d.Events.LastEventID()
	for {
		size := a.d.Tree.Size()
		pending := lastID - min(size, lastID)
		if pending == 0 && all {
			// Every event up to lastID is batched: the messages up to
			// safePos need nothing more from the batcher, though no
			// event came (telemetry alone changes no tracked field).
			// Without this the evidence scan's cursor, and with it the
			// message log's retention, stood still in a steady fleet.
			return a.q.advanceSafe(safePos)
		}
		if pending == 0 || (!all && pending < uint64(a.cfg.MaxBatch)) {
			return nil
		}
		evs, err := a.d.Events.EventsAfter(size, int(min(pending, uint64(a.cfg.MaxBatch))))
		if err != nil {
			return fmt.Errorf("anchor: %w", err)
		}
		if len(evs) == 0 {
			return nil
		}
		pos := safePos
		if size+uint64(len(evs)) < lastID {
			pos = 0
		}
		if err := a.appendBatch(evs, pos); err != nil {
			return err
		}
	}
}

// appendBatch appends events to the tree, checkpoints it and queues the batch.
func (a *Anchorer) appendBatch(evs []twin.Event, safePos uint64) error {
	size := a.d.Tree.Size()
	leaves := make([][]byte, len(evs))
	var ev []evidenceItem
	for i := range evs {
		e := &evs[i]
		if e.ID != size+uint64(i)+1 {
			return fmt.Errorf("anchor: event log gave event %d where %d was due", e.ID, size+uint64(i)+1)
		}
		b, err := fastjson.Marshal(e)
		if err != nil {
			return fmt.Errorf("anchor: encode event %d: %w", e.ID, err)
		}
		leaves[i] = b
		ev = append(ev, critical(e)...)
	}
	if _, err := a.d.Tree.Append(leaves...); err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	// Reading times go back and forth across gateways: the anchor's time
	// range is the batch's earliest and latest.
	lo, hi := evs[0].Time, evs[0].Time
	for i := range evs {
		if evs[i].Time.Before(lo) {
			lo = evs[i].Time
		}
		if evs[i].Time.After(hi) {
			hi = evs[i].Time
		}
	}
	return a.queueBatch(evs[0].ID, evs[len(evs)-1].ID, lo, hi, ev, safePos)
}

func (a *Anchorer) queueBatch(firstID, lastID uint64, ft, lt time.Time, ev []evidenceItem, safePos uint64) error {
	root, size, err := a.d.Tree.Root()
	if err != nil {
		return err
	}
	cp := eventtree.SignCheckpoint(a.d.Key, a.cfg.Origin, size, root, a.d.Now())
	if err := a.d.Tree.AddCheckpoint(cp); err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	batchRoot, err := a.d.Tree.RootOfRange(firstID-1, lastID)
	if err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	in := core.AnchorInput{Root: hex.EncodeToString(batchRoot), FirstEvent: firstID, LastEvent: lastID,
		FirstTime: ft.UTC(), LastTime: lt.UTC(), Size: lastID - firstID + 1, TreeSize: size, TreeRoot: hex.EncodeToString(root)}
	if err := a.q.push(in, ev, safePos); err != nil {
		return fmt.Errorf("anchor: queue batch %d-%d: %w", firstID, lastID, err)
	}
	a.batches.Add(1)
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// critical lists the hardware evidence an event calls for: an identity swap,
// a firmware change, a quarantine, and the health faults the deployment gate
// and exposure queries look for (a new XID, new double-bit ECC errors, a
// row-remap failure). A change made through the API has no envelope to
// show and calls for none.
func critical(e *twin.Event) []evidenceItem {
	var out []evidenceItem
	if e.Type == twin.EventRegistered {
		// The asset as its first event made it: the fingerprint it was
		// registered with, whatever it became later.
		if first, err := twin.Apply(twin.Asset{}, *e); err == nil {
			out = append(out, evidenceItem{EventID: e.ID, Asset: e.Asset, Register: &core.AssetRegistration{
				ID: first.ID, Kind: string(first.Kind), FingerprintHash: FingerprintHash(&first.Identity)}})
		}
	}
	for _, c := range e.Changes {
		// A quarantine or a release, by a detector, an analyst or a gateway:
		// the ledger's asset status follows.
		if c.Field == "custody.status" && (c.New == string(twin.StatusQuarantined) || c.Old == string(twin.StatusQuarantined)) {
			reason := e.Note
			if reason == "" {
				reason = "twin-service event " + strconv.FormatUint(e.ID, 10)
			}
			if e.Source.Actor != "" {
				reason += " (by " + e.Source.Actor + ")"
			}
			out = append(out, evidenceItem{EventID: e.ID, Asset: e.Asset, Revision: e.Revision,
				Status: &core.StatusChange{Asset: e.Asset, Status: core.AssetStatus(c.New), Reason: reason}})
		}
	}
	if e.Source.Gateway == "" || e.Source.Seq == 0 {
		return out
	}
	var kinds []core.EvidenceKind
	switch e.Type {
	case twin.EventIdentityChanged:
		kinds = append(kinds, core.EvidenceSwap)
	case twin.EventFirmwareChanged:
		kinds = append(kinds, core.EvidenceFirmware)
	case twin.EventAlertRaised:
		kinds = append(kinds, core.EvidenceAlert) // the signed message the alert rests on (alert.SignedEvidence)
	}
	for _, c := range e.Changes {
		switch {
		case c.Field == "custody.status" && c.New == string(twin.StatusQuarantined):
			kinds = append(kinds, core.EvidenceQuarantine)
		case c.Field == "health.xid_count" && grew(c):
			kinds = append(kinds, core.EvidenceXID)
		case c.Field == "health.ecc_dbe" && grew(c):
			kinds = append(kinds, core.EvidenceECCDBE)
		case c.Field == "health.row_remap_failure" && c.New == "true":
			kinds = append(kinds, core.EvidenceRowRemap)
		}
	}
	for _, k := range kinds {
		out = append(out, evidenceItem{EventID: e.ID, Asset: e.Asset, Kind: k, Gateway: e.Source.Gateway,
			Seq: e.Source.Seq, Revision: e.Revision, Note: e.Note})
	}
	return out
}

// grew reports whether a counter change went up.
func grew(c twin.Change) bool {
	o, err1 := strconv.ParseUint(c.Old, 10, 64)
	n, err2 := strconv.ParseUint(c.New, 10, 64)
	return err1 == nil && err2 == nil && n > o
}

func (a *Anchorer) runSubmitter(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
		}
		progressed, err := a.submitOne(ctx)
		if err == nil && !progressed {
			progressed, err = a.evidenceOne(ctx)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && tampered(err):
			return err
		case err != nil:
			a.ledgerErrs.Add(1)
			if backoff == 0 {
				a.d.Log.Warn("ledger call failed; batches wait in the queue", "err", err)
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), a.cfg.RetryMax)
		case progressed:
			if backoff > 0 {
				a.d.Log.Info("ledger reachable again")
			}
			backoff = 0
		default:
			backoff = 0
			select {
			case <-ctx.Done():
				return nil
			case <-a.kick:
			case <-time.After(a.cfg.Interval):
			}
		}
	}
}

// submitOne anchors the oldest queued batches, as many as one ledger call
// takes: on Fabric a call costs a block, so batches cut while one call is
// out go together in the next.
func (a *Anchorer) submitOne(ctx context.Context) (bool, error) {
	ins, err := a.q.nextBatches(core.MaxAnchorsPerCall)
	if err != nil || len(ins) == 0 {
		return false, err
	}
	var rc ledger.Receipt
	ancs, err := a.d.Ledger.SubmitAnchors(ledger.WithReceipt(a.ctx(ctx), &rc), ins)
	if err == nil && len(ancs) != len(ins) {
		err = fmt.Errorf("ledger answered %d anchors for %d", len(ancs), len(ins))
	}
	if err != nil {
		return false, fmt.Errorf("anchor events %d-%d: %w", ins[0].FirstEvent, ins[len(ins)-1].LastEvent, err)
	}
	if err := a.q.anchored(ins, ancs, rc); err != nil {
		return false, err
	}
	a.anchored.Add(uint64(len(ancs)))
	a.anchoredTo.Store(ancs[len(ancs)-1].LastEvent)
	return true, nil
}

// ruleError reports whether the core refused a call for good (retrying the
// same call cannot help), as opposed to a backend that is away.
func ruleError(err error) bool {
	return errors.Is(err, ledger.ErrInvalid) || errors.Is(err, ledger.ErrNotFound) ||
		errors.Is(err, ledger.ErrConflict) || errors.Is(err, ledger.ErrForbidden)
}

// evidenceOne records the oldest queued evidence item.
func (a *Anchorer) evidenceOne(ctx context.Context) (bool, error) {
	it, ok, cursor, err := a.q.nextEvidence()
	if err != nil || !ok {
		return false, err
	}
	if it.Register != nil {
		return true, a.registerItems(ctx, cursor)
	}
	if it.Status != nil {
		return true, a.statusItem(ctx, it, cursor)
	}
	env, at, err := a.findEnvelope(it, cursor)
	if err != nil {
		return false, err
	}
	if env == nil {
		a.dropped.Add(1)
		a.d.Log.Error("evidence dropped: the message behind a critical event is not in the message log", "event", it.EventID, "gateway", it.Gateway, "seq", it.Seq)
		return true, a.q.evidenceDone(cursor, it)
	}
	lctx := a.ctx(ctx)
	err = a.ensureRegistered(lctx, it)
	if err == nil {
		_, err = a.d.Ledger.RecordEvidence(lctx, core.EvidenceInput{Asset: it.Asset, Kind: it.Kind, Envelope: env,
			EventID: it.EventID, Revision: it.Revision, Note: it.Note})
	}
	switch {
	case err == nil:
		a.evidence.Add(1)
	case ruleError(err):
		a.dropped.Add(1)
		a.d.Log.Error("evidence refused by the ledger", "event", it.EventID, "asset", it.Asset, "kind", it.Kind, "err", err)
	default:
		return false, fmt.Errorf("record evidence for event %d: %w", it.EventID, err)
	}
	// The next item may come from the same message: resume just before it.
	return true, a.q.evidenceDone(at-1, it)
}

// registerItems registers assets on the ledger at their first events: the
// run of registrations at the head of the evidence queue, up to
// core.MaxAssetsPerCall, in one ledger transaction (a fleet's first
// contact brings them by the thousand, and a transaction costs a block);
// a gateway with its key from the registry.
func (a *Anchorer) registerItems(ctx context.Context, cursor uint64) error {
	items, err := a.q.nextRegistrations(core.MaxAssetsPerCall)
	if err != nil || len(items) == 0 {
		return err
	}
	dropped := 0
	events := make(map[string]uint64, len(items))
	refused := func(r core.AssetRegistration, err error) {
		dropped++
		a.dropped.Add(1)
		a.d.Log.Error("asset registration refused by the ledger", "event", events[r.ID], "asset", r.ID, "err", err)
	}
	regs := make([]core.AssetRegistration, 0, len(items))
	for _, it := range items {
		r := *it.Register
		if _, dup := events[r.ID]; dup || a.isRegistered(r.ID) {
			continue
		}
		events[r.ID] = it.EventID
		if r.Kind == core.AssetKindGateway {
			pub, _, ok := a.d.Gateways.Lookup(r.ID)
			if !ok {
				refused(r, fmt.Errorf("gateway %s is not in the registry: %w", r.ID, ledger.ErrNotFound))
				continue
			}
			r.PublicKey = hex.EncodeToString(pub)
		}
		regs = append(regs, r)
	}
	if len(regs) > 0 {
		if err := a.register(a.ctx(ctx), regs, refused); err != nil {
			return err
		}
	}
	a.registeredN.Add(uint64(len(items) - dropped))
	return a.q.evidenceDone(cursor, items...)
}

// statusItem moves the asset's ledger status as twin-service's did. The
// service may quarantine; leaving quarantine is security's (or admin's) on
// the ledger, so a release is refused there and logged for them to confirm.
func (a *Anchorer) statusItem(ctx context.Context, it evidenceItem, cursor uint64) error {
	lctx := a.ctx(ctx)
	var err error
	if !a.isRegistered(it.Asset) {
		var tw twin.Asset
		if tw, err = a.d.Events.Asset(it.Asset); err == nil {
			err = a.registerOne(lctx, core.AssetRegistration{ID: tw.ID, Kind: string(tw.Kind), FingerprintHash: FingerprintHash(&tw.Identity)})
		}
	}
	if err == nil {
		_, err = a.d.Ledger.SetAssetStatus(lctx, *it.Status)
	}
	switch {
	case err == nil:
		a.statuses.Add(1)
	case ruleError(err):
		a.dropped.Add(1)
		a.d.Log.Error("ledger asset status not changed: the ledger refused it (leaving quarantine needs security or admin there: POST /api/v1/ledger/assets/{id}/status)",
			"event", it.EventID, "asset", it.Asset, "status", it.Status.Status, "err", err)
	default:
		return fmt.Errorf("set ledger status of %s: %w", it.Asset, err)
	}
	return a.q.evidenceDone(cursor, it)
}

// findEnvelope scans the message log from cursor for the item's message. It
// returns nil when the log has no such message (and the cursor unchanged).
func (a *Anchorer) findEnvelope(it evidenceItem, cursor uint64) ([]byte, uint64, error) {
	pos := cursor
	for {
		msgs, err := a.d.Events.MessagesAfter(pos, 1024)
		if err != nil {
			return nil, cursor, err
		}
		if len(msgs) == 0 {
			return nil, cursor, nil
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Gateway == it.Gateway && m.Seq == it.Seq {
				return m.Raw, m.Pos, nil
			}
			pos = m.Pos
		}
	}
}

// ensureRegistered registers the item's gateway (with its key) and asset on
// the ledger unless they are known to be there.
func (a *Anchorer) ensureRegistered(ctx context.Context, it evidenceItem) error {
	if !a.isRegistered(it.Gateway) {
		pub, _, ok := a.d.Gateways.Lookup(it.Gateway)
		if !ok {
			return fmt.Errorf("gateway %s is not in the registry: %w", it.Gateway, ledger.ErrNotFound)
		}
		sum := sha256.Sum256(pub)
		if err := a.registerOne(ctx, core.AssetRegistration{ID: it.Gateway, Kind: core.AssetKindGateway,
			FingerprintHash: hex.EncodeToString(sum[:]), PublicKey: hex.EncodeToString(pub)}); err != nil {
			return err
		}
	}
	if it.Asset != it.Gateway && !a.isRegistered(it.Asset) {
		tw, err := a.d.Events.Asset(it.Asset)
		if err != nil {
			return fmt.Errorf("asset %s: %w", it.Asset, err)
		}
		if err := a.registerOne(ctx, core.AssetRegistration{ID: tw.ID, Kind: string(tw.Kind), FingerprintHash: FingerprintHash(&tw.Identity)}); err != nil {
			return err
		}
	}
	return nil
}

// arrive handles the first sight of an asset the ledger already holds: one
// in transit whose custody this organisation accepted (the owner now, no
// offer pending) has arrived, and the ledger compares the fingerprint
// observed here with its own (core.RecordArrival). A mismatch is a
// substitution in transit: the ledger records it and quarantines the
// asset, and it is logged as an error. Any other registered asset is left
// as it is.
func (a *Anchorer) arrive(ctx context.Context, r core.AssetRegistration) error {
	have, err := a.d.Ledger.GetAsset(ctx, r.ID)
	if err != nil || have.Status != core.StatusInTransit || have.Pending != nil {
		return err
	}
	var rc ledger.Receipt
	got, err := a.d.Ledger.RecordArrival(ledger.WithReceipt(ctx, &rc), core.Arrival{Asset: r.ID, FingerprintHash: r.FingerprintHash})
	switch {
	case errors.Is(err, ledger.ErrForbidden):
		return nil // in transit for another organisation: not ours to receive
	case err != nil:
		return err
	case got.Status == core.StatusQuarantined:
		a.substitutions.Add(1)
		a.d.Log.Error("SUBSTITUTION IN TRANSIT: the asset received does not have the fingerprint its custody was transferred with; quarantined on the ledger",
			"asset", r.ID, "ledger_fingerprint", have.FingerprintHash, "observed_fingerprint", r.FingerprintHash)
		a.alertSubstitution(Substitution{Asset: r.ID, LedgerFingerprint: have.FingerprintHash, ObservedFingerprint: r.FingerprintHash,
			Registrar: got.Registered.MSP, Receipt: rc, Time: a.d.Now()})
	default:
		a.arrivals.Add(1)
		a.d.Log.Info("asset arrived: its fingerprint matches the ledger's", "asset", r.ID)
	}
	return nil
}

// alertSubstitution completes s from the event log (the identity observed
// and the first event, with its gateway message) and raises its alert.
func (a *Anchorer) alertSubstitution(s Substitution) {
	if a.substituted == nil {
		return
	}
	if tw, err := a.d.Events.Asset(s.Asset); err == nil {
		s.Site, s.Observed = tw.Site, tw.Identity
	}
	if evs, err := a.d.Events.AssetEvents(s.Asset, 0, 1); err == nil && len(evs) == 1 {
		s.Event = &evs[0]
	}
	if err := a.substituted(s); err != nil {
		a.d.Log.Error("substitution alert not raised (the ledger recorded the substitution)", "asset", s.Asset, "err", err)
	}
}

// FingerprintHash is the hex SHA-256 of an identity's canonical JSON, the
// fingerprint hash registered on the ledger.
func FingerprintHash(id *twin.Identity) string {
	b, _ := json.Marshal(id)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (a *Anchorer) isRegistered(id string) bool {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	return a.registered[id]
}

// register registers rs on the ledger in one transaction and checks each
// one the ledger held already as an arrival (arrive); those that went
// through are marked registered. When the ledger refuses the call, each
// goes on its own, so that refused hears only of the ones it refuses. An
// error is a failure to retry (the ledger away).
func (a *Anchorer) register(ctx context.Context, rs []core.AssetRegistration, refused func(core.AssetRegistration, error)) error {
	res, err := a.d.Ledger.RegisterAssets(ctx, rs)
	switch {
	case ruleError(err) && len(rs) == 1:
		refused(rs[0], fmt.Errorf("register %s on the ledger: %w", rs[0].ID, err))
		return nil
	case ruleError(err):
		for _, r := range rs {
			if err := a.register(ctx, []core.AssetRegistration{r}, refused); err != nil {
				return err
			}
		}
		return nil
	case err != nil:
		return fmt.Errorf("register %d assets on the ledger: %w", len(rs), err)
	}
	existing := make(map[string]bool, len(res.Existing))
	for _, id := range res.Existing {
		existing[id] = true
	}
	done := make([]core.AssetRegistration, 0, len(rs))
	defer func() { a.markRegistered(done) }()
	for _, r := range rs {
		if existing[r.ID] {
			switch err := a.arrive(ctx, r); {
			case ruleError(err):
				refused(r, fmt.Errorf("register %s on the ledger: %w", r.ID, err))
				continue
			case err != nil:
				return fmt.Errorf("register %s on the ledger: %w", r.ID, err)
			}
		}
		done = append(done, r)
	}
	return nil
}

// registerOne is register for one asset: a refusal is its error.
func (a *Anchorer) registerOne(ctx context.Context, r core.AssetRegistration) error {
	var refusal error
	if err := a.register(ctx, []core.AssetRegistration{r}, func(_ core.AssetRegistration, err error) { refusal = err }); err != nil {
		return err
	}
	return refusal
}

func (a *Anchorer) markRegistered(rs []core.AssetRegistration) {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	for _, r := range rs {
		a.registered[r.ID] = true
	}
}

// Package detectsvc is the detection engine inside twin-service: it reads
// the message log and the event log from its own cursors after each ingest
// wake-up (and the ingest's recent rejections), runs the detectors, lets
// approved work orders explain the changes they cover, and records the rest
// as alerts, whose notifications the alert dispatcher delivers.
//
// Work orders: an approved order that covers every change behind a finding
// suppresses the alert; the engine records the coverage on the order (event
// id, asset, field, value) — GET /api/v1/workorders/{id} lists what it
// covered — and, when the core offers a Custody API, notes it on the asset
// as an event. A change the order does not name still raises the alert, with
// a note saying which of its changes an order did cover.
//
// Cursors are stored with the alerts in one transaction, so a crash re-reads
// at most the batch that was being processed, and the alerts it raised are
// not duplicated (they merge into the open alert).
package detectsvc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/detect/alertstore"
	"twinchain/internal/detect/workorder"
	"twinchain/internal/detect/workorderstore"
	"twinchain/internal/ingest"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// Logs is what the engine reads from the twin store.
type Logs interface {
	MessagesAfterFor(pos uint64, limit int, needRaw func(pos uint64, kind wire.Kind) bool) ([]twinstore.Message, error)
	EventsAfter(id uint64, limit int) ([]twin.Event, error)
}

// Source is what the engine needs from the ingest: wake-ups after commits
// and the ring of recent rejections.
type Source interface {
	Subscribe() (wake <-chan struct{}, cancel func())
	Recent(since time.Time) []ingest.Rejection
}

// Decoder hands out the newest messages as the ingest decoded them;
// *ingest.Ingest is one. When the Source is one too, the engine decodes the
// stored bytes only for messages it no longer has.
type Decoder interface {
	Decoded(pos uint64) (*ingest.Decoded, bool)
}

// KnownAssets is the gateway registry's list of assets: AssetIDs (nil: no
// list, the unknown-asset check is off) is read again only when Version
// moves, not on every step.
type KnownAssets interface {
	Version() uint64
	AssetIDs() []string
}

// Custody changes an asset's custody status through the core, as an event
// with the actor and a note. Optional: without it the engine records the
// response it would have taken on the alert only.
type Custody interface {
	SetCustodyStatus(ctx context.Context, asset string, status twin.Status, actor, note string) error
}

// Cursor names in the alert store.
const (
	cursorEvents   = "detect.events"
	cursorMessages = "detect.messages"
)

// Stats counts what the engine did; safe for concurrent use.
type Stats struct {
	Events, Messages, Rejections atomic.Uint64
	Findings, Covered, Opened    atomic.Uint64
	DecodeErrors, Quarantined    atomic.Uint64
	// ImagesNotCompared counts processes judged whose container image
	// has no registry digest to compare (detect.ImageLocalOnly).
	ImagesNotCompared atomic.Uint64
	// EventPos and MessagePos are the cursors: the last event and message
	// log positions processed.
	EventPos, MessagePos atomic.Uint64
}

// Engine runs the detectors over the logs.
type Engine struct {
	cfg   Config
	logs  Logs
	src   Source
	known KnownAssets
	// knownVer is the registry version the view's asset list is from.
	knownVer uint64
	// ticked is when the silence checks last ran (Set.Tick): at most
	// twice per Poll, not on every step (they visit every gateway: 5% of
	// the service's CPU with 3,000 gateways, steps coming back to back).
	ticked  time.Time
	custody Custody
	// approvals turns the run-time checks on (detect.Set.SetApprovals).
	approvals detect.Approvals
	alerts    *alertstore.Store
	orders    *workorderstore.Store
	log       *slog.Logger
	now       func() time.Time

	mu           sync.Mutex // guards set and the cursors
	set          *detect.Set
	evCur        uint64
	msgCur       uint64
	saved        [2]uint64 // the cursors (events, messages) as stored
	savedAt      time.Time // when they were
	rejSince     time.Time
	rejSeen      map[ingest.Rejection]bool
	decodeLogged bool
	// held are the messages of the batch being read that the ingest had
	// decoded, by position: the log hands them over without their
	// envelopes (needRaw).
	held    map[uint64]*ingest.Decoded
	failing atomic.Pointer[error] // the last step's error, nil once a step succeeds

	Stats Stats
}

// Err is why the engine is not making progress (its store cannot be
// written, e.g. a full disk), or nil.
func (e *Engine) Err() error {
	if p := e.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// New builds an engine; it reads nothing until Run.
func New(cfg Config, logs Logs, src Source, known KnownAssets, custody Custody, alerts *alertstore.Store, orders *workorderstore.Store, log *slog.Logger, now func() time.Time) *Engine {
	return &Engine{cfg: cfg, logs: logs, src: src, known: known, custody: custody, alerts: alerts, orders: orders, log: log, now: now, rejSeen: map[ingest.Rejection]bool{}, held: map[uint64]*ingest.Decoded{}}
}

// SetApprovals turns the run-time checks on: what runs on each GPU against
// the ledger's deployments in force (unapproved_model, environment_drift).
// Call it before Run.
func (e *Engine) SetApprovals(a detect.Approvals) { e.approvals = a }

// Run processes the logs until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.start(); err != nil {
		return err
	}
	wake, cancel := e.src.Subscribe()
	defer cancel()
	poll := time.NewTicker(e.cfg.Engine.Poll)
	defer poll.Stop()
	for ctx.Err() == nil {
		more, err := e.Step(ctx)
		if err != nil {
			if e.failing.Swap(&err) == nil {
				e.log.Error("detection step failed; retrying (logged once until it recovers)", "err", err)
			}
			more = false
		} else if e.failing.Swap(nil) != nil {
			e.log.Info("detection recovered")
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-poll.C:
		}
	}
	e.storeCursors()
	return nil
}

// storeCursors stores the cursors if they moved since they were stored.
func (e *Engine) storeCursors() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.saved == [2]uint64{e.evCur, e.msgCur} {
		return
	}
	if _, err := e.save(nil, nil, e.evCur, e.msgCur, e.now()); err != nil {
		e.log.Warn("detection cursors not stored at stop; the messages since are read again at the next start", "err", err, "messages_cursor", e.msgCur)
	}
}

// start loads the cursors and rebuilds the fleet view from the events
// before the event cursor.
func (e *Engine) start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	if e.evCur, err = e.alerts.Cursor(cursorEvents); err != nil {
		return err
	}
	if e.msgCur, err = e.alerts.Cursor(cursorMessages); err != nil {
		return err
	}
	var known []string
	if e.known != nil {
		e.knownVer = e.known.Version() // before the list: a change in between is read again
		known = e.known.AssetIDs()
	}
	view := detect.NewView(known)
	for id := uint64(0); id < e.evCur; {
		evs, err := e.logs.EventsAfter(id, e.cfg.Engine.Batch)
		if err != nil {
			return fmt.Errorf("rebuild view: %w", err)
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			if ev.ID > e.evCur {
				break
			}
			if err := view.Apply(ev); err != nil {
				e.log.Warn("rebuild view", "err", err)
			}
			id = ev.ID
		}
	}
	e.set = detect.NewSet(e.cfg.Detect, view)
	e.set.CountImagesNotCompared(&e.Stats.ImagesNotCompared)
	if e.approvals != nil {
		e.set.SetApprovals(e.approvals)
	}
	e.Stats.EventPos.Store(e.evCur)
	e.Stats.MessagePos.Store(e.msgCur)
	e.saved, e.savedAt = [2]uint64{e.evCur, e.msgCur}, e.now()
	e.rejSince = e.now()
	e.log.Info("detection started", "events_cursor", e.evCur, "messages_cursor", e.msgCur)
	return nil
}

// Step processes one batch of events, messages and rejections, and reports
// whether more may be waiting.
func (e *Engine) Step(ctx context.Context) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.set == nil {
		return false, fmt.Errorf("engine not started")
	}
	if e.known != nil {
		if v := e.known.Version(); v != e.knownVer {
			e.set.View().SetKnown(e.known.AssetIDs())
			e.knownVer = v
		}
	}
	batch := e.cfg.Engine.Batch
	var found []detect.Finding
	evs, err := e.logs.EventsAfter(e.evCur, batch)
	if err != nil {
		return false, err
	}
	evCur := e.evCur
	for i := range evs {
		fs, err := e.set.Observe(detect.Input{Event: &evs[i]})
		if err != nil {
			e.log.Warn("event not applied to the detection view", "event", evs[i].ID, "err", err)
		}
		found = append(found, fs...)
		evCur = evs[i].ID
	}
	clear(e.held)
	msgs, err := e.logs.MessagesAfterFor(e.msgCur, batch, e.needRaw)
	if err != nil {
		return false, err
	}
	msgCur := e.msgCur
	for i := range msgs {
		m := &msgs[i]
		msgCur = m.Pos
		dm, err := e.decode(m)
		if err != nil {
			e.Stats.DecodeErrors.Add(1)
			if !e.decodeLogged {
				e.log.Warn("stored message does not decode; skipped (logged once)", "pos", m.Pos, "gateway", m.Gateway, "err", err)
				e.decodeLogged = true
			}
			continue
		}
		fs, _ := e.set.Observe(detect.Input{Message: dm})
		found = append(found, fs...)
	}
	for _, r := range e.rejections() {
		fs, _ := e.set.Observe(detect.Input{Rejection: &r})
		found = append(found, fs...)
	}
	// Silence is judged per gateway on receive time: the service clock.
	if now := e.now(); now.Sub(e.ticked) >= e.cfg.Engine.Poll/2 || now.Before(e.ticked) {
		found = append(found, e.set.Tick(now)...)
		e.ticked = now
	}
	e.Stats.Events.Add(uint64(len(evs)))
	e.Stats.Messages.Add(uint64(len(msgs)))
	e.Stats.Findings.Add(uint64(len(found)))
	raise, notes := e.explain(found)
	more := len(evs) == batch || twinstore.BatchFull(msgs, batch)
	now := e.now()
	if len(raise) == 0 {
		// Nothing raised: the cursors move here, and are stored with the
		// next alerts, at most every CursorEvery, or at the end of Run.
		e.advance(evCur, msgCur)
		unsaved := e.saved != [2]uint64{evCur, msgCur}
		if !unsaved || now.Sub(e.savedAt) < e.cfg.Engine.CursorEvery && !now.Before(e.savedAt) {
			return more, nil
		}
	}
	res, err := e.save(raise, notes, evCur, msgCur, now)
	if err != nil {
		return false, err
	}
	e.Stats.Opened.Add(uint64(len(res.Opened)))
	for i := range res.Opened {
		e.respond(ctx, &res.Opened[i])
	}
	return more, nil
}

// save stores the findings to raise and the cursors in one transaction,
// and moves the cursors there.
func (e *Engine) save(raise []detect.Finding, notes []string, evCur, msgCur uint64, now time.Time) (alertstore.Result, error) {
	res, err := e.alerts.Apply(raise, notes, map[string]uint64{cursorEvents: evCur, cursorMessages: msgCur})
	if err != nil {
		return res, err
	}
	e.advance(evCur, msgCur)
	e.saved, e.savedAt = [2]uint64{evCur, msgCur}, now
	return res, nil
}

// advance moves the cursors past what a step processed.
func (e *Engine) advance(evCur, msgCur uint64) {
	e.evCur, e.msgCur = evCur, msgCur
	e.Stats.EventPos.Store(evCur)
	e.Stats.MessagePos.Store(msgCur)
}

// Raise records a finding made outside the detectors (the ledger's
// substitution in transit) as the detectors' are: an alert (or merged into
// the open one), its notifications and incident, and the quarantine
// response the policy asks for. It returns the alert.
func (e *Engine) Raise(ctx context.Context, f detect.Finding) (alert.Alert, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Stats.Findings.Add(1)
	res, err := e.alerts.Apply([]detect.Finding{f}, nil, nil)
	if err != nil {
		return alert.Alert{}, err
	}
	e.Stats.Opened.Add(uint64(len(res.Opened)))
	if len(res.Opened) == 1 {
		if e.set != nil {
			e.respond(ctx, &res.Opened[0])
		}
		return res.Opened[0], nil
	}
	if len(res.Updated) == 1 {
		return res.Updated[0], nil
	}
	return alert.Alert{}, fmt.Errorf("raise %s on %s: no alert recorded", f.Type, f.Asset)
}

// rejections returns the ingest's rejections not seen yet, as detector inputs.
func (e *Engine) rejections() []detect.Rejection {
	recent := e.src.Recent(e.rejSince)
	var out []detect.Rejection
	newest := e.rejSince
	seen := map[ingest.Rejection]bool{}
	for _, r := range recent {
		key := ingest.Rejection{Time: r.Time, Gateway: r.Gateway, Seq: r.Seq, Reason: r.Reason, Source: r.Source}
		if r.Time.Equal(e.rejSince) && e.rejSeen[key] {
			seen[key] = true
			continue
		}
		e.Stats.Rejections.Add(1)
		reason := string(r.Reason)
		out = append(out, detect.Rejection{Time: r.Time, Gateway: r.Gateway, Seq: r.Seq, Reason: reason,
			Source: r.Source.Key(), SourceClient: r.Source.Client, From: r.Source.String()})
		if r.Time.After(newest) {
			newest, seen = r.Time, map[ingest.Rejection]bool{}
		}
		if r.Time.Equal(newest) {
			seen[key] = true
		}
	}
	e.rejSince, e.rejSeen = newest, seen
	return out
}

// explain drops the findings that approved work orders fully cover
// (recording the coverage) and notes partial coverage on the rest.
func (e *Engine) explain(found []detect.Finding) ([]detect.Finding, []string) {
	var raise []detect.Finding
	var notes []string
	for _, f := range found {
		if !f.Coverable || len(f.Changes) == 0 || e.orders == nil {
			raise, notes = append(raise, f), append(notes, "")
			continue
		}
		anc := e.ancestors(f.Asset)
		var covered, uncovered []string
		type cov struct {
			id string
			c  twin.Change
		}
		var covs []cov
		for _, c := range f.Changes {
			if id, ok := e.orders.Match(f.Asset, anc, c, f.Time); ok {
				covered = append(covered, fmt.Sprintf("%s -> %s by %s", c.Field, c.New, id))
				covs = append(covs, cov{id, c})
			} else {
				uncovered = append(uncovered, c.Field+" -> "+c.New)
			}
		}
		if len(uncovered) == 0 {
			e.Stats.Covered.Add(1)
			var evID uint64
			if len(f.Evidence.Events) > 0 {
				evID = f.Evidence.Events[0].ID
			}
			for _, cv := range covs {
				if err := e.orders.Record(cv.id, workorder.Coverage{Event: evID, Asset: f.Asset, Field: cv.c.Field, Value: cv.c.New, Time: f.Time, Detail: f.Summary}); err != nil {
					e.log.Error("record work order coverage", "order", cv.id, "err", err)
				}
			}
			e.log.Info("change covered by work order", "asset", f.Asset, "type", f.Type, "covered", strings.Join(covered, "; "))
			continue
		}
		note := ""
		if len(covered) > 0 {
			note = "covered: " + strings.Join(covered, "; ") + "; not covered by any approved work order: " + strings.Join(uncovered, "; ")
		}
		raise, notes = append(raise, f), append(notes, note)
	}
	return raise, notes
}

// ancestors is the asset's parent chain in the view.
func (e *Engine) ancestors(id string) []string {
	var out []string
	for range 4 {
		a, ok := e.set.View().Asset(id)
		if !ok || a.Parent == "" || slices.Contains(out, a.Parent) {
			return out
		}
		out = append(out, a.Parent)
		id = a.Parent
	}
	return out
}

// respond takes the automated response the quarantine policy asks for.
func (e *Engine) respond(ctx context.Context, a *alert.Alert) {
	q := e.cfg.Alerts.Quarantine
	if !q.Applies(a) {
		return
	}
	if tw, ok := e.set.View().Asset(a.Asset); !ok || tw.Custody.Status == twin.StatusQuarantined {
		return // only assets (gateways too) that exist as a twin and are not quarantined yet
	}
	response := "quarantine requested (no custody API configured)"
	if e.custody != nil {
		note := fmt.Sprintf("quarantined by policy: alert %s (%s, %s)", a.ID, a.Type, a.Severity)
		if err := e.custody.SetCustodyStatus(ctx, a.Asset, twin.StatusQuarantined, "detect", note); err != nil {
			e.log.Error("quarantine", "asset", a.Asset, "alert", a.ID, "err", err)
			response = "quarantine failed: " + err.Error()
		} else {
			response = "quarantined"
			e.Stats.Quarantined.Add(1)
		}
	}
	if err := e.alerts.SetResponse(a.ID, response); err != nil {
		e.log.Error("record response", "alert", a.ID, "err", err)
	}
}

// needRaw tells the log which envelopes to read: those of the messages
// the ingest's ring no longer has (the others are held for decode).
func (e *Engine) needRaw(pos uint64, _ wire.Kind) bool {
	if dec, ok := e.src.(Decoder); ok {
		if d, ok := dec.Decoded(pos); ok {
			e.held[pos] = d
			return false
		}
	}
	return true
}

// decode turns a stored message into a detector input.
func (e *Engine) decode(m *twinstore.Message) (*detect.Message, error) {
	dm := &detect.Message{Ref: detect.MessageRef{Gateway: m.Gateway, Seq: m.Seq, Pos: m.Pos, Time: m.Time}, Kind: m.Kind, Recorded: m.Recorded}
	if d := e.held[m.Pos]; d != nil {
		// The ingest's decoded form, shared: the detectors only read it.
		dm.Telemetry, dm.Inventory, dm.RFID, dm.GPS, dm.Status, dm.Workloads = d.Telemetry, d.Inventory, d.RFID, d.GPS, d.Status, d.Workloads
		return dm, nil
	}
	env, err := wire.Decode(m.Raw)
	if err != nil {
		return nil, err
	}
	switch env.Kind {
	case wire.KindTelemetry:
		v, err := wire.DecodeTelemetry(&env)
		dm.Telemetry = &v
		return dm, err
	case wire.KindFirmware:
		v, err := wire.DecodeBody[wire.Inventory](&env)
		dm.Inventory = &v
		return dm, err
	case wire.KindRFID:
		v, err := wire.DecodeBody[wire.RFID](&env)
		dm.RFID = &v
		return dm, err
	case wire.KindGPS:
		v, err := wire.DecodeBody[wire.GPSFix](&env)
		dm.GPS = &v
		return dm, err
	case wire.KindStatus:
		v, err := wire.DecodeBody[wire.Status](&env)
		dm.Status = &v
		return dm, err
	case wire.KindWorkloads:
		v, err := wire.DecodeBody[wire.Workloads](&env)
		dm.Workloads = &v
		return dm, err
	}
	return nil, fmt.Errorf("kind %q", env.Kind)
}

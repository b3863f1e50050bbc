package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// Errors of Change: no twin for the asset, or a change that would leave it
// invalid (an unknown custody status, another id or revision).
var (
	ErrNoAsset       = errors.New("no such asset")
	ErrInvalidChange = errors.New("invalid change")
)

// change is a tracked-field change made through the API rather than by a
// gateway message (e.g. the detection engine quarantining an asset). It
// goes through the writer like a message, so it is serialised with the
// folds and stored with the next revision.
type change struct {
	asset  string
	actor  string
	note   string
	typ    twin.EventType // set for an event that changes no field (Record)
	src    twin.Source    // Record's source: the actor and the message it rests on
	mutate func(*twin.Asset) error
	event  twin.Event
}

// Change edits one asset's tracked fields as actor: mutate changes a copy of
// the twin, and the difference is stored as one event (Source.Actor set,
// Note explaining it) in the writer's next commit. It returns the event; a
// mutate that changes nothing stores nothing and returns a zero event.
func (in *Ingest) Change(ctx context.Context, asset, actor, note string, mutate func(*twin.Asset) error) (twin.Event, error) {
	if asset == "" || mutate == nil {
		return twin.Event{}, fmt.Errorf("change: asset and mutate are required: %w", ErrInvalidChange)
	}
	return in.change(ctx, &change{asset: asset, actor: actor, note: note, mutate: mutate})
}

func (in *Ingest) change(ctx context.Context, c *change) (twin.Event, error) {
	it := in.pool.Get().(*item)
	it.change = c
	if err := in.enqueueCtx(ctx, it); err != nil {
		return twin.Event{}, err
	}
	ev, err := it.change.event, it.err
	if err == nil {
		err = it.out.Err
	}
	in.release(it)
	return ev, err
}

// SetCustodyStatus moves an asset to a custody status (quarantined, ...).
func (in *Ingest) SetCustodyStatus(ctx context.Context, asset string, status twin.Status, actor, note string) error {
	if !status.Valid() {
		return fmt.Errorf("custody status %q is not one of the statuses", status)
	}
	_, err := in.Change(ctx, asset, actor, note, func(a *twin.Asset) error {
		a.Custody.Status = status
		return nil
	})
	return err
}

// applyChange folds an API change into tx. A failed mutate or a missing
// asset fails this change only (Outcome.Err), not the batch.
func (w *writer) applyChange(tx *twinstore.Tx, c *change, now time.Time) (Outcome, error) {
	cur := w.twins[c.asset]
	if cur == nil {
		return Outcome{Err: fmt.Errorf("asset %s: %w", c.asset, ErrNoAsset)}, nil
	}
	next := *cur
	if err := c.mutate(&next); err != nil {
		return Outcome{Err: err}, nil
	}
	if next.ID != cur.ID || next.Revision != cur.Revision {
		return Outcome{Err: fmt.Errorf("asset %s: id and revision cannot be changed: %w", c.asset, ErrInvalidChange)}, nil
	}
	if !next.Custody.Status.Valid() {
		return Outcome{Err: fmt.Errorf("asset %s: custody status %q: %w", c.asset, next.Custody.Status, ErrInvalidChange)}, nil
	}
	src := c.src
	src.Actor = c.actor
	f := fold{w: w, tx: tx, m: &message{env: wire.Envelope{Time: now}}, now: now, src: src}
	before, updated, seen := cur.Revision, cur.Updated, cur.LastSeen
	a, err := f.record(cur, &next, c.typ, c.note)
	if err != nil {
		return Outcome{}, err
	}
	// The event carries the service time; the twin keeps the reading times
	// of its last message, so readings older than now (a backlog, a
	// simulation) still fold in after the change.
	a.Updated, a.LastSeen = updated, seen
	if a.Revision != before {
		c.event = f.last // as stored: with its id and type
	}
	return Outcome{}, nil
}

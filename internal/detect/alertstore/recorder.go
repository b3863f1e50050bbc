package alertstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/detect/alert"
	"twinchain/internal/twin"
)

// RecordLifecycle makes the store queue every lifecycle step of every alert
// for a LifecycleRecorder. Call it before use, and run the recorder.
func (s *Store) RecordLifecycle() { s.record = true }

// pendingStep is one queued step: alert id and its index in Lifecycle.
type pendingStep struct {
	Alert string `json:"alert"`
	Index int    `json:"index"`
}

// step appends a lifecycle step to a and queues it for recording, in tx.
func (s *Store) step(tx *bolt.Tx, a *alert.Alert, st alert.Step, by string) error {
	if !s.record {
		return nil
	}
	facts := alert.FactsOf(a)
	a.Lifecycle = append(a.Lifecycle, alert.LifecycleEvent{Step: st, By: by, Severity: a.Severity, Count: a.Count, EvidenceHash: facts.EvidenceHash, Facts: &facts})
	b := tx.Bucket(bktSteps)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(pendingStep{Alert: a.ID, Index: len(a.Lifecycle) - 1})
	return b.Put(seqKey(seq), raw)
}

// pendingSteps reads up to limit queued steps, oldest first.
func (s *Store) pendingSteps(limit int) (keys []uint64, steps []pendingStep, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktSteps).Cursor()
		for k, v := c.First(); k != nil && len(steps) < limit; k, v = c.Next() {
			var p pendingStep
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("queued alert step %x: %w", k, err)
			}
			keys, steps = append(keys, binary.BigEndian.Uint64(k)), append(steps, p)
		}
		return nil
	})
	return keys, steps, err
}

// stepDone stores the event id (or the error) of a queued step and drops
// it from the queue.
func (s *Store) stepDone(key uint64, p pendingStep, event uint64, cause error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bktSteps).Delete(seqKey(key)); err != nil {
			return err
		}
		a, err := getAlert(tx, p.Alert)
		if errors.Is(err, alert.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if p.Index < 0 || p.Index >= len(a.Lifecycle) {
			return nil
		}
		l := &a.Lifecycle[p.Index]
		l.Event = event
		if cause != nil {
			l.Error = cause.Error()
		}
		return putAlert(tx, a)
	})
}

// EventRecorder stores a twin event that changes no field (the ingest's
// Record).
type EventRecorder interface {
	Record(ctx context.Context, asset string, src twin.Source, typ twin.EventType, note string) (twin.Event, error)
}

// LifecycleRecorder records the queued lifecycle steps, in order, as twin
// events and stores their event ids in the alerts. A step whose event can
// never be stored (permanent: e.g. the asset has no twin) keeps the error
// instead; any other failure is retried on the next tick. A crash between
// the event and the id being stored records that step again (at least
// once).
type LifecycleRecorder struct {
	store     *Store
	rec       EventRecorder
	permanent func(error) bool
	log       *slog.Logger
	tick      time.Duration

	Recorded atomic.Uint64 // steps stored as twin events
	Failed   atomic.Uint64 // steps given up (permanent errors)
	Retried  atomic.Uint64 // transient failures, retried
}

// NewLifecycleRecorder records store's steps through rec; permanent tells
// the errors of rec that retrying cannot fix.
func NewLifecycleRecorder(store *Store, rec EventRecorder, permanent func(error) bool, log *slog.Logger) *LifecycleRecorder {
	return &LifecycleRecorder{store: store, rec: rec, permanent: permanent, log: log, tick: time.Second}
}

// Run records until ctx ends.
func (r *LifecycleRecorder) Run(ctx context.Context) error {
	t := time.NewTicker(r.tick)
	defer t.Stop()
	for {
		if err := r.round(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("record alert steps", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.store.stepWake:
		case <-t.C:
		}
	}
}

// round records every queued step once.
func (r *LifecycleRecorder) round(ctx context.Context) error {
	for {
		keys, steps, err := r.store.pendingSteps(100)
		if err != nil || len(steps) == 0 {
			return err
		}
		for i, p := range steps {
			a, err := r.store.Get(p.Alert)
			var ev twin.Event
			if err == nil && (p.Index < 0 || p.Index >= len(a.Lifecycle)) {
				err = fmt.Errorf("alert %s has no step %d: %w", p.Alert, p.Index, alert.ErrInvalid)
			}
			if err != nil && !errors.Is(err, alert.ErrNotFound) && !errors.Is(err, alert.ErrInvalid) {
				return err // the store failed: next tick
			}
			if err == nil {
				l := &a.Lifecycle[p.Index]
				ev, err = r.rec.Record(ctx, a.Asset, stepSource(&a, l.Step), l.Step.EventType(), alert.LifecycleNote(a.ID, a.Type, l))
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil && (r.permanent == nil || !r.permanent(err)) {
					if r.Retried.Add(1)%60 == 1 {
						r.log.Warn("alert step not recorded yet; will retry", "alert", p.Alert, "step", l.Step, "err", err)
					}
					return nil // keep the order: retry from this step next tick
				}
			}
			if err != nil {
				r.Failed.Add(1)
				r.log.Warn("alert step not recorded on the event log", "alert", p.Alert, "step", p.Index, "err", err)
			} else {
				r.Recorded.Add(1)
			}
			if err := r.store.stepDone(keys[i], p, ev.ID, err); err != nil {
				return err
			}
		}
	}
}

// stepSource is the source of a step's event: actor "alerts" and, for the
// raised step of an alert whose type puts its evidence on the ledger
// (alert.SignedEvidence), the gateway message its first finding rests on
// (named in its evidence, or the message its first twin event was folded
// from).
func stepSource(a *alert.Alert, step alert.Step) twin.Source {
	src := twin.Source{Actor: "alerts"}
	if step != alert.StepRaised || !alert.SignedEvidence[a.Type] || len(a.Evidence) == 0 {
		return src
	}
	ev := &a.Evidence[0].Evidence
	switch {
	case len(ev.Messages) > 0 && ev.Messages[0].Gateway != "" && ev.Messages[0].Seq != 0:
		src.Gateway, src.Seq = ev.Messages[0].Gateway, ev.Messages[0].Seq
	case len(ev.Events) > 0 && ev.Events[0].Source.Gateway != "" && ev.Events[0].Source.Seq != 0:
		// A twin event folded from a gateway message (a firmware change): that message.
		src.Gateway, src.Seq = ev.Events[0].Source.Gateway, ev.Events[0].Source.Seq
	}
	return src
}

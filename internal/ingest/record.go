package ingest

import (
	"context"
	"fmt"

	"twinchain/internal/twin"
)

// Record stores an event of type typ on an asset that changes no tracked
// field (e.g. alert_raised, its Note naming the alert) as src.Actor, in the
// writer's next commit, with the asset's next revision. src.Gateway and
// src.Seq, when set, name the stored gateway message the event rests on
// (the anchorer records that signed message on the ledger as evidence).
// It returns the stored event.
func (in *Ingest) Record(ctx context.Context, asset string, src twin.Source, typ twin.EventType, note string) (twin.Event, error) {
	if typ == "" || src.Actor == "" || (src.Gateway == "") != (src.Seq == 0) {
		return twin.Event{}, fmt.Errorf("record: event type and actor are required, gateway and seq together: %w", ErrInvalidChange)
	}
	return in.change(ctx, &change{asset: asset, actor: src.Actor, src: src, note: note, typ: typ, mutate: func(*twin.Asset) error { return nil }})
}

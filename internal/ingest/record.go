package ingest

import (
	"context"
	"fmt"

	"twinchain/internal/twin"
)

// Record stores an event of type typ on an asset that changes no tracked
// field (e.g. alert_raised, its Note naming the alert) as actor, in the
// writer's next commit, with the asset's next revision. It returns the
// stored event.
func (in *Ingest) Record(ctx context.Context, asset, actor string, typ twin.EventType, note string) (twin.Event, error) {
	if typ == "" {
		return twin.Event{}, fmt.Errorf("record: event type is required: %w", ErrInvalidChange)
	}
	return in.change(ctx, &change{asset: asset, actor: actor, note: note, typ: typ, mutate: func(*twin.Asset) error { return nil }})
}

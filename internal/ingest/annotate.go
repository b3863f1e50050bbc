package ingest

import "twinchain/internal/twin"

// Annotator explains a change as it is folded: it returns the note to
// store with the event (e.g. "covered by work order WO-3"), or "". It runs
// inside the writer's transaction, so it must be quick and must not call
// back into the ingest. next is the twin after the event.
type Annotator func(e *twin.Event, next *twin.Asset) string

// SetAnnotator installs the annotator for events that carry no note of
// their own. Call it before Run.
func (in *Ingest) SetAnnotator(a Annotator) { in.w.annotate = a }

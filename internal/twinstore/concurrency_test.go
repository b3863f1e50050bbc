package twinstore

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestConcurrentUpdates: the package says every method is safe for
// concurrent use, so Updates from many goroutines store every message and
// event once, at dense positions.
func TestConcurrentUpdates(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "twins.db"))
	defer s.Close()
	const writers, each = 20, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := s.Update(func(tx *Tx) error {
					m := Message{Gateway: fmt.Sprintf("gw-%d", w), Seq: uint64(i + 1), Kind: wire.KindStatus, Time: t0, Recorded: t0, Raw: []byte(fmt.Sprintf("%d/%d", w, i))}
					if err := tx.AppendMessage(&m); err != nil {
						return err
					}
					e := twin.Event{Asset: m.Gateway, Revision: uint64(i + 1), Type: twin.EventRegistered, Time: t0}
					return tx.AppendEvent(&e)
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	msgs, err := s.MessagesAfter(0, 10*writers*each)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, m := range msgs {
		if m.Pos != uint64(i+1) {
			t.Fatalf("message %d at position %d, want dense positions", i, m.Pos)
		}
		seen[string(m.Raw)] = true
	}
	if len(msgs) != writers*each || len(seen) != writers*each {
		t.Errorf("%d concurrent commits stored %d messages (%d distinct), want %d", writers*each, len(msgs), len(seen), writers*each)
	}
	evs, err := s.EventsAfter(0, 10*writers*each)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != writers*each || s.LastEventID() != uint64(writers*each) || s.LastPos() != uint64(writers*each) {
		t.Errorf("events %d, last event id %d, last position %d, want %d each", len(evs), s.LastEventID(), s.LastPos(), writers*each)
	}
}

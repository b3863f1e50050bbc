package twinstore

import (
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestObserve: Asset and Assets return published observations newer than
// the stored ones, and the stored ones when those are as new or newer.
func TestObserve(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "twins.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	put := func(a *twin.Asset) {
		t.Helper()
		if err := s.Update(func(tx *Tx) error {
			if err := tx.AppendMessage(&Message{Gateway: "gw", Seq: a.Health.Samples, Kind: wire.KindTelemetry, Time: t0, Recorded: t0, Raw: []byte("{}")}); err != nil {
				return err
			}
			return tx.PutTwin(a, tx.LastPos())
		}); err != nil {
			t.Fatal(err)
		}
	}
	a := &twin.Asset{ID: "g0", Kind: twin.KindGPU, Health: twin.Health{State: "ok", Samples: 1}, LastSeen: t0}
	put(a)
	live := *a
	live.Health.Samples, live.LastSeen, live.Health.Latest = 5, t0.Add(4*time.Second), &wire.GPUSample{Asset: "g0", TempC: 77}
	s.Observe(s.LastPos()+3, []*twin.Asset{&live})
	check := func(what string, want uint64) {
		t.Helper()
		got, err := s.Asset("g0")
		if err != nil || got.Health.Samples != want {
			t.Errorf("%s: Asset samples = %d (%v), want %d", what, got.Health.Samples, err, want)
		}
		list, _, err := s.Assets(AssetFilter{})
		if err != nil || len(list) != 1 || list[0].Health.Samples != want {
			t.Errorf("%s: Assets = %+v (%v), want one with %d samples", what, list, err, want)
		}
	}
	check("published newer", 5)
	if got, _ := s.Asset("g0"); got.Health.Latest == nil || got.Health.Latest.TempC != 77 || !got.LastSeen.Equal(t0.Add(4*time.Second)) {
		t.Errorf("published observations not applied: %+v", got)
	}
	for range 4 { // a checkpoint stores newer observations: they win
		a.Health.Samples++
		put(a)
	}
	a.Health.Samples = 9
	put(a)
	check("stored newer", 9)
}

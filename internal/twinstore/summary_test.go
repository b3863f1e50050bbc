package twinstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"twinchain/internal/twin"
)

// TestSummaryKept: Summarize's counts follow committed twin writes (a new
// twin, a custody change), ignore a rolled-back transaction, and match a
// fresh count after a restart.
func TestSummaryKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twins.db")
	s := open(t, path)
	put := func(as ...twin.Asset) error {
		return s.Update(func(tx *Tx) error {
			for i := range as {
				if err := tx.PutTwin(&as[i], 0); err != nil {
					return err
				}
			}
			return nil
		})
	}
	gpu := func(id, site string, st twin.Status) twin.Asset {
		a := twin.Asset{ID: id, Kind: twin.KindGPU, Site: site}
		a.Custody.Status = st
		a.Health.State = "ok"
		return a
	}
	if err := put(gpu("g1", "s1", twin.StatusInService)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Summarize(); err != nil { // built from the store here
		t.Fatal(err)
	}
	if err := put(gpu("g2", "s1", twin.StatusInService), gpu("g3", "s2", twin.StatusInService)); err != nil {
		t.Fatal(err)
	}
	if err := put(gpu("g2", "s1", twin.StatusQuarantined)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		a := gpu("g4", "s3", twin.StatusRetired)
		if err := tx.PutTwin(&a, 0); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	want := Summary{Total: 3, ByKind: map[string]int{"gpu": 3}, BySite: map[string]int{"s1": 2, "s2": 1},
		ByStatus: map[string]int{"in_service": 2, "quarantined": 1}, ByHealth: map[string]int{"ok": 3}}
	got, err := s.Summarize()
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Summarize() = %+v, %v, want %+v", got, err, want)
	}
	got.ByKind["gpu"] = 99 // a copy: the store's counts stay
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	if got, err := s.Summarize(); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Summarize() after reopening = %+v, %v, want %+v", got, err, want)
	}
}

// BenchmarkSummarize: GET /stats/assets's counts over 100,000 twins: "scan"
// is the first call after opening the store (what every call cost before
// the counts were kept), "kept" every later one.
func BenchmarkSummarize(b *testing.B) {
	path := filepath.Join(b.TempDir(), "twins.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	err = s.Update(func(tx *Tx) error {
		for i := range 100_000 {
			a := twin.Asset{ID: fmt.Sprintf("srv-s1-%06d.gpu", i), Kind: twin.KindGPU, Site: "s1"}
			a.Custody.Status = twin.StatusInService
			a.Health.State = "ok"
			if err := tx.PutTwin(&a, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	b.Run("scan", func(b *testing.B) {
		for range b.N {
			s, err := Open(path, Options{NoSync: true, ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			if sum, err := s.Summarize(); err != nil || sum.Total != 100_000 {
				b.Fatalf("Summarize = %d, %v", sum.Total, err)
			}
			s.Close()
		}
	})
	b.Run("kept", func(b *testing.B) {
		s, err := Open(path, Options{NoSync: true, ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Summarize(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if sum, err := s.Summarize(); err != nil || sum.Total != 100_000 {
				b.Fatalf("Summarize = %d, %v", sum.Total, err)
			}
		}
	})
}

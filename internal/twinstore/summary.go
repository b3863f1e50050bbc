package twinstore

import (
	"fmt"
	"maps"
	"sync"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/fastjson"
)

// summaryKey is what one twin counts as in a Summary.
type summaryKey struct{ kind, site, status, health string }

// summary keeps the fleet counts of Summarize up to date as twins are
// written, instead of decoding every twin per request (seconds with 100,000
// assets). It is built from the store on first use; committed PutTwins then
// move each twin's key. Setting a twin's key is idempotent, so a commit
// seen both by the build and as a change is counted once.
type summary struct {
	mu    sync.Mutex
	built bool
	byID  map[string]summaryKey
	sum   Summary
}

// apply moves the committed twins' keys; nothing before the first build.
func (s *summary) apply(keys map[string]summaryKey) {
	if len(keys) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.built {
		return
	}
	for id, k := range keys {
		s.set(id, k)
	}
}

func (s *summary) set(id string, k summaryKey) {
	old, ok := s.byID[id]
	if ok && old == k {
		return
	}
	if ok {
		s.count(old, -1)
	}
	s.byID[id] = k
	s.count(k, 1)
}

func (s *summary) count(k summaryKey, n int) {
	add := func(m map[string]int, key string) {
		if m[key] += n; m[key] == 0 {
			delete(m, key)
		}
	}
	s.sum.Total += n
	add(s.sum.ByKind, k.kind)
	add(s.sum.BySite, k.site)
	add(s.sum.ByStatus, k.status)
	add(s.sum.ByHealth, k.health)
}

// get returns a copy of the counts, reading every twin the first time.
func (s *summary) get(db *bolt.DB) (Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.built {
		if err := s.build(db); err != nil {
			return Summary{}, fmt.Errorf("summarize assets: %w", err)
		}
	}
	return Summary{Total: s.sum.Total, ByKind: maps.Clone(s.sum.ByKind), BySite: maps.Clone(s.sum.BySite),
		ByStatus: maps.Clone(s.sum.ByStatus), ByHealth: maps.Clone(s.sum.ByHealth)}, nil
}

// build counts every stored twin; the caller holds mu, so commits that end
// meanwhile apply their keys after it.
func (s *summary) build(db *bolt.DB) error {
	s.byID = map[string]summaryKey{}
	s.sum = Summary{ByKind: map[string]int{}, BySite: map[string]int{}, ByStatus: map[string]int{}, ByHealth: map[string]int{}}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTwins).ForEach(func(k, v []byte) error {
			var a struct {
				Kind    string `json:"kind"`
				Site    string `json:"site"`
				Custody struct {
					Status string `json:"status"`
				} `json:"custody"`
				Health struct {
					State string `json:"state"`
				} `json:"health"`
			}
			if len(v) < 8 {
				return fmt.Errorf("twin %s: short record", k)
			}
			if err := fastjson.Unmarshal(v[8:], &a); err != nil {
				return fmt.Errorf("twin %s: %w", k, err)
			}
			s.set(string(k), summaryKey{a.Kind, a.Site, a.Custody.Status, a.Health.State})
			return nil
		})
	})
	if err != nil {
		return err
	}
	s.built = true
	return nil
}

package twinstore

import (
	"sync"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// observation is a twin's observations (last seen, sample count, latest
// sample, GPS fix) as of message position pos.
type observation struct {
	pos      uint64
	lastSeen time.Time
	samples  uint64
	latest   *wire.GPUSample
	gps      *wire.GPSFix
	workload *twin.Workload
}

// observations are the newest observations of the twins, published by the
// ingest after each commit. The ingest writes a twin's observations to the
// twins bucket only at its checkpoint (every twin of a busy fleet changes
// every second: rewriting them all was most of the store's work), so
// Asset and Assets take the newer of the stored and the published ones: a
// reading is visible as soon as its message is stored. One entry per twin
// at most; they stay valid (they were committed), so none is ever removed.
type observations struct {
	mu sync.RWMutex
	m  map[string]observation
}

// Observe publishes the observations of twins, stored through message
// position pos (committed: after a crash the ingest replays them from the
// message log). The twins are read now, not kept.
func (s *Store) Observe(pos uint64, twins []*twin.Asset) {
	if len(twins) == 0 {
		return
	}
	s.obs.mu.Lock()
	defer s.obs.mu.Unlock()
	if s.obs.m == nil {
		s.obs.m = make(map[string]observation, len(twins))
	}
	for _, a := range twins {
		s.obs.m[a.ID] = observation{pos: pos, lastSeen: a.LastSeen, samples: a.Health.Samples, latest: a.Health.Latest, gps: a.Location.GPS, workload: a.Workload}
	}
}

// observed gives a, read from the store with observations through
// storedPos, the published observations when they are newer.
func (s *Store) observed(a *twin.Asset, storedPos uint64) {
	s.obs.mu.RLock()
	o, ok := s.obs.m[a.ID]
	s.obs.mu.RUnlock()
	if !ok || o.pos <= storedPos {
		return
	}
	a.LastSeen, a.Health.Samples, a.Health.Latest, a.Location.GPS, a.Workload = o.lastSeen, o.samples, o.latest, o.gps, o.workload
}

package rfid

import (
	"sort"
	"time"

	"twinchain/internal/wire"
)

// TagRead is one read of a tag by one reader, before merging.
type TagRead struct {
	Reader    string
	ReadPoint string
	Zone      string
	EPC       string
	RSSI      float64
	HasRSSI   bool
	Antenna   int
	Time      time.Time
}

type mergeKey struct{ reader, epc string }

// Merger merges repeated reads of one tag by one reader within a window into
// one wire.RFIDRead (first seen, last seen, count, best RSSI). A merged read
// is closed when the window since its first read has passed. At most max
// reads are open at once; past that the oldest is closed early. A Merger is
// not safe for concurrent use.
type Merger struct {
	window time.Duration
	max    int
	open   map[mergeKey]*wire.RFIDRead
	closed []wire.RFIDRead
	// ClosedEarly counts merged reads closed before their window because too
	// many were open.
	ClosedEarly uint64
}

// NewMerger returns a Merger with the given window and bound on open reads.
func NewMerger(window time.Duration, max int) *Merger {
	if max < 1 {
		max = 1
	}
	return &Merger{window: window, max: max, open: make(map[mergeKey]*wire.RFIDRead)}
}

// Add merges one read.
func (m *Merger) Add(r TagRead) {
	k := mergeKey{r.Reader, r.EPC}
	if cur, ok := m.open[k]; ok {
		cur.Count++
		if r.Time.After(cur.LastSeen) {
			cur.LastSeen = r.Time
		}
		if r.HasRSSI && (cur.RSSI == 0 || r.RSSI > cur.RSSI) { // 0 means no RSSI yet
			cur.RSSI, cur.Antenna = r.RSSI, r.Antenna
		}
		return
	}
	if len(m.open) >= m.max {
		m.closeOldest()
	}
	rd := &wire.RFIDRead{Reader: r.Reader, ReadPoint: r.ReadPoint, Zone: r.Zone, EPC: r.EPC,
		Antenna: r.Antenna, FirstSeen: r.Time, LastSeen: r.Time, Count: 1}
	if r.HasRSSI {
		rd.RSSI = r.RSSI
	}
	m.open[k] = rd
}

func (m *Merger) closeOldest() {
	var oldest mergeKey
	var first time.Time
	found := false
	for k, r := range m.open {
		if !found || r.FirstSeen.Before(first) {
			oldest, first, found = k, r.FirstSeen, true
		}
	}
	if found {
		m.closed = append(m.closed, *m.open[oldest])
		delete(m.open, oldest)
		m.ClosedEarly++
	}
}

// Open is the number of merged reads still open.
func (m *Merger) Open() int { return len(m.open) }

// Flush returns the merged reads whose window has passed at now (all open
// reads when all is true), ordered by first seen, reader and EPC.
func (m *Merger) Flush(now time.Time, all bool) []wire.RFIDRead {
	out := m.closed
	m.closed = nil
	for k, r := range m.open {
		if all || now.Sub(r.FirstSeen) >= m.window {
			out = append(out, *r)
			delete(m.open, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if !a.FirstSeen.Equal(b.FirstSeen) {
			return a.FirstSeen.Before(b.FirstSeen)
		}
		if a.Reader != b.Reader {
			return a.Reader < b.Reader
		}
		return a.EPC < b.EPC
	})
	return out
}

package embeddedstore

import (
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// WithLayout is o with writes keyed by prefix in buckets of width: ('d',
// 24h) writes as stores did before the bucket layout. The prefixes of
// earlier versions (d, b, c) keep float64 values, others decimal ones.
func WithLayout(o Options, prefix byte, width time.Duration) Options {
	o.layout = layout{prefix, int64(width), !strings.ContainsRune("dbc", rune(prefix))}
	return o
}

// BucketWidth is the width of the buckets writes use.
var BucketWidth = time.Duration(bucketLayout.width)

// LayoutsRead are the prefixes of the layouts s reads, oldest first.
func (s *Store) LayoutsRead() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p []byte
	for _, l := range s.layouts {
		p = append(p, l.prefix)
	}
	return string(p)
}

// Metrics are Pebble's metrics of s.
func (s *Store) Metrics() *pebble.Metrics { return s.db.Metrics() }

// Settle flushes s's memtable and waits until Pebble has run no compaction
// for half a second, so that what a benchmark measures next does not share
// the CPU with the compactions of what it wrote before. (Pebble's estimated
// compaction debt can stay above 0 with nothing left to run.)
func (s *Store) Settle() error {
	if err := s.db.Flush(); err != nil {
		return err
	}
	for idle := 0; idle < 10; {
		idle++
		if s.db.Metrics().Compact.NumInProgress > 0 {
			idle = 0
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

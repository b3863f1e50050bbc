package embeddedstore

import "time"

// WithLayout is o with writes keyed by prefix in buckets of width: ('d',
// 24h) writes as stores did before the bucket layout.
func WithLayout(o Options, prefix byte, width time.Duration) Options {
	o.layout = layout{prefix, int64(width)}
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

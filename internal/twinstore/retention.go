package twinstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Retention bounds the message log and the sequence index. The event log
// and the twins are kept: proofs, the event tree and asset history need
// every event. A message is removed only when the policy allows it and
// every consumer of the log has passed it (see Pruner.Floor). Zero values
// keep everything.
type Retention struct {
	MaxAge      time.Duration `yaml:"max_age"`      // remove messages recorded longer ago than this
	MaxMessages uint64        `yaml:"max_messages"` // keep at most this many of the newest messages
	Interval    time.Duration `yaml:"interval"`     // how often the pruner runs; default 1m
}

// Validate checks the policy.
func (r Retention) Validate() error {
	if r.MaxAge < 0 || r.Interval < 0 {
		return errors.New("store.retention: max_age and interval must not be negative")
	}
	if r.MaxAge > 0 && r.MaxAge < time.Minute {
		return fmt.Errorf("store.retention.max_age %s: at least 1m", r.MaxAge)
	}
	return nil
}

// On reports whether the policy removes anything.
func (r Retention) On() bool { return r.MaxAge > 0 || r.MaxMessages > 0 }

// RetentionCut is the highest message position the policy lets go at
// now: messages recorded before now-MaxAge, and all but the newest
// MaxMessages. It never names the newest message (the store's next
// position is derived from it).
func (s *Store) RetentionCut(r Retention, now time.Time) (uint64, error) {
	last := s.LastPos()
	if !r.On() || last <= 1 {
		return 0, nil
	}
	cut := last - 1
	if r.MaxMessages > 0 {
		cut = min(cut, last-min(last, r.MaxMessages))
	}
	if r.MaxAge == 0 || cut == 0 {
		return cut, nil
	}
	before := now.Add(-r.MaxAge).UnixNano()
	var ageCut uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			pos := binary.BigEndian.Uint64(k)
			if pos > cut || len(v) < 8 || int64(binary.BigEndian.Uint64(v)) >= before {
				return nil
			}
			ageCut = pos
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	return ageCut, nil
}

// PruneStats says what one prune removed.
type PruneStats struct {
	Messages   int    // messages removed
	SeqEntries int    // sequence-index entries removed
	Through    uint64 // every message at or below this position is gone
}

// pruneChunk bounds one prune transaction, so the ingest's commits wait
// for at most one short transaction.
const pruneChunk = 2000

// PruneMessages removes the messages at positions up to through (never
// the newest; 0: none) in short transactions, then the sequence-index
// entries of removed messages whose sequence number lies keepSeqs or more
// below their gateway's highest: the ingest rejects those numbers as older
// than its window without the index, and still needs the entries inside
// it. Entries kept for the window go in a later prune, once their gateway
// has moved on.
func (s *Store) PruneMessages(ctx context.Context, through, keepSeqs uint64) (PruneStats, error) {
	var st PruneStats
	through = min(through, s.LastPos()-min(s.LastPos(), 1))
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		n, err := s.pruneChunk(through, &st)
		if err != nil {
			return st, fmt.Errorf("prune messages through %d: %w", through, err)
		}
		if n < pruneChunk {
			break
		}
	}
	gone := s.FirstPos() - 1 // every message below the oldest kept is gone
	if err := s.pruneSeqs(ctx, gone, keepSeqs, &st); err != nil {
		return st, fmt.Errorf("prune the sequence index through %d: %w", gone, err)
	}
	return st, nil
}

func (s *Store) pruneChunk(through uint64, st *PruneStats) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		for k, _ := c.First(); k != nil && n < pruneChunk; k, _ = c.First() {
			pos := binary.BigEndian.Uint64(k)
			if pos > through {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
			st.Messages++
			st.Through = pos
		}
		return nil
	})
	return n, err
}

// seqGroup is one gateway epoch's entries in the sequence index.
type seqGroup struct {
	prefix  []byte // gateway 0x00 epoch(8)
	highest uint64
}

// seqGroups lists every gateway epoch in the sequence index with its
// highest sequence number.
func (s *Store) seqGroups() ([]seqGroup, error) {
	var out []seqGroup
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSeqs).Cursor()
		k, _ := c.First()
		for k != nil {
			if len(k) < 18 || k[len(k)-17] != 0 {
				k, _ = c.Next() // not a gateway 0x00 epoch seq key
				continue
			}
			prefix := bytes.Clone(k[:len(k)-8])
			top := binary.BigEndian.AppendUint64(bytes.Clone(prefix), math.MaxUint64)
			last, _ := c.Seek(top)
			if !bytes.Equal(last, top) {
				if last == nil {
					last, _ = c.Last()
				} else {
					last, _ = c.Prev()
				}
			}
			out = append(out, seqGroup{prefix, binary.BigEndian.Uint64(last[len(prefix):])})
			k, _ = c.Next()
		}
		return nil
	})
	return out, err
}

// pruneSeqs walks each gateway epoch's index entries from its lowest
// sequence number and removes them while their message is gone (position at
// most through) and they lie keepSeqs or more below the epoch's highest. An
// old epoch (a gateway since re-keyed) keeps its newest keepSeqs entries,
// so its messages stay refused as replays if the key ever comes back.
func (s *Store) pruneSeqs(ctx context.Context, through, keepSeqs uint64, st *PruneStats) error {
	groups, err := s.seqGroups()
	if err != nil {
		return err
	}
	for _, g := range groups {
		h, prefix := g.highest, g.prefix
		if h < keepSeqs {
			continue
		}
		for done := false; !done; {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := func() error {
				s.wmu.Lock()
				defer s.wmu.Unlock()
				return s.db.Update(func(tx *bolt.Tx) error {
					c := tx.Bucket(bucketSeqs).Cursor()
					n := 0
					for k, v := c.Seek(prefix); ; k, v = c.Seek(prefix) {
						if n == pruneChunk {
							return nil
						}
						if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 || len(v) != 40 ||
							binary.BigEndian.Uint64(k[len(prefix):]) > h-keepSeqs || binary.BigEndian.Uint64(v) > through {
							done = true
							return nil
						}
						if err := c.Delete(); err != nil {
							return err
						}
						n++
						st.SeqEntries++
					}
				})
			}()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// FirstPos is the position of the oldest message kept (0 when none).
func (s *Store) FirstPos() uint64 {
	var pos uint64
	_ = s.db.View(func(tx *bolt.Tx) error { // fails only when closed: then 0
		if k, _ := tx.Bucket(bucketMessages).Cursor().First(); len(k) == 8 {
			pos = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return pos
}

// Pruner applies a Retention to a store in the background.
type Pruner struct {
	Store     *Store
	Retention Retention
	// Floor is the highest position every consumer of the message log has
	// passed (their cursors, the ingest's observation checkpoint): nothing
	// above it is removed, whatever the policy says.
	Floor func() (uint64, error)
	// KeepSeqs is the ingest's sequence window: index entries within it
	// of their gateway's highest are kept.
	KeepSeqs uint64
	Log      *slog.Logger
	Now      func() time.Time

	heldBack bool
}

// Run prunes every Retention.Interval until ctx ends. A failed prune (a
// full disk) is logged and tried again at the next interval.
func (p *Pruner) Run(ctx context.Context) error {
	if !p.Retention.On() {
		return nil
	}
	every := p.Retention.Interval
	if every <= 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if _, err := p.Once(ctx); err != nil && ctx.Err() == nil {
			p.Log.Warn("message log retention failed; trying again later", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Once prunes what the policy and the consumers allow now.
func (p *Pruner) Once(ctx context.Context) (PruneStats, error) {
	cut, err := p.Store.RetentionCut(p.Retention, p.Now())
	if err != nil {
		return PruneStats{}, err
	}
	floor, err := p.Floor()
	if err != nil {
		return PruneStats{}, err
	}
	if cut > 0 && floor < cut {
		if !p.heldBack {
			p.Log.Warn("message log retention held back: a consumer has not passed the messages due for removal", "due_through", cut, "consumers_at", floor)
		}
		p.heldBack = true
		cut = floor
	} else if p.heldBack {
		p.heldBack = false
		p.Log.Info("message log retention caught up", "through", cut)
	}
	// Even with no message due, index entries kept for a gateway's window
	// may have become due as it moved on.
	st, err := p.Store.PruneMessages(ctx, cut, p.KeepSeqs)
	if st.Messages > 0 {
		p.Log.Debug("message log pruned", "messages", st.Messages, "seq_entries", st.SeqEntries, "through", st.Through)
	}
	return st, err
}

package ingest

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// stream is one gateway's sequence state: the stored state and a bitmap of
// the sequence numbers stored in the window (highest-W, highest].
type stream struct {
	st    twinstore.GatewayState
	bits  []uint64
	dirty bool // changed in this batch (writer.dirtyStates)
	// must: changed in this batch beyond what replay re-derives from the
	// message log (see writer.replayState): written with the batch.
	must bool
	// pending: changed only in what replay re-derives since it was last
	// written, first by the message at since: written CheckpointInterval
	// later (writer.stQueue), and the checkpoint stays before since.
	pending bool
	since   uint64
	// seqs: the sequence-index entries of the messages stored since the
	// state was last written, written with it (putState): the index is
	// complete through the state's position and replay re-derives the
	// rest from the message log, like the state itself.
	seqs []seqEntry
}

// seqEntry is a sequence-index entry not written yet: the message of the
// stream's epoch with sequence number seq is at pos, with SHA-256 sum.
type seqEntry struct {
	epoch, seq, pos uint64
	sum             [32]byte
}

// storedSum returns the SHA-256 of the stored message seq of the stream's
// epoch, looking at the entries not written yet before the index.
func (s *stream) storedSum(tx *twinstore.Tx, seq uint64) ([32]byte, bool) {
	for i := len(s.seqs) - 1; i >= 0; i-- {
		if e := &s.seqs[i]; e.seq == seq && e.epoch == s.st.Epoch {
			return e.sum, true
		}
	}
	_, sum, ok := tx.SeqEntry(s.st.Gateway, s.st.Epoch, seq)
	return sum, ok
}

func (s *stream) bit(seq uint64) (word int, mask uint64) {
	i := seq % uint64(len(s.bits)*64)
	return int(i / 64), 1 << (i % 64)
}

func (s *stream) has(seq uint64) bool {
	w, m := s.bit(seq)
	return s.bits[w]&m != 0
}

func (s *stream) set(seq uint64) {
	w, m := s.bit(seq)
	s.bits[w] |= m
}

// advance moves the highest sequence number to seq, clearing the bits of
// the numbers jumped over.
func (s *stream) advance(seq uint64) {
	window := uint64(len(s.bits) * 64)
	if seq-s.st.Highest >= window {
		clear(s.bits)
	} else {
		for n := s.st.Highest + 1; n < seq; n++ {
			w, m := s.bit(n)
			s.bits[w] &^= m
		}
	}
	s.st.Highest = seq
	s.set(seq)
}

// writer is the state the Run goroutine owns: the twins, the tag index and
// every gateway's stream. It is changed only inside a store transaction and
// reloaded from the store when a commit fails.
type writer struct {
	cfg     Config
	store   *twinstore.Store
	log     *slog.Logger
	now     func() time.Time
	twins   map[string]*twin.Asset
	tags    map[string]string // RFID EPC -> asset id
	streams map[string]*stream

	dirtyTwins  map[string]*twin.Asset // tracked changes: written in this batch
	obsDirty    map[string]*twin.Asset // observation changes not written yet
	obsQueue    []obsEntry             // the same twins by when they became dirty, oldest first (from obsHead)
	obsHead     int
	obsNew      []*twin.Asset // observation changes of this batch: published after its commit (twinstore.Observe)
	dirtyStates []string
	stQueue     []stEntry // streams with pending changes, oldest first (from stHead)
	stHead      int
	words       int // bitmap words per stream

	obsPos map[string]uint64 // while replaying: each twin's stored observation position

	annotate Annotator // optional: notes on events (annotate.go)
}

func loadWriter(cfg Config, store *twinstore.Store, log *slog.Logger, now func() time.Time) (*writer, error) {
	w := &writer{cfg: cfg, store: store, log: log, now: now, words: int((cfg.SeqWindow + 63) / 64)}
	if err := w.reload(); err != nil {
		return nil, err
	}
	return w, nil
}

// reload rebuilds the writer's state from the store.
func (w *writer) reload() error {
	w.twins = map[string]*twin.Asset{}
	w.tags = map[string]string{}
	w.streams = map[string]*stream{}
	w.dirtyTwins = map[string]*twin.Asset{}
	w.obsDirty = map[string]*twin.Asset{}
	w.obsQueue, w.obsHead = w.obsQueue[:0], 0
	w.dirtyStates = w.dirtyStates[:0]
	w.stQueue, w.stHead = w.stQueue[:0], 0
	w.obsNew = w.obsNew[:0]
	w.obsPos = map[string]uint64{}
	err := w.store.ForEachTwin(func(a *twin.Asset, pos uint64) error {
		w.twins[a.ID] = a
		w.obsPos[a.ID] = pos
		if a.Identity.RFIDTag != "" {
			w.tags[a.Identity.RFIDTag] = a.ID
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load twins: %w", err)
	}
	states, err := w.store.GatewayStates()
	if err != nil {
		return err
	}
	window := uint64(w.words * 64)
	for _, st := range states {
		s := &stream{st: st, bits: make([]uint64, w.words)}
		min := uint64(0)
		if st.Highest > window {
			min = st.Highest - window
		}
		if err := w.store.SeqsAbove(st.Gateway, st.Epoch, min, s.set); err != nil {
			return fmt.Errorf("load sequence window of %s: %w", st.Gateway, err)
		}
		w.streams[st.Gateway] = s
	}
	checkpoint, err := w.store.Checkpoint()
	if err != nil {
		return err
	}
	n, err := w.replay(checkpoint)
	if err != nil {
		return err
	}
	if n > 0 {
		w.log.Info("replayed observations after the last checkpoint", "messages", n, "from", checkpoint+1)
	}
	w.obsPos = nil
	return nil
}

// replay re-applies the observations (sample counts, latest samples, last
// seen, GPS fixes) of the messages stored after the checkpoint to the twins
// whose stored observations predate them. Tracked fields and events are
// already stored with their messages, so replay records no event.
func (w *writer) replay(checkpoint uint64) (int, error) {
	n := 0
	for pos := checkpoint; ; {
		msgs, err := w.store.MessagesAfter(pos, 1000)
		if err != nil {
			return n, err
		}
		if len(msgs) == 0 {
			return n, nil
		}
		for i := range msgs {
			sm := &msgs[i]
			pos = sm.Pos
			w.replayState(sm)
			m := message{raw: sm.Raw}
			if m.env, err = wire.Decode(sm.Raw); err == nil {
				err = m.decodeBody()
			}
			if err != nil {
				return n, fmt.Errorf("replay message %d: %w", sm.Pos, err)
			}
			if gw := w.twins[m.env.Gateway]; gw != nil {
				m.site = gw.Site
			}
			f := fold{w: w, m: &m, replay: true, pos: sm.Pos, now: sm.Recorded}
			gw, err := f.gateway()
			if err != nil {
				return n, err
			}
			if err := f.apply(gw, nil); err != nil {
				return n, err
			}
			n++
		}
	}
}

// replayState re-applies to its gateway's stream what a stored message
// changed there and its stored state may predate (stored with an older
// position): the sequence window and index entry, accepted count, last
// seen, recorded. A
// message that changed more (a new epoch, a gap, a last will, a status)
// had its state written with it (stream.must), so only these remain.
func (w *writer) replayState(sm *twinstore.Message) {
	s := w.streams[sm.Gateway]
	if s == nil || sm.Seq == 0 || s.st.Pos == 0 || sm.Pos <= s.st.Pos {
		return
	}
	if sm.Seq > s.st.Highest {
		s.advance(sm.Seq)
	} else {
		s.set(sm.Seq)
	}
	s.seqs = append(s.seqs, seqEntry{s.st.Epoch, sm.Seq, sm.Pos, sha256.Sum256(sm.Raw)})
	s.st.Accepted++
	s.st.Recorded = sm.Recorded
	if sm.Time.After(s.st.LastSeen) {
		s.st.LastSeen = sm.Time
	}
	if !s.pending {
		s.pending, s.since = true, sm.Pos
		w.stQueue = append(w.stQueue, stEntry{s, sm.Pos, w.now()})
	}
}

// stEntry is a stream with pending changes since the message at pos, at
// time at.
type stEntry struct {
	s   *stream
	pos uint64
	at  time.Time
}

func (w *writer) stream(gw string) *stream {
	s := w.streams[gw]
	if s == nil {
		s = &stream{st: twinstore.GatewayState{Gateway: gw}, bits: make([]uint64, w.words)}
		w.streams[gw] = s
	}
	return s
}

// snapshotStates copies the named gateways' states, or all when ids is nil.
func (w *writer) snapshotStates(ids []string) []twinstore.GatewayState {
	if ids == nil {
		out := make([]twinstore.GatewayState, 0, len(w.streams))
		for _, s := range w.streams {
			out = append(out, s.st)
		}
		return out
	}
	out := make([]twinstore.GatewayState, 0, len(ids))
	for _, id := range ids {
		out = append(out, w.streams[id].st)
	}
	return out
}

// apply checks the sequence numbers of a batch, folds the accepted messages
// and writes everything into tx.
func (w *writer) apply(tx *twinstore.Tx, batch []*item, now time.Time) error {
	for _, it := range batch {
		if it.change != nil {
			out, err := w.applyChange(tx, it.change, now)
			if err != nil {
				return err
			}
			it.out = out
			continue
		}
		out, err := w.applyOne(tx, &it.m, now)
		if err != nil {
			return err
		}
		it.out = out
	}
	for _, a := range w.dirtyTwins {
		if err := tx.PutTwin(a, tx.LastPos()); err != nil {
			return err
		}
	}
	clear(w.dirtyTwins)
	for _, id := range w.dirtyStates {
		s := w.streams[id]
		s.dirty = false
		if s.must {
			if err := w.putState(tx, s); err != nil {
				return err
			}
		}
	}
	if w.due(now) {
		if err := w.checkpoint(tx, now, false); err != nil {
			return err
		}
	}
	return nil
}

// putState writes a stream's state and its sequence-index entries not
// written yet, current through the transaction's newest message.
func (w *writer) putState(tx *twinstore.Tx, s *stream) error {
	if err := putSeqs(tx, s); err != nil {
		return err
	}
	s.must, s.pending = false, false
	s.st.Pos = tx.LastPos()
	return tx.PutGatewayState(&s.st)
}

// putSeqs writes the stream's sequence-index entries not written yet.
func putSeqs(tx *twinstore.Tx, s *stream) error {
	for i := range s.seqs {
		e := &s.seqs[i]
		if err := tx.PutSeq(s.st.Gateway, e.epoch, e.seq, e.pos, &e.sum); err != nil {
			return err
		}
	}
	s.seqs = s.seqs[:0]
	return nil
}

// applyOne decides whether a checked message is new, stores it and folds it.
func (w *writer) applyOne(tx *twinstore.Tx, m *message, now time.Time) (Outcome, error) {
	e := &m.env
	if out, ok := w.claim(m); !ok {
		return out, nil
	}
	s := w.stream(e.Gateway)
	before := s.st
	if e.Seq > 0 && e.Epoch != s.st.Epoch {
		if err := w.newEpoch(tx, s, e.Epoch); err != nil {
			return Outcome{}, err
		}
	}
	prevHighest := s.st.Highest
	if e.Seq == 0 {
		switch {
		case e.Time.Equal(s.st.LastWill):
			return Outcome{Reason: ReasonDuplicate, Err: fmt.Errorf("last will of %s already stored", e.Time.Format(time.RFC3339Nano))}, nil
		case e.Time.Before(s.st.LastWill):
			return Outcome{Reason: ReasonReplay, Err: fmt.Errorf("last will of %s is older than the stored one", e.Time.Format(time.RFC3339Nano))}, nil
		}
		s.st.LastWill = e.Time
	} else {
		if out, seen := w.seen(tx, s, e.Seq, &m.sum); seen {
			return out, nil
		}
		if e.Seq > s.st.Highest {
			s.advance(e.Seq)
		} else {
			s.set(e.Seq)
		}
	}
	msg := twinstore.Message{Gateway: e.Gateway, Seq: e.Seq, Kind: e.Kind, Time: e.Time, Recorded: now, Raw: m.raw}
	if err := tx.AppendMessage(&msg); err != nil {
		return Outcome{}, err
	}
	if e.Seq > 0 {
		// Its index entry is written with the stream's state (putState).
		s.seqs = append(s.seqs, seqEntry{e.Epoch, e.Seq, msg.Pos, m.sum})
	}
	s.st.Accepted++
	s.st.Recorded = now
	if e.Time.After(s.st.LastSeen) {
		s.st.LastSeen = e.Time
	}
	if !s.dirty {
		s.dirty = true
		w.dirtyStates = append(w.dirtyStates, e.Gateway)
	}
	f := fold{w: w, tx: tx, m: m, now: now, pos: msg.Pos, src: twin.Source{Gateway: e.Gateway, Seq: e.Seq}}
	gw, err := f.gateway()
	if err != nil {
		return Outcome{}, err
	}
	if prevHighest > 0 && e.Seq > prevHighest+1 {
		s.st.Gaps++
		s.st.Skipped += e.Seq - prevHighest - 1
		note := fmt.Sprintf("sequence jumped from %d to %d: %d missing so far", prevHighest, e.Seq, e.Seq-prevHighest-1)
		if _, err := f.record(gw, gw, twin.EventSequenceGap, note); err != nil {
			return Outcome{}, err
		}
	}
	if err := f.apply(gw, s); err != nil {
		return Outcome{}, err
	}
	w.stateChanged(s, before, msg.Pos, now)
	return Outcome{Pos: msg.Pos}, nil
}

// stateChanged decides when the stream's state changed by one message (from
// before) is written: with the batch if more changed than replayState
// re-derives from the log, else CheckpointInterval later. A busy gateway's
// state is then written every CheckpointInterval, not with every message
// (a random bbolt page and its JSON each).
func (w *writer) stateChanged(s *stream, before twinstore.GatewayState, pos uint64, now time.Time) {
	after := s.st
	after.Highest, after.Accepted, after.Recorded, after.LastSeen = before.Highest, before.Accepted, before.Recorded, before.LastSeen
	if after != before {
		s.must = true
		return
	}
	if !s.pending {
		s.pending, s.since = true, pos
		w.stQueue = append(w.stQueue, stEntry{s, pos, now})
	}
}

// claim checks the assets the message reports that no gateway lists (its
// gateway has none): each must be new, or already reported by this gateway
// (twin.Gateway), at its site. An asset another gateway reports, a gateway
// or another site's asset is refused as unbound_asset: a gateway without
// an asset list never writes another gateway's assets.
func (w *writer) claim(m *message) (Outcome, bool) {
	gw := m.env.Gateway
	for _, id := range m.unclaimed {
		a := w.twins[id]
		switch {
		case a == nil:
		case a.Kind == twin.KindGateway:
			return Outcome{Reason: ReasonUnboundAsset, Err: fmt.Errorf("asset %s is a gateway, not bound to gateway %s", id, gw)}, false
		case a.Gateway != "" && a.Gateway != gw:
			return Outcome{Reason: ReasonUnboundAsset, Err: fmt.Errorf("asset %s is reported by gateway %s, not bound to gateway %s", id, a.Gateway, gw)}, false
		case a.Site != m.site:
			return Outcome{Reason: ReasonUnboundAsset, Err: fmt.Errorf("asset %s is at site %s, gateway %s at %s", id, a.Site, gw, m.site)}, false
		}
	}
	return Outcome{}, true
}

// MaxSeqJump is how far above a stream's highest sequence number a message
// may be. One further is refused as seq_too_far and moves nothing: a single
// signed message with sequence 2^64-1 would otherwise end the stream. The
// first message of a stream (a new key's epoch) may start anywhere up to
// MaxSeq: an agent re-keyed after years keeps its counter.
const (
	MaxSeqJump = 1_000_000
	MaxSeq     = 1 << 62
)

// newEpoch makes epoch the gateway's current stream: its window is what the
// sequence index holds for that epoch (nothing for a new key, whose agent
// starts again at 1; the old stream if a key comes back). The entries not
// written yet are written first, so the index holds every epoch's.
func (w *writer) newEpoch(tx *twinstore.Tx, s *stream, epoch uint64) error {
	if err := putSeqs(tx, s); err != nil {
		return err
	}
	w.log.Info("gateway starts a new sequence epoch", "gateway", s.st.Gateway, "epoch", epoch, "previous_epoch", s.st.Epoch, "previous_highest", s.st.Highest)
	s.st.Epoch = epoch
	s.st.Highest = tx.HighestSeq(s.st.Gateway, epoch)
	clear(s.bits)
	window := uint64(len(s.bits) * 64)
	tx.SeqsAbove(s.st.Gateway, epoch, s.st.Highest-min(s.st.Highest, window), s.set)
	s.must = true // replay does not re-derive an epoch: written with the batch, even if its message is refused
	if !s.dirty {
		s.dirty = true
		w.dirtyStates = append(w.dirtyStates, s.st.Gateway)
	}
	return nil
}

// seen reports whether seq must not be applied: it is stored already (a
// duplicate when the bytes are the same, a replay otherwise), it is older
// than the window, or it is too far (seq_too_far: more than MaxSeqJump
// above the highest of a stream that has one, or above MaxSeq).
func (w *writer) seen(tx *twinstore.Tx, s *stream, seq uint64, sum *[32]byte) (Outcome, bool) {
	if seq > MaxSeq || s.st.Highest > 0 && seq > s.st.Highest && seq-s.st.Highest > MaxSeqJump {
		return Outcome{Reason: ReasonSeqTooFar, Err: fmt.Errorf("sequence %d is more than %d above the highest %d (or above %d)", seq, MaxSeqJump, s.st.Highest, uint64(MaxSeq))}, true
	}
	window := uint64(len(s.bits) * 64)
	inWindow := seq > s.st.Highest || s.st.Highest-seq < window
	if inWindow && (seq > s.st.Highest || !s.has(seq)) {
		return Outcome{}, false
	}
	if stored, ok := s.storedSum(tx, seq); ok {
		if stored == *sum {
			return Outcome{Reason: ReasonDuplicate, Err: fmt.Errorf("sequence %d already stored", seq)}, true
		}
		return Outcome{Reason: ReasonReplay, Err: fmt.Errorf("sequence %d already stored with other content", seq)}, true
	}
	if inWindow {
		// The bitmap says stored but the index does not: trust the index.
		return Outcome{}, false
	}
	return Outcome{Reason: ReasonReplay, Err: fmt.Errorf("sequence %d is older than the window below %d", seq, s.st.Highest)}, true
}

// dirty marks a twin whose tracked fields changed: it is written at the
// end of the batch.
func (w *writer) dirty(a *twin.Asset) {
	w.dirtyTwins[a.ID] = a
	delete(w.obsDirty, a.ID)
}

// obsEntry is a twin whose observations changed since it was last
// written: since the message at pos, at time at.
type obsEntry struct {
	a   *twin.Asset
	pos uint64
	at  time.Time
}

// observed marks a twin whose observations changed with the message at
// pos: it is written CheckpointInterval after it became dirty (or with a
// batch, if its tracked fields change too).
func (w *writer) observed(a *twin.Asset, pos uint64, now time.Time) {
	if _, ok := w.dirtyTwins[a.ID]; ok || w.twins[a.ID] != a {
		return
	}
	if _, ok := w.obsDirty[a.ID]; !ok {
		w.obsDirty[a.ID] = a
		w.obsQueue = append(w.obsQueue, obsEntry{a, pos, now})
	}
	w.obsNew = append(w.obsNew, a)
}

// due reports whether the oldest unwritten observations are
// CheckpointInterval old.
func (w *writer) due(now time.Time) bool {
	return w.obsHead < len(w.obsQueue) && now.Sub(w.obsQueue[w.obsHead].at) >= w.cfg.CheckpointInterval ||
		w.stHead < len(w.stQueue) && now.Sub(w.stQueue[w.stHead].at) >= w.cfg.CheckpointInterval
}

// checkpoint writes the twins whose observations changed CheckpointInterval
// ago or earlier (all of them when all is set), and records the position
// through which every twin's observations are stored: the message before
// the oldest unwritten change. A busy fleet's twins are thus written a
// share in each commit, each about every CheckpointInterval, not all in one
// transaction that holds every acknowledgement up.
func (w *writer) checkpoint(tx *twinstore.Tx, now time.Time, all bool) error {
	for ; w.obsHead < len(w.obsQueue); w.obsHead++ {
		e := &w.obsQueue[w.obsHead]
		if w.obsDirty[e.a.ID] != e.a {
			continue // written since, with a tracked change
		}
		if !all && now.Sub(e.at) < w.cfg.CheckpointInterval {
			break
		}
		if err := tx.PutTwin(e.a, tx.LastPos()); err != nil {
			return err
		}
		delete(w.obsDirty, e.a.ID)
	}
	if w.obsHead > len(w.obsQueue)/2 { // reuse the queue's front
		n := copy(w.obsQueue, w.obsQueue[w.obsHead:])
		clear(w.obsQueue[n:])
		w.obsQueue, w.obsHead = w.obsQueue[:n], 0
	}
	through := tx.LastPos()
	if w.obsHead < len(w.obsQueue) {
		through = w.obsQueue[w.obsHead].pos - 1
	}
	for ; w.stHead < len(w.stQueue); w.stHead++ {
		e := &w.stQueue[w.stHead]
		if !e.s.pending || e.s.since != e.pos {
			continue // written since
		}
		if !all && now.Sub(e.at) < w.cfg.CheckpointInterval {
			through = min(through, e.pos-1)
			break
		}
		if err := w.putState(tx, e.s); err != nil {
			return err
		}
	}
	if w.stHead > len(w.stQueue)/2 {
		n := copy(w.stQueue, w.stQueue[w.stHead:])
		clear(w.stQueue[n:])
		w.stQueue, w.stHead = w.stQueue[:n], 0
	}
	return tx.SetCheckpoint(through)
}

// pendingStates reports whether a stream's state waits to be written.
func (w *writer) pendingStates() bool {
	for _, e := range w.stQueue[w.stHead:] {
		if e.s.pending && e.s.since == e.pos {
			return true
		}
	}
	return false
}

package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"twinchain/internal/latency"
	"twinchain/internal/twinstore"
)

// maxTrackedGateways bounds the per-gateway rejection counters: claimed ids
// beyond it (an attacker inventing gateway ids) are counted under otherGateway.
const (
	maxTrackedGateways = 4096
	otherGateway       = "_other"
	logEvery           = time.Minute
)

// Rejection is one rejected message, kept for the tamper detector.
type Rejection struct {
	Time    time.Time `json:"time"`
	Gateway string    `json:"gateway"`
	Seq     uint64    `json:"seq"`
	Reason  Reason    `json:"reason"`
	Error   string    `json:"error"`
	Source  Source    `json:"source"` // where it came from (the gateway id above is only claimed)
}

// GatewayStats is one gateway's ingest figures.
type GatewayStats struct {
	Gateway  string            `json:"gateway"`
	Accepted uint64            `json:"accepted"`
	Rejected map[Reason]uint64 `json:"rejected"`
	LastSeq  uint64            `json:"last_seq"`
	Gaps     uint64            `json:"gaps"`
	Skipped  uint64            `json:"skipped"`
	// UnknownTags counts RFID reads ignored since the process started: no
	// asset carries the tag, or it is another site's.
	UnknownTags uint64    `json:"unknown_tags,omitempty"`
	State       string    `json:"state,omitempty"`
	LastSeen    time.Time `json:"last_seen"`
	// From the agent's newest numbered status; zero until its first one
	// (StatusTime zero).
	AgentVersion string    `json:"agent_version,omitempty"`
	QueueDepth   int       `json:"queue_depth"`
	Dropped      uint64    `json:"dropped"`
	DroppedSeqs  [2]uint64 `json:"dropped_seqs,omitzero"` // [first, last] of the newest dropped range
	StatusTime   time.Time `json:"status_time,omitzero"`
}

// Stats is a snapshot of the ingest's counters. Accepted and the gateway
// stream figures survive restarts (they are stored); rejection counts are
// counted since the process started.
type Stats struct {
	Accepted       uint64            `json:"accepted"`
	Rejected       map[Reason]uint64 `json:"rejected"`
	Commits        uint64            `json:"commits"`
	CommitFailures uint64            `json:"commit_failures"`
	CommitSeconds  float64           `json:"commit_seconds"` // total time spent committing
	QueueDepth     int               `json:"queue_depth"`
	UnknownTags    uint64            `json:"unknown_tags"` // RFID reads ignored (see GatewayStats.UnknownTags)
	Gateways       []GatewayStats    `json:"gateways"`
	// Sources counts the rejections by where they came from (Source.Key),
	// whatever gateway they claimed; sources beyond 4096 are counted under
	// "_other".
	Sources []SourceStats `json:"sources"`
	// Stages is where stored messages spent their time in the ingest,
	// since the process started (in /metrics only).
	Stages StageStats `json:"-"`
}

// SourceStats is one source's rejections, by reason.
type SourceStats struct {
	Source   string            `json:"source"`
	Rejected map[Reason]uint64 `json:"rejected"`
}

type rejKey struct {
	gw     string
	reason Reason
}

type logState struct {
	last       time.Time
	suppressed int
}

type stats struct {
	mu             sync.Mutex
	rejected       map[Reason]uint64
	byGateway      map[rejKey]uint64
	gateways       map[string]twinstore.GatewayState
	commits        uint64
	commitFailures uint64
	commitTime     time.Duration
	recent         []Rejection
	next           int
	logged         map[rejKey]*logState
	unknownTags    map[string]uint64 // by gateway (registered gateways only: their messages were accepted)
	stages         stages            // where stored messages waited (atomic counters)
	bySource       map[rejKey]uint64 // rejections by source key (in gw) and reason
}

func (s *stats) init(recent int) {
	s.rejected = map[Reason]uint64{}
	s.byGateway = map[rejKey]uint64{}
	s.gateways = map[string]twinstore.GatewayState{}
	s.recent = make([]Rejection, 0, recent)
	s.logged = map[rejKey]*logState{}
	s.unknownTags = map[string]uint64{}
	s.bySource = map[rejKey]uint64{}
}

func (s *stats) setGateways(states []twinstore.GatewayState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range states {
		s.gateways[st.Gateway] = st
	}
}

// reject counts one rejection, remembers it and logs it unless this
// gateway's reason was logged less than a minute ago.
func (s *stats) reject(log *slog.Logger, now time.Time, r *rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectLocked(log, now, r)
}

func (s *stats) rejectLocked(log *slog.Logger, now time.Time, r *rejection) {
	r.detach()
	s.rejected[r.reason]++
	k := rejKey{r.gateway, r.reason}
	if _, ok := s.byGateway[k]; !ok && len(s.byGateway) >= maxTrackedGateways*len(Reasons) {
		k.gw = otherGateway
	}
	s.byGateway[k]++
	k = rejKey{r.src.Key(), r.reason}
	if _, ok := s.bySource[k]; !ok && len(s.bySource) >= maxTrackedGateways*len(Reasons) {
		k.gw = otherGateway
	}
	s.bySource[k]++
	s.remember(log, now, r)
}

// detach copies the strings of r that the stats keep (the ring, the maps'
// keys): they may point into the message's bytes (the embedded broker's
// topic and client id alias the whole packet, up to 260 KiB), which a kept
// rejection would otherwise keep alive: 1,024 rejections of 200 KB
// messages held 200 MB.
func (r *rejection) detach() {
	r.gateway = strings.Clone(r.gateway)
	r.src.Client, r.src.Remote = strings.Clone(r.src.Client), strings.Clone(r.src.Remote)
}

// remember puts r in the Recent ring and logs it unless its gateway's
// reason was logged less than a minute ago.
func (s *stats) remember(log *slog.Logger, now time.Time, r *rejection) {
	k := rejKey{r.gateway, r.reason}
	msg := ""
	if r.err != nil {
		msg = r.err.Error()
	}
	rj := Rejection{Time: now, Gateway: r.gateway, Seq: r.seq, Reason: r.reason, Error: msg, Source: r.src}
	if len(s.recent) < cap(s.recent) {
		s.recent = append(s.recent, rj)
	} else if len(s.recent) > 0 {
		s.recent[s.next] = rj
		s.next = (s.next + 1) % len(s.recent)
	}
	ls := s.logged[k]
	if ls == nil {
		if len(s.logged) >= maxTrackedGateways {
			clear(s.logged)
		}
		ls = &logState{}
		s.logged[k] = ls
	}
	if !ls.last.IsZero() && now.Sub(ls.last) < logEvery {
		ls.suppressed++
		return
	}
	level, what := slog.LevelWarn, "message rejected"
	switch r.reason {
	case ReasonDuplicate:
		level = slog.LevelInfo
	case ReasonUnknownTags:
		what = "rfid reads ignored"
	}
	log.Log(context.Background(), level, what, "reason", string(r.reason), "gateway", r.gateway, "seq", r.seq, "err", msg, "source", r.src.String(), "suppressed_since_last_log", ls.suppressed)
	ls.last, ls.suppressed = now, 0
}

// committed counts a committed batch's outcomes and refreshes the stream
// states of the gateways it touched.
func (s *stats) committed(log *slog.Logger, now time.Time, batch []*item, states []twinstore.GatewayState, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits++
	s.commitTime += took
	for _, st := range states {
		s.gateways[st.Gateway] = st
	}
	start := now.Add(-took)
	for _, it := range batch {
		s.stages.observe(it, start, took)
		if it.out.Reason != "" {
			s.rejectLocked(log, now, &rejection{it.out.Reason, it.m.env.Gateway, it.m.env.Seq, it.out.Err, it.src})
		} else if tm := &it.m.tags; tm.unknown+tm.otherSite > 0 {
			err := fmt.Errorf("%d reads of tags no asset carries, %d of another site's assets, ignored (%s)", tm.unknown, tm.otherSite, strings.Join(tm.sample, ", "))
			r := &rejection{ReasonUnknownTags, it.m.env.Gateway, it.m.env.Seq, err, it.src}
			r.detach()
			s.unknownTags[r.gateway] += uint64(tm.unknown + tm.otherSite)
			s.remember(log, now, r)
		}
	}
}

func (s *stats) commitFailed() {
	s.mu.Lock()
	s.commitFailures++
	s.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (in *Ingest) Stats() Stats {
	s := &in.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{
		Rejected:       make(map[Reason]uint64, len(Reasons)),
		Commits:        s.commits,
		CommitFailures: s.commitFailures,
		CommitSeconds:  s.commitTime.Seconds(),
		QueueDepth:     len(in.queue),
		Stages:         StageStats{s.stages.check.Snapshot(), s.stages.queue.Snapshot(), s.stages.commit.Snapshot()},
	}
	for _, r := range Reasons {
		out.Rejected[r] = s.rejected[r]
	}
	byID := map[string]*GatewayStats{}
	get := func(id string) *GatewayStats {
		g := byID[id]
		if g == nil {
			g = &GatewayStats{Gateway: id, Rejected: map[Reason]uint64{}}
			byID[id] = g
		}
		return g
	}
	for id, st := range s.gateways {
		g := get(id)
		g.Accepted, g.LastSeq, g.Gaps, g.Skipped, g.State, g.LastSeen = st.Accepted, st.Highest, st.Gaps, st.Skipped, st.State, st.LastSeen
		g.AgentVersion, g.QueueDepth, g.Dropped, g.DroppedSeqs, g.StatusTime = st.AgentVersion, st.QueueDepth, st.Dropped, st.DroppedSeqs, st.StatusTime
		out.Accepted += st.Accepted
	}
	for k, n := range s.byGateway {
		get(k.gw).Rejected[k.reason] = n
	}
	for gw, n := range s.unknownTags {
		get(gw).UnknownTags = n
		out.UnknownTags += n
	}
	bySrc := map[string]map[Reason]uint64{}
	for k, n := range s.bySource {
		if bySrc[k.gw] == nil {
			bySrc[k.gw] = map[Reason]uint64{}
		}
		bySrc[k.gw][k.reason] = n
	}
	out.Sources = make([]SourceStats, 0, len(bySrc))
	for src, rej := range bySrc {
		out.Sources = append(out.Sources, SourceStats{Source: src, Rejected: rej})
	}
	sort.Slice(out.Sources, func(i, j int) bool { return out.Sources[i].Source < out.Sources[j].Source })
	out.Gateways = make([]GatewayStats, 0, len(byID))
	for _, g := range byID {
		out.Gateways = append(out.Gateways, *g)
	}
	sort.Slice(out.Gateways, func(i, j int) bool { return out.Gateways[i].Gateway < out.Gateways[j].Gateway })
	return out
}

// Recent returns the kept rejections at or after since, oldest first.
func (in *Ingest) Recent(since time.Time) []Rejection {
	s := &in.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Rejection
	n := len(s.recent)
	for i := 0; i < n; i++ {
		r := s.recent[(s.next+i)%n]
		if !r.Time.Before(since) {
			out = append(out, r)
		}
	}
	return out
}

// stages times each stored message's way through the ingest, what its
// PUBACK waits for inside the service after the broker read it:
//   - check: from Submit to the writer's queue (decoding, the signature,
//     waiting for room: Config.QueueBytes);
//   - queue: in the writer's queue until its batch's commit begins (the
//     commits before it);
//   - commit: its batch's apply, write and fsync.
//
// Messages of failed commits are not counted (they are not acknowledged).
type stages struct{ check, queue, commit latency.Histogram }

// observe times a committed item: its batch's commit began at start and
// took took.
func (s *stages) observe(it *item, start time.Time, took time.Duration) {
	if it.arrived.IsZero() {
		return // an API change
	}
	s.check.Observe(it.queued.Sub(it.arrived))
	s.queue.Observe(start.Sub(it.queued))
	s.commit.Observe(took)
}

// StageStats are the stages' histograms (see Stats.Stages).
type StageStats struct{ Check, Queue, Commit latency.Snapshot }

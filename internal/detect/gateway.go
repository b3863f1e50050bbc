package detect

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// gatewayDetector watches the gateways themselves: last wills, missed
// heartbeats, sequence gaps, bursts of rejected messages and clock skew.
type gatewayDetector struct {
	cfg      Config
	view     *View
	gws      map[string]*gwState
	rejected map[string]*rejections // burst key + "\x00" + reason -> recent rejections
	medianAt time.Time              // service time the fleet offset was last computed
	median   time.Duration
}

type gwState struct {
	last     time.Time // newest reading time
	lastRef  MessageRef
	maxSeq   uint64
	offline  bool // said so (last will or a clean shutdown)
	silent   bool // a missed heartbeat was reported
	offset   time.Duration
	hasOff   bool
	skewed   bool
	recorded time.Time
	// Liveness is judged on receive time (service clock), not on reading
	// times, which a gateway's fast clock could push ahead of everyone's;
	// medAt is the fleet offset when lastRecv was set (see quiet).
	lastRecv time.Time
	medAt    time.Duration
}

// rejHit is one rejection in a burst: when, and the gateway it claimed.
type rejHit struct {
	t       time.Time
	claimed string
}

func newGatewayDetector(cfg Config, view *View) *gatewayDetector {
	return &gatewayDetector{cfg: cfg, view: view, gws: map[string]*gwState{}, rejected: map[string]*rejections{}}
}

func (d *gatewayDetector) state(gw string) *gwState {
	s := d.gws[gw]
	if s == nil {
		s = &gwState{}
		d.gws[gw] = s
	}
	return s
}

func (d *gatewayDetector) message(m *Message) []Finding {
	s := d.state(m.Ref.Gateway)
	var out []Finding
	if m.Status != nil {
		switch m.Status.State {
		case wire.StateOffline:
			s.offline = true
			if m.Ref.Seq == 0 {
				// A last will is sealed when the gateway connects, so its
				// time is the connection's; the drop came after the last
				// message heard from the gateway.
				when := m.Ref.Time
				if s.last.After(when) {
					when = s.last
				}
				out = append(out, Finding{
					Type: TypeGatewayOffline, Asset: m.Ref.Gateway, Severity: Warning, Time: when,
					Summary: fmt.Sprintf("gateway %s dropped off after %s (its last will was published)", m.Ref.Gateway, when.UTC().Format(time.RFC3339)),
					Evidence: Evidence{Messages: ref(m), Values: values("reason", m.Status.Reason, "last_heard", when.Format(time.RFC3339Nano),
						"will_sealed", m.Ref.Time.Format(time.RFC3339Nano))},
				})
			}
			return out
		case wire.StateOnline:
			s.offline = false
		}
	}
	if m.Ref.Seq == 0 {
		return out
	}
	s.silent = false
	if m.Ref.Time.After(s.last) {
		s.last, s.lastRef = m.Ref.Time, m.Ref
	}
	recv := received(m)
	// Clock skew is measured on live messages only: a backlog replayed
	// after an outage carries old reading times by design.
	live := m.Ref.Seq > s.maxSeq
	s.maxSeq = max(s.maxSeq, m.Ref.Seq)
	if live {
		s.offset, s.hasOff, s.recorded = m.Ref.Time.Sub(recv), true, recv
		if recv.Sub(d.medianAt) > 100*time.Millisecond || recv.Before(d.medianAt) {
			d.median, d.medianAt = d.fleetOffset(recv), recv
		}
	}
	if !recv.Before(s.lastRecv) {
		s.lastRecv, s.medAt = recv, d.median
	}
	if !live || d.cfg.Gateways.MaxClockSkew <= 0 || m.Recorded.IsZero() {
		return out
	}
	skew := s.offset - d.median
	if skew.Abs() > d.cfg.Gateways.MaxClockSkew {
		if !s.skewed {
			s.skewed = true
			out = append(out, Finding{
				Type: TypeClockSkew, Asset: m.Ref.Gateway, Severity: Warning, Time: m.Ref.Time,
				Summary:  fmt.Sprintf("gateway %s's clock is %s off the fleet's", m.Ref.Gateway, skew.Round(time.Second)),
				Evidence: Evidence{Messages: ref(m), Values: values("skew", skew.String(), "bound", d.cfg.Gateways.MaxClockSkew.String())},
			})
		}
	} else if skew.Abs() < d.cfg.Gateways.MaxClockSkew/2 {
		s.skewed = false
	}
	return out
}

// fleetOffset is the median of the gateways' latest offsets (reading time
// minus stored time) among those heard from in the last 5 s of service
// time. A short window keeps it right when simulated time runs faster than
// real time (offsets then grow with the service clock).
func (d *gatewayDetector) fleetOffset(now time.Time) time.Duration {
	var offs []time.Duration
	for _, s := range d.gws {
		if s.hasOff && now.Sub(s.recorded) < 5*time.Second {
			offs = append(offs, s.offset)
		}
	}
	if len(offs) == 0 {
		return 0
	}
	slices.Sort(offs)
	return offs[len(offs)/2]
}

func (d *gatewayDetector) event(e *twin.Event) []Finding {
	if e.Type != twin.EventSequenceGap {
		return nil
	}
	vals := map[string]string{}
	for _, c := range e.Changes {
		vals[c.Field] = c.Old + " -> " + c.New
	}
	return []Finding{{
		Type: TypeSequenceGap, Asset: e.Asset, Severity: Warning, Time: e.Time,
		Summary:  fmt.Sprintf("gateway %s skipped sequence numbers", e.Asset),
		Evidence: Evidence{Events: []twin.Event{*e}, Values: vals},
	}}
}

// rejectionTypes: what a burst of each reason raises, and whether it is
// counted per source (bySource: the message failed authentication,
// signature or binding, so the gateway it claims proves nothing; one
// alert per source, whatever ids it claims) or per gateway (a replay or
// unknown tags come in messages the gateway really signed).
var rejectionTypes = map[string]struct {
	typ      Type
	sev      Severity
	say      string
	bySource bool
}{
	RejectBadSignature:   {TypeBadSignatures, Critical, "messages with bad signatures", true},
	RejectUnknownGateway: {TypeUnknownGateway, Warning, "messages from unregistered gateways", true},
	RejectUnboundAsset:   {TypeUnboundAssets, Warning, "messages naming assets not bound to their gateway", true},
	RejectReplay:         {TypeReplayedMessages, Critical, "replayed messages", false},
	RejectUnknownTags:    {TypeUnknownTags, Warning, "RFID messages reading tags the gateway may not report", false},
}

func (d *gatewayDetector) burst(reason string) Burst {
	switch reason {
	case RejectBadSignature:
		return d.cfg.Tamper.BadSignatures
	case RejectReplay:
		return d.cfg.Tamper.Replays
	case RejectUnboundAsset:
		return d.cfg.Tamper.Unbound
	case RejectUnknownTags:
		return d.cfg.Tamper.UnknownTags
	}
	return d.cfg.Tamper.Unknown
}

func (d *gatewayDetector) rejection(r *Rejection) []Finding {
	if r.Reason == RejectDuplicate {
		// A redelivery repeats a message the broker just sent; a copy of
		// one far below the gateway's newest sequence number is a replay.
		s := d.gws[r.Gateway]
		if s == nil || d.cfg.Tamper.ReplayMinSeqAge == 0 || s.maxSeq < r.Seq+d.cfg.Tamper.ReplayMinSeqAge {
			return nil
		}
		r2 := *r
		r2.Reason = RejectReplay
		r = &r2
	}
	rt, ok := rejectionTypes[r.Reason]
	if !ok {
		return nil
	}
	b := d.burst(r.Reason)
	asset, by := r.Gateway, r.Gateway
	if rt.bySource {
		by = r.Source
		asset = r.SourceClient // the embedded broker binds it to the client's credential
		if asset == "" {
			asset = "source:" + r.Source
		}
	}
	key := by + "\x00" + r.Reason
	rs, tracked := d.rejected[key]
	if !tracked {
		if len(d.rejected) >= maxRejectKeys {
			d.pruneRejected(r.Time)
			if len(d.rejected) >= maxRejectKeys {
				return nil // bounded: the ingest still counts them
			}
		}
		rs = &rejections{}
		d.rejected[key] = rs
	}
	hits := append(rs.hits, rejHit{r.Time, r.Gateway})
	i := sort.Search(len(hits), func(i int) bool { return r.Time.Sub(hits[i].t) < b.Window })
	hits = hits[i:]
	rs.hits = hits
	rs.since++
	// A burst is Count within the window. While it goes on, each further
	// Count of them is a new finding, so a wave that goes on after its
	// alert was resolved opens a new one (while the alert is open they
	// merge into it). A Count of 1 (unknown tags) is one finding per
	// window: a finding per message would be one per read.
	switch {
	case len(hits) < b.Count || rs.since < b.Count:
		return nil
	case b.Count == 1 && len(hits) > 1:
		return nil
	}
	rs.since = 0
	claimed := map[string]bool{}
	var ids []string
	for _, h := range hits {
		if !claimed[h.claimed] {
			claimed[h.claimed] = true
			ids = append(ids, h.claimed)
		}
	}
	from := r.From
	if from == "" {
		from = "an unknown source"
	}
	summary := fmt.Sprintf("%d %s claiming gateway %s within %s, from %s", len(hits), rt.say, r.Gateway, b.Window, from)
	if rt.bySource {
		summary = fmt.Sprintf("%d %s from %s within %s, claiming %d gateway id(s)", len(hits), rt.say, from, b.Window, len(ids))
	}
	return []Finding{{
		Type: rt.typ, Asset: asset, Severity: rt.sev, Time: r.Time,
		Summary: summary,
		Evidence: Evidence{Values: values("count", fmt.Sprint(len(hits)), "window", b.Window.String(), "first", hits[0].t.Format(time.RFC3339Nano),
			"last_seq", fmt.Sprint(r.Seq), "source", r.Source, "from", from, "claimed", strings.Join(ids[:min(len(ids), 10)], ","))},
	}}
}

// rejections are one gateway's recent rejections for one reason: their
// times within the burst window and how many came since the last finding.
type rejections struct {
	hits  []rejHit
	since int // rejections since the last finding
}

// maxRejectKeys bounds the claimed gateway ids tracked for bursts.
const maxRejectKeys = 4096

// pruneRejected forgets rejections older than every burst window.
func (d *gatewayDetector) pruneRejected(now time.Time) {
	w := max(d.cfg.Tamper.BadSignatures.Window, d.cfg.Tamper.Replays.Window, d.cfg.Tamper.Unknown.Window, d.cfg.Tamper.Unbound.Window, d.cfg.Tamper.UnknownTags.Window)
	for k, rs := range d.rejected {
		if len(rs.hits) == 0 || now.Sub(rs.hits[len(rs.hits)-1].t) >= w {
			delete(d.rejected, k)
		}
	}
}

// maxSilence is the heartbeat threshold for a gateway, 0 for none.
func (d *gatewayDetector) maxSilence(gw string) time.Duration {
	for _, c := range d.cfg.Gateways.Heartbeat {
		if ok, _ := path.Match(c.Match, gw); ok {
			return c.MaxSilence
		}
	}
	return 0
}

// received is when the service stored m, or its reading time when that is
// unknown.
func received(m *Message) time.Time {
	if m.Recorded.IsZero() {
		return m.Ref.Time
	}
	return m.Recorded
}

// quiet is how long, in the fleet's reading time, nothing came since a
// message received at recv when the fleet offset (reading time minus
// receive time, the median over the gateways heard in the last seconds)
// was medAt: the receive-time silence plus how far the fleet's clock moved
// ahead of the service clock meanwhile. For real agents that is the
// receive-time silence; a simulated fleet running 60 times faster is
// silent 60 times faster, and once the whole fleet is quiet, time passes
// at the service clock's pace. One gateway's clock moves neither.
func (d *gatewayDetector) quiet(now, recv time.Time, medAt time.Duration) time.Duration {
	return now.Sub(recv) + d.median - medAt
}

// tick reports the gateways silent for longer than their class allows:
// per gateway, on receive time (quiet), so a gateway whose clock runs fast
// makes no other look silent.
func (d *gatewayDetector) tick(now time.Time) []Finding {
	var out []Finding
	for gw, s := range d.gws {
		if s.offline || s.silent || s.lastRecv.IsZero() {
			continue
		}
		limit := d.maxSilence(gw)
		quiet := d.quiet(now, s.lastRecv, s.medAt)
		if limit <= 0 || quiet <= limit {
			continue
		}
		s.silent = true
		out = append(out, Finding{
			Type: TypeHeartbeatMissed, Asset: gw, Severity: Warning, Time: s.last.Add(quiet),
			Summary: fmt.Sprintf("gateway %s silent for %s (limit %s)", gw, quiet.Round(time.Second), limit),
			Evidence: Evidence{Messages: []MessageRef{s.lastRef}, Values: values("last_seen", s.last.Format(time.RFC3339Nano),
				"last_received", s.lastRecv.Format(time.RFC3339Nano), "limit", limit.String())},
		})
	}
	sortFindings(out)
	return out
}

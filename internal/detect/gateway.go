package detect

import (
	"fmt"
	"path"
	"slices"
	"sort"
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
	rejected map[string][]time.Time // gateway + "\x00" + reason -> recent rejection times
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
}

func newGatewayDetector(cfg Config, view *View) *gatewayDetector {
	return &gatewayDetector{cfg: cfg, view: view, gws: map[string]*gwState{}, rejected: map[string][]time.Time{}}
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
	// Clock skew is measured on live messages only: a backlog replayed
	// after an outage carries old reading times by design.
	live := m.Ref.Seq > s.maxSeq
	s.maxSeq = max(s.maxSeq, m.Ref.Seq)
	if !live || d.cfg.Gateways.MaxClockSkew <= 0 || m.Recorded.IsZero() {
		return out
	}
	s.offset, s.hasOff, s.recorded = m.Ref.Time.Sub(m.Recorded), true, m.Recorded
	if m.Recorded.Sub(d.medianAt) > 100*time.Millisecond || m.Recorded.Before(d.medianAt) {
		d.median, d.medianAt = d.fleetOffset(m.Recorded), m.Recorded
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

var rejectionTypes = map[string]struct {
	typ Type
	sev Severity
	say string
}{
	RejectBadSignature:   {TypeBadSignatures, Critical, "messages with bad signatures"},
	RejectReplay:         {TypeReplayedMessages, Critical, "replayed messages"},
	RejectUnknownGateway: {TypeUnknownGateway, Warning, "messages from an unregistered gateway"},
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
	var b Burst
	switch r.Reason {
	case RejectBadSignature:
		b = d.cfg.Tamper.BadSignatures
	case RejectReplay:
		b = d.cfg.Tamper.Replays
	default:
		b = d.cfg.Tamper.Unknown
	}
	key := r.Gateway + "\x00" + r.Reason
	ts, tracked := d.rejected[key]
	if !tracked && len(d.rejected) >= maxRejectKeys {
		d.pruneRejected(r.Time)
		if len(d.rejected) >= maxRejectKeys {
			return nil // an attacker inventing gateway ids: ingest counts them under "_other"
		}
	}
	ts = append(ts, r.Time)
	i := sort.Search(len(ts), func(i int) bool { return r.Time.Sub(ts[i]) < b.Window })
	ts = ts[i:]
	d.rejected[key] = ts
	if len(ts) != b.Count { // once per burst: when the count is first reached
		return nil
	}
	return []Finding{{
		Type: rt.typ, Asset: r.Gateway, Severity: rt.sev, Time: r.Time,
		Summary:  fmt.Sprintf("%d %s claiming gateway %s within %s", len(ts), rt.say, r.Gateway, b.Window),
		Evidence: Evidence{Values: values("count", fmt.Sprint(len(ts)), "window", b.Window.String(), "first", ts[0].Format(time.RFC3339Nano), "last_seq", fmt.Sprint(r.Seq))},
	}}
}

// maxRejectKeys bounds the claimed gateway ids tracked for bursts.
const maxRejectKeys = 4096

// pruneRejected forgets rejections older than every burst window.
func (d *gatewayDetector) pruneRejected(now time.Time) {
	w := max(d.cfg.Tamper.BadSignatures.Window, d.cfg.Tamper.Replays.Window, d.cfg.Tamper.Unknown.Window)
	for k, ts := range d.rejected {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= w {
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

func (d *gatewayDetector) tick(now time.Time) []Finding {
	var out []Finding
	for gw, s := range d.gws {
		if s.offline || s.silent || s.last.IsZero() {
			continue
		}
		limit := d.maxSilence(gw)
		if limit <= 0 || now.Sub(s.last) <= limit {
			continue
		}
		s.silent = true
		out = append(out, Finding{
			Type: TypeHeartbeatMissed, Asset: gw, Severity: Warning, Time: now,
			Summary:  fmt.Sprintf("gateway %s silent for %s (limit %s)", gw, now.Sub(s.last).Round(time.Second), limit),
			Evidence: Evidence{Messages: []MessageRef{s.lastRef}, Values: values("last_seen", s.last.Format(time.RFC3339Nano), "limit", limit.String())},
		})
	}
	sortFindings(out)
	return out
}

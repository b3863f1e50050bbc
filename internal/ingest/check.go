package ingest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

// Reason says why a message was not applied. What the gateway's agent
// must do with the message is Retry's table: the broker acknowledges a
// message (and the agent deletes it from its queue) only when it was
// stored, or when it can never be stored (Retry false).
type Reason string

// Rejection reasons, the label values of the rejection counters.
const (
	ReasonUnknownGateway Reason = "unknown_gateway"
	ReasonBadSignature   Reason = "bad_signature"
	ReasonReplay         Reason = "replay"
	ReasonDuplicate      Reason = "duplicate"
	ReasonMalformed      Reason = "malformed"
	ReasonOversize       Reason = "oversize"
	ReasonTopicMismatch  Reason = "topic_mismatch"
	ReasonUnboundAsset   Reason = "unbound_asset" // an asset not bound to the gateway
	ReasonSeqTooFar      Reason = "seq_too_far"   // more than MaxSeqJump above the highest sequence number
	ReasonClockAhead     Reason = "clock_ahead"   // reading time more than max_clock_skew ahead of the service
	ReasonBadSamples     Reason = "bad_samples"   // telemetry samples: too many, out of order or outside the envelope's window (wire.ErrSamples)
)

// Reasons lists every reason in a fixed order.
var Reasons = []Reason{ReasonUnknownGateway, ReasonBadSignature, ReasonReplay, ReasonDuplicate, ReasonMalformed, ReasonOversize, ReasonTopicMismatch, ReasonUnboundAsset, ReasonSeqTooFar, ReasonClockAhead, ReasonBadSamples}

// ReasonUnknownTags is not a rejection: an accepted RFID message read tags
// its gateway may not report (no asset carries them, or their asset is
// registered to another site). Those reads are ignored, counted
// (Stats.UnknownTags) and put in the Recent ring under this reason, once
// per message, for the detector's one aggregated finding per gateway.
const ReasonUnknownTags Reason = "unknown_tags"

// Retry reports whether the agent must keep a message rejected for r and
// send it again: the reason can go away without the message changing (the
// gateway is registered or its asset bound later, the service's clock
// catches up, ...). The broker then does not acknowledge it and closes the
// connection, as for a message it could not store; the agent deletes
// nothing it did not get a PUBACK for. Every other reason is final: the
// message is acknowledged and dropped (duplicate: it is stored already).
//
//	reason           agent     why
//	duplicate        delete    stored before
//	replay           delete    another message holds its sequence number in this epoch
//	bad_signature    delete    not signed by the registered key (a forgery on an authenticated connection)
//	malformed        delete    the bytes will never parse
//	bad_samples      delete    the samples will never fit the contract (wire.ErrSamples)
//	oversize         delete    the bytes will never fit
//	topic_mismatch   delete    the envelope names another gateway or kind than its topic
//	unknown_gateway  keep      the gateway may be registered (enrolled) later
//	unbound_asset    keep      the asset may be bound to the gateway later
//	seq_too_far      keep      the stream may catch up; the operator sees the counter
//	clock_ahead      keep      the service's clock catches up with the reading time
func (r Reason) Retry() bool {
	switch r {
	case ReasonUnknownGateway, ReasonUnboundAsset, ReasonSeqTooFar, ReasonClockAhead:
		return true
	}
	return false
}

// Gateways looks up the key that signs a gateway's epoch (its key, or a
// retired one: registry.RetiredKey) and its site, and whether it may
// report an asset; *registry.Registry is one.
type Gateways interface {
	KeyFor(id string, epoch uint64, now time.Time) (pub ed25519.PublicKey, retired time.Time, site string, ok bool)
	Binding(gw, asset string) registry.Binding
}

// message is one checked envelope with its decoded body.
type message struct {
	raw  []byte
	env  wire.Envelope
	sum  [32]byte
	site string
	tel  wire.Telemetry
	inv  wire.Inventory
	rfid wire.RFID
	gps  wire.GPSFix
	st   wire.Status
	wl   wire.Workloads
	// unclaimed lists the assets the message reports that no gateway
	// lists (its gateway has no list): the writer checks that no other
	// gateway reports them (claim).
	unclaimed []string
	tags      tagMisses // set by the fold of an RFID message
}

// rejection is a failed check: the reason, the gateway it claimed and why,
// and where it came from.
type rejection struct {
	reason  Reason
	gateway string
	seq     uint64
	err     error
	src     Source
}

func rej(reason Reason, gateway string, seq uint64, err error) *rejection {
	return &rejection{reason: reason, gateway: gateway, seq: seq, err: err}
}

// check decodes, authenticates and parses one message. It is the only code
// in the ingest that reads outside bytes, and it is safe for concurrent use.
func check(m *message, topic string, payload []byte, gws Gateways, now time.Time, maxSkew time.Duration) *rejection {
	if len(payload) > wire.MaxEnvelopeSize {
		gw, _, _ := wire.ParseTopic(topic)
		return rej(ReasonOversize, gw, 0, fmt.Errorf("%d bytes, limit %d: %w", len(payload), wire.MaxEnvelopeSize, wire.ErrOversize))
	}
	tgw, tkind, err := wire.ParseTopic(topic)
	if err != nil {
		return rej(ReasonTopicMismatch, "", 0, err)
	}
	env, err := wire.Decode(payload)
	if err != nil {
		return rej(ReasonMalformed, tgw, env.Seq, err)
	}
	if env.Gateway != tgw || env.Kind != tkind {
		return rej(ReasonTopicMismatch, tgw, env.Seq, fmt.Errorf("envelope of %s/%s on topic %q", env.Gateway, env.Kind, topic))
	}
	pub, retired, site, ok := gws.KeyFor(env.Gateway, env.Epoch, now)
	if !ok {
		return rej(ReasonUnknownGateway, env.Gateway, env.Seq, fmt.Errorf("gateway %s is not registered", env.Gateway))
	}
	if err := env.Verify(pub); err != nil {
		return rej(ReasonBadSignature, env.Gateway, env.Seq, err)
	}
	if !retired.IsZero() && env.Time.After(retired.Add(maxSkew)) {
		return rej(ReasonBadSignature, env.Gateway, env.Seq, fmt.Errorf("%w: signed with the key retired at %s, reading time %s is after", wire.ErrBadSignature, retired.Format(time.RFC3339), env.Time.Format(time.RFC3339)))
	}
	if maxSkew > 0 && env.Time.After(now.Add(maxSkew)) {
		return rej(ReasonClockAhead, env.Gateway, env.Seq, fmt.Errorf("reading time %s is more than %s ahead of the service's clock", env.Time.Format(time.RFC3339), maxSkew))
	}
	m.env, m.site, m.raw = env, site, payload
	if err := m.decodeBody(); err != nil {
		if errors.Is(err, wire.ErrSamples) {
			return rej(ReasonBadSamples, env.Gateway, env.Seq, err)
		}
		return rej(ReasonMalformed, env.Gateway, env.Seq, err)
	}
	if asset := m.bind(gws); asset != "" {
		return rej(ReasonUnboundAsset, env.Gateway, env.Seq, fmt.Errorf("asset %s is not bound to gateway %s", asset, env.Gateway))
	}
	m.sum = sha256.Sum256(payload)
	// The decoded body and the signature are all the message needs from
	// here on: drop the envelope's copies (up to 64 KB a message) while it
	// waits in the writer's queue.
	m.env.Body, m.env.Sig = nil, nil
	return nil
}

// decodeBody parses and checks the envelope's body by its kind.
func (m *message) decodeBody() error {
	var err error
	switch m.env.Kind {
	case wire.KindTelemetry:
		m.tel, err = wire.DecodeTelemetry(&m.env)
		if err == nil && m.tel.Host == "" {
			err = fmt.Errorf("%w: telemetry without host", wire.ErrMalformed)
		}
		for j := range m.tel.Samples {
			for i := range m.tel.Samples[j].GPUs {
				if err == nil && m.tel.Samples[j].GPUs[i].Asset == "" {
					err = fmt.Errorf("%w: telemetry samples[%d].gpus[%d] without asset", wire.ErrMalformed, j, i)
				}
			}
		}
	case wire.KindFirmware:
		m.inv, err = wire.DecodeBody[wire.Inventory](&m.env)
		if err == nil && m.inv.Host.Asset == "" {
			err = fmt.Errorf("%w: inventory without host asset", wire.ErrMalformed)
		}
		for i := range m.inv.GPUs {
			if err == nil && m.inv.GPUs[i].Asset == "" {
				err = fmt.Errorf("%w: inventory gpus[%d] without asset", wire.ErrMalformed, i)
			}
		}
	case wire.KindRFID:
		m.rfid, err = wire.DecodeBody[wire.RFID](&m.env)
		for i := range m.rfid.Reads {
			if err == nil && m.rfid.Reads[i].EPC == "" {
				err = fmt.Errorf("%w: rfid reads[%d] without epc", wire.ErrMalformed, i)
			}
		}
	case wire.KindGPS:
		m.gps, err = wire.DecodeBody[wire.GPSFix](&m.env)
		if err == nil && (m.gps.Lat < -90 || m.gps.Lat > 90 || m.gps.Lon < -180 || m.gps.Lon > 180) {
			err = fmt.Errorf("%w: gps position %f,%f out of range", wire.ErrMalformed, m.gps.Lat, m.gps.Lon)
		}
	case wire.KindWorkloads:
		m.wl, err = wire.DecodeBody[wire.Workloads](&m.env)
		if err == nil {
			err = m.wl.Check()
		}
	case wire.KindStatus:
		m.st, err = wire.DecodeBody[wire.Status](&m.env)
		if err == nil && m.st.State != wire.StateOnline && m.st.State != wire.StateOffline {
			err = fmt.Errorf("%w: status state %q", wire.ErrMalformed, m.st.State)
		}
		if err == nil && (m.st.QueueDepth < 0 || len(m.st.DroppedSeqs) != 0 && (len(m.st.DroppedSeqs) != 2 || m.st.DroppedSeqs[0] > m.st.DroppedSeqs[1])) {
			err = fmt.Errorf("%w: status queue depth %d, dropped seqs %v (want [first, last])", wire.ErrMalformed, m.st.QueueDepth, m.st.DroppedSeqs)
		}
		if err == nil && m.env.Seq == 0 && m.st.State != wire.StateOffline {
			err = fmt.Errorf("%w: sequence 0 is only for an offline last will", wire.ErrMalformed)
		}
	}
	return err
}

// bind returns the first asset the message reports (telemetry and
// inventory hosts and GPUs, the GPS asset) that is not bound to its
// gateway, or "". Unclaimed assets are kept in m.unclaimed for the writer.
// RFID reads name tags, which the writer looks up (fold.rfid).
func (m *message) bind(gws Gateways) string {
	gw := m.env.Gateway
	m.unclaimed = m.unclaimed[:0]
	check := func(asset string) bool {
		if asset == "" || asset == gw {
			return true
		}
		switch gws.Binding(gw, asset) {
		case registry.Bound:
			return true
		case registry.Unclaimed:
			m.unclaimed = append(m.unclaimed, asset)
			return true
		}
		return false
	}
	switch m.env.Kind {
	case wire.KindTelemetry:
		if !check(m.tel.Host) {
			return m.tel.Host
		}
		var first []wire.GPUSample
		for j := range m.tel.Samples {
			for i := range m.tel.Samples[j].GPUs {
				g := &m.tel.Samples[j].GPUs[i]
				if j > 0 && i < len(first) && first[i].Asset == g.Asset {
					continue // the same GPU in the same place as in the first sample: checked once per message
				}
				if !check(g.Asset) {
					return g.Asset
				}
			}
			if j == 0 {
				first = m.tel.Samples[0].GPUs
			}
		}
	case wire.KindFirmware:
		if !check(m.inv.Host.Asset) {
			return m.inv.Host.Asset
		}
		for i := range m.inv.GPUs {
			if !check(m.inv.GPUs[i].Asset) {
				return m.inv.GPUs[i].Asset
			}
		}
	case wire.KindGPS:
		if !check(m.gps.Asset) {
			return m.gps.Asset
		}
	case wire.KindWorkloads:
		if !check(m.wl.Host) {
			return m.wl.Host
		}
		for i := range m.wl.GPUs {
			if !check(m.wl.GPUs[i].Asset) {
				return m.wl.GPUs[i].Asset
			}
		}
	}
	return ""
}

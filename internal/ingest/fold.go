package ingest

import (
	"fmt"
	"math"
	"slices"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// Gateway twins carry their connection state in health.state.
const (
	gatewayOnline  = twin.HealthOK
	gatewayOffline = wire.StateOffline
)

// fold applies one accepted message to the twins.
type fold struct {
	w   *writer
	tx  *twinstore.Tx
	m   *message
	now time.Time
	src twin.Source
	// replay: re-apply only the observations of stored message pos (see
	// writer.replay); no events, no tracked changes.
	replay bool
	pos    uint64     // the message's log position
	last   twin.Event // the event record stored last
	// at is the time of the telemetry sample being folded (zero: the
	// envelope's): an event a sample causes carries that sample's time.
	at time.Time
}

// time is the reading time of what is being folded.
func (f *fold) time() time.Time {
	if !f.at.IsZero() {
		return f.at
	}
	return f.m.env.Time
}

// skip reports whether a's observations already include this message.
func (f *fold) skip(a *twin.Asset) bool {
	return f.replay && f.w.obsPos[a.ID] >= f.pos
}

// record stores the difference between cur (nil for a new asset) and next as
// one event and makes cur the result. typ overrides the event type; with a
// type an event is stored even without changes. next's observations are not
// taken: the caller sets them on the returned twin.
func (f *fold) record(cur, next *twin.Asset, typ twin.EventType, note string) (*twin.Asset, error) {
	if f.replay {
		if cur == nil { // cannot happen: a twin is stored with its first message
			return &twin.Asset{ID: next.ID}, nil
		}
		return cur, nil
	}
	var prev twin.Asset
	if cur != nil {
		prev = *cur
	}
	changes := twin.Diff(&prev, next)
	if len(changes) == 0 && typ == "" {
		return cur, nil
	}
	if typ == "" || prev.Revision == 0 {
		typ = twin.TypeOf(prev.Revision, changes)
	}
	e := twin.Event{Asset: next.ID, Revision: prev.Revision + 1, Type: typ, Time: f.time(), Recorded: f.now, Source: f.src, Changes: changes, Note: note}
	if e.Note == "" && f.w.annotate != nil && prev.Revision > 0 {
		e.Note = f.w.annotate(&e, next)
	}
	applied, err := twin.Apply(prev, e)
	if err != nil {
		return cur, fmt.Errorf("fold %s: %w", next.ID, err)
	}
	if err := f.tx.AppendEvent(&e); err != nil {
		return cur, err
	}
	f.last = e
	if cur == nil {
		cur = new(twin.Asset)
		f.w.twins[next.ID] = cur
	}
	if prev.Identity.RFIDTag != applied.Identity.RFIDTag {
		if f.w.tags[prev.Identity.RFIDTag] == next.ID {
			delete(f.w.tags, prev.Identity.RFIDTag)
		}
		if applied.Identity.RFIDTag != "" {
			f.w.tags[applied.Identity.RFIDTag] = next.ID
		}
	}
	*cur = applied
	f.w.dirty(cur)
	return cur, nil
}

// base is the twin to change: a copy of cur, or a new one. It sets the
// placement; an empty parent keeps the current one.
func base(cur *twin.Asset, id string, kind twin.Kind, site, parent, gw string) twin.Asset {
	var a twin.Asset
	if cur != nil {
		a = *cur
	} else {
		a = twin.Asset{ID: id, Custody: twin.Custody{Status: twin.StatusInService}, Health: twin.Health{State: twin.HealthUnknown}}
	}
	a.Kind = kind
	a.Site = site
	if parent != "" {
		a.Parent = parent
	}
	if gw != "" {
		a.Gateway = gw
	}
	return a
}

func placed(a *twin.Asset, kind twin.Kind, site, parent, gw string) bool {
	return a != nil && a.Kind == kind && a.Site == site && (parent == "" || a.Parent == parent) && (gw == "" || a.Gateway == gw)
}

// ensure returns the asset, registering it or moving its placement first.
func (f *fold) ensure(id string, kind twin.Kind, site, parent, gw string) (*twin.Asset, error) {
	a := f.w.twins[id]
	if placed(a, kind, site, parent, gw) {
		return a, nil
	}
	next := base(a, id, kind, site, parent, gw)
	return f.record(a, &next, "", "")
}

// seen refreshes an asset's last-seen time.
func (f *fold) seen(a *twin.Asset) {
	if t := f.m.env.Time; t.After(a.LastSeen) && !f.skip(a) {
		a.LastSeen = t
		f.w.observed(a, f.pos, f.now)
	}
}

// gateway returns the twin of the message's gateway, creating it.
func (f *fold) gateway() (*twin.Asset, error) {
	gw := f.m.env.Gateway
	a := f.w.twins[gw]
	if a == nil || a.Kind != twin.KindGateway || a.Site != f.m.site {
		next := base(a, gw, twin.KindGateway, f.m.site, "", "")
		var err error
		if a, err = f.record(a, &next, "", ""); err != nil {
			return nil, err
		}
	}
	f.seen(a)
	return a, nil
}

func (f *fold) apply(gw *twin.Asset, s *stream) error {
	switch f.m.env.Kind {
	case wire.KindTelemetry:
		return f.telemetry()
	case wire.KindFirmware:
		return f.inventory()
	case wire.KindRFID:
		return f.rfid()
	case wire.KindGPS:
		return f.gps()
	case wire.KindStatus:
		return f.status(gw, s)
	case wire.KindWorkloads:
		return f.workloads()
	}
	return nil
}

// workloads places the host and GPUs it names, as telemetry does, and keeps
// what runs on each GPU as an observation (a copy: the message is pooled).
func (f *fold) workloads() error {
	gwID, site, t := f.m.env.Gateway, f.m.site, f.m.env.Time
	host := f.w.twins[gwID]
	if f.m.wl.Host != gwID {
		var err error
		if host, err = f.ensure(f.m.wl.Host, twin.KindServer, site, "", gwID); err != nil {
			return err
		}
	}
	f.seen(host)
	for i := range f.m.wl.GPUs {
		g := &f.m.wl.GPUs[i]
		a, err := f.ensure(g.Asset, twin.KindGPU, site, host.ID, gwID)
		if err != nil {
			return err
		}
		if f.skip(a) || a.Workload != nil && t.Before(a.Workload.At) {
			continue // an older report never replaces a newer one
		}
		a.Workload = &twin.Workload{At: t, Processes: slices.Clone(g.Processes), Gateway: gwID, Seq: f.m.env.Seq, Pos: f.pos}
		if t.After(a.LastSeen) {
			a.LastSeen = t
		}
		f.w.observed(a, f.pos, f.now)
	}
	return nil
}

// criticalXID lists XIDs that mean the GPU needs attention now: double-bit
// ECC, fallen off the bus, contained/uncontained ECC, GSP errors.
func criticalXID(x int) bool {
	switch x {
	case 48, 79, 94, 95, 119, 120:
		return true
	}
	return false
}

// healthState is the health state the counters of h imply.
func healthState(h *twin.Health) string {
	switch {
	case h.ECCDoubleBit > 0 || h.RowRemapFailure || criticalXID(h.LastXID):
		return twin.HealthCritical
	case h.RetiredPages > 0 || h.XIDCount > 0:
		return twin.HealthWarning
	}
	return twin.HealthOK
}

func setHealth(h *twin.Health, s *wire.GPUSample) {
	h.ECCDoubleBit = s.ECCDoubleBit
	h.XIDCount = s.XIDCount
	h.LastXID = s.LastXID
	h.RetiredPages = s.RetiredPages
	h.RemappedRows = s.RemappedRows
	h.RowRemapFailure = s.RowRemapFailure
	h.State = healthState(h)
	if slices.ContainsFunc(s.XIDs, criticalXID) {
		h.State = twin.HealthCritical // a later, harmless XID does not hide a critical one among the newest
	}
}

func healthDiffers(h *twin.Health, s *wire.GPUSample) bool {
	return h.ECCDoubleBit != s.ECCDoubleBit || h.XIDCount != s.XIDCount || h.LastXID != s.LastXID ||
		h.RetiredPages != s.RetiredPages || h.RemappedRows != s.RemappedRows || h.RowRemapFailure != s.RowRemapFailure ||
		h.State == twin.HealthUnknown
}

// telemetry: every GPU sample is an observation; the health counters are
// tracked fields and move only with a sample at least as new as the twin's.
// The samples are folded oldest first, each at its own time: a GPU's
// Health.Samples counts samples, not messages, and an event a sample causes
// (an XID, a double-bit ECC error) carries that sample's time.
func (f *fold) telemetry() error {
	gwID, site := f.m.env.Gateway, f.m.site
	host := f.w.twins[gwID] // a gateway reporting its own GPUs is the host
	if f.m.tel.Host != gwID {
		var err error
		if host, err = f.ensure(f.m.tel.Host, twin.KindServer, site, "", gwID); err != nil {
			return err
		}
	}
	f.seen(host)
	defer func() { f.at = time.Time{} }()
	last := len(f.m.tel.Samples) - 1
	for j := range f.m.tel.Samples {
		f.at = f.m.tel.Samples[j].TS
		if err := f.sample(host, f.m.tel.Samples[j].GPUs, j == last); err != nil {
			return err
		}
	}
	return nil
}

// sample folds one sampling instant (at f.at) of the host's GPUs. A GPU's
// observation is published once per message (with the newest sample that
// names it), not once per sample.
func (f *fold) sample(host *twin.Asset, gpus []wire.GPUSample, newest bool) error {
	gwID, site, t := f.m.env.Gateway, f.m.site, f.at
	for i := range gpus {
		s := &gpus[i]
		a := f.w.twins[s.Asset]
		newer := a == nil || !t.Before(a.LastSeen)
		if !placed(a, twin.KindGPU, site, host.ID, gwID) || newer && healthDiffers(&a.Health, s) {
			next := base(a, s.Asset, twin.KindGPU, site, host.ID, gwID)
			if newer {
				setHealth(&next.Health, s)
			}
			var err error
			if a, err = f.record(a, &next, "", ""); err != nil {
				return err
			}
		}
		if f.skip(a) {
			continue
		}
		a.Health.Samples++
		if newer {
			a.Health.Latest = s
			a.LastSeen = t
		}
		if newest || !slices.ContainsFunc(f.m.tel.Latest().GPUs, func(g wire.GPUSample) bool { return g.Asset == s.Asset }) {
			f.w.observed(a, f.pos, f.now)
		}
	}
	return nil
}

// inventory sets identity and firmware, unless the twin changed after the
// inventory's reading time (an older inventory never reverts a newer one).
func (f *fold) inventory() error {
	gwID, site, t := f.m.env.Gateway, f.m.site, f.m.env.Time
	h := &f.m.inv.Host
	kind := twin.KindServer
	if h.Asset == gwID {
		kind = twin.KindGateway
	}
	host := f.w.twins[h.Asset]
	if host == nil || !t.Before(host.Updated) {
		gw := gwID
		if kind == twin.KindGateway {
			gw = ""
		}
		next := base(host, h.Asset, kind, site, "", gw)
		next.Identity.Serial, next.Identity.BoardPart, next.Identity.RFIDTag = h.Serial, h.BoardPart, h.RFIDTag
		next.Identity.Hostname, next.Identity.Rack = h.Hostname, h.Rack
		next.Firmware.BIOS, next.Firmware.BMC = h.BIOSVersion, h.BMCVersion
		var err error
		if host, err = f.record(host, &next, "", ""); err != nil {
			return err
		}
	}
	f.seen(host)
	for i := range f.m.inv.GPUs {
		g := &f.m.inv.GPUs[i]
		a := f.w.twins[g.Asset]
		if a == nil || !t.Before(a.Updated) {
			next := base(a, g.Asset, twin.KindGPU, site, host.ID, gwID)
			next.Identity.Name, next.Identity.UUID, next.Identity.Serial = g.Name, g.UUID, g.Serial
			next.Identity.PCIBusID, next.Identity.BoardPart = g.PCIBusID, g.BoardPartNumber
			next.Firmware.VBIOS, next.Firmware.Driver, next.Firmware.InfoROM = g.VBIOS, g.Driver, g.InfoROM
			var err error
			if a, err = f.record(a, &next, "", ""); err != nil {
				return err
			}
		}
		f.seen(a)
	}
	return nil
}

// rfid places the asset whose tag was read at the read point. A read of a
// tag no asset carries, or of an asset registered to another site than the
// gateway's, changes nothing: it is counted (message.tags) and the ingest
// raises one unknown_tags notice per message. RFID never creates assets.
func (f *fold) rfid() error {
	t := f.m.env.Time
	for i := range f.m.rfid.Reads {
		r := &f.m.rfid.Reads[i]
		var a *twin.Asset
		if id, ok := f.w.tags[r.EPC]; ok {
			a = f.w.twins[id]
		}
		if a == nil || a.Site != f.m.site {
			if !f.replay {
				f.m.tags.add(r.EPC, a != nil)
			}
			continue
		}
		if !t.Before(a.Updated) && (a.Location.Zone != r.Zone || a.Location.ReadPoint != r.ReadPoint) {
			next := *a
			next.Location.Zone, next.Location.ReadPoint = r.Zone, r.ReadPoint
			var err error
			if a, err = f.record(a, &next, "", ""); err != nil {
				return err
			}
		}
		f.seen(a)
	}
	return nil
}

// tagMisses counts one message's reads of tags its gateway may not report.
type tagMisses struct {
	unknown   int      // reads of tags no asset carries
	otherSite int      // reads of tags of another site's assets
	sample    []string // the first few EPCs
}

func (m *tagMisses) add(epc string, otherSite bool) {
	if otherSite {
		m.otherSite++
	} else {
		m.unknown++
	}
	if len(m.sample) < 5 {
		m.sample = append(m.sample, epc)
	}
}

// distanceM is the great-circle distance in metres.
func distanceM(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371000.0
	p1, p2 := lat1*math.Pi/180, lat2*math.Pi/180
	dp, dl := p2-p1, (lon2-lon1)*math.Pi/180
	h := math.Sin(dp/2)*math.Sin(dp/2) + math.Cos(p1)*math.Cos(p2)*math.Sin(dl/2)*math.Sin(dl/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(h)))
}

// gps keeps the latest fix as an observation and records a location event
// when the asset moved beyond the threshold from its last recorded position.
// f.now is when the message was received (stored), also on replay.
func (f *fold) gps() error {
	fix := &f.m.gps
	id := fix.Asset
	if id == "" {
		id = f.m.env.Gateway
	}
	a := f.w.twins[id]
	if a == nil {
		kind := twin.KindTag
		if id == f.m.env.Gateway {
			kind = twin.KindGateway
		}
		var err error
		if a, err = f.ensure(id, kind, f.m.site, "", ""); err != nil {
			return err
		}
	}
	// A fix dated ahead of its arrival is a clock anomaly (the detectors
	// report it), not a position; one older than the kept fix is history.
	if read := f.m.env.Time; twin.FixAhead(fix, read, f.now) || twin.FixOlder(fix, a.Location.GPS, read, f.now) {
		f.seen(a)
		return nil
	}
	noPos := a.Location.Lat == 0 && a.Location.Lon == 0
	if fix.Quality > 0 && (noPos || distanceM(a.Location.Lat, a.Location.Lon, fix.Lat, fix.Lon) > f.w.cfg.MoveThresholdM) {
		next := *a
		next.Location.Lat, next.Location.Lon = fix.Lat, fix.Lon
		var err error
		if a, err = f.record(a, &next, "", ""); err != nil {
			return err
		}
	}
	if !f.skip(a) {
		latest := *fix // f.m is reused for the next message: keep a copy
		a.Location.GPS = &latest
		f.w.observed(a, f.pos, f.now)
	}
	f.seen(a)
	return nil
}

// status moves the gateway online or offline. A numbered status applies
// unless a newer numbered one was applied (a replayed backlog never flips
// the state back). The last will (sequence 0) applies when it arrives: it
// is signed when its connection opened, so its time is older than the
// statuses sent over that connection, yet it reports that connection's end.
func (f *fold) status(gw *twin.Asset, s *stream) error {
	st := &f.m.st
	if f.replay {
		return nil
	}
	if f.m.env.Seq > 0 {
		if f.m.env.Time.Before(s.st.StatusTime) {
			return nil
		}
		s.st.StatusTime = f.m.env.Time
		if err := f.agentFigures(gw, &s.st); err != nil {
			return err
		}
	}
	s.st.State = st.State
	want, typ := gatewayOnline, twin.EventGatewayOnline
	if st.State == wire.StateOffline {
		want, typ = gatewayOffline, twin.EventGatewayOffline
	}
	if gw.Health.State == want {
		return nil
	}
	next := *gw
	next.Health.State = want
	_, err := f.record(gw, &next, typ, st.Reason)
	return err
}

// agentFigures keeps the agent's figures of a numbered status and records a
// sequence_gap event on the gateway when its dropped count grew: once per
// increase, not per heartbeat. A count below the kept one means the agent's
// queue was recreated; its whole count is then new.
func (f *fold) agentFigures(gw *twin.Asset, g *twinstore.GatewayState) error {
	st := &f.m.st
	prev := g.Dropped
	g.AgentVersion, g.QueueDepth, g.Dropped = st.AgentVersion, st.QueueDepth, st.Dropped
	if len(st.DroppedSeqs) == 2 {
		g.DroppedSeqs = [2]uint64(st.DroppedSeqs)
	}
	if st.Dropped == prev {
		return nil
	}
	n := st.Dropped - prev
	if st.Dropped < prev {
		n = st.Dropped
	}
	if n == 0 {
		return nil
	}
	note := fmt.Sprintf("dropped by the agent: %d readings", n)
	if len(st.DroppedSeqs) == 2 {
		note += fmt.Sprintf(", newest dropped seqs %d..%d", st.DroppedSeqs[0], st.DroppedSeqs[1])
	}
	_, err := f.record(gw, gw, twin.EventSequenceGap, note)
	return err
}

package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"twinchain/internal/wire"
)

// driftDetector finds a temperature sensor leaving its baseline: a
// two-sided CUSUM on a residual against that residual's own learned (EWMA)
// baseline. The residual takes out what load does to temperature:
//   - a GPU that reports its memory temperature too is compared with that
//     sibling sensor on the same board (both follow load together, so a
//     drift of one shows as a change of their difference);
//   - otherwise with the median of its peers in the same server, when it
//     has at least MinPeers of them;
//   - otherwise with its own baseline.
type driftDetector struct {
	cfg   DriftConfig
	view  *View
	state map[string]*driftState
	buf   []float64
	// racks holds the latest reading of every GPU by rack, for the peer
	// comparison of GPUs whose server has too few peers of their own.
	racks map[string]*rackReadings
	// models numbers the GPU model names, for peerReading.model.
	models map[string]int32
}

type driftState struct {
	n        int
	baseline float64
	hi, lo   float64
	fired    bool
	rackSlot int32 // where the GPU's reading is in its rack's rackReadings, most likely
	// The slow check: against the memory sensor and against the peers.
	self, peers slowDrift
	load        float64 // utilisation, lagged like temperature follows it
	loadT       instant
}

// rackReadings is the latest reading of every GPU seen in a rack: ids[i]'s
// is readings[i]. Two slices, not a map by id: a map of 64 GPUs' readings
// took twice the bytes, all of them for the GC to scan, and readings has no
// pointer.
type rackReadings struct {
	ids      []string
	readings []peerReading
}

// set makes p the reading of GPU id, whose state s remembers where it is.
func (r *rackReadings) set(s *driftState, id string, p peerReading) {
	i := int(s.rackSlot)
	if i >= len(r.ids) || r.ids[i] != id { // new here, or it moved
		if i = slices.Index(r.ids, id); i < 0 {
			i = len(r.ids)
			r.ids, r.readings = append(r.ids, id), append(r.readings, peerReading{})
		}
		s.rackSlot = int32(i)
	}
	r.readings[i] = p
}

// peerReading is one GPU's latest temperature and lagged load. It has no
// pointer (the model is a number of driftDetector.models, the time an
// instant): there is one per GPU.
type peerReading struct {
	temp, load float64
	t          instant
	model      int32
}

// slowDrift follows a residual smoothed over DriftConfig.Smooth against a
// baseline: the residual's mean over its first slowWarm of readings (gaps
// and clock jumps do not count), then an average
// over hours that moves only while the residual is near it.
type slowDrift struct {
	n           int
	t, since    instant       // since: the smoothing's start
	learned     time.Duration // reading time of regular steps seen (the warm-up)
	base, level float64
	// started: updated once at a time other than the zero time (a first
	// update at the zero time is followed by another first one).
	started, fired bool
}

// slowWarm is how long a baseline is learned before it is trusted;
// slowAdapt its time constant after that.
const (
	slowWarm  = 15 * time.Minute
	slowAdapt = time.Hour
)

// update adds x at t and reports the smoothed offset from the baseline
// and whether it crossed the threshold just now.
func (s *slowDrift) update(x float64, t time.Time, cfg *DriftConfig) (float64, bool) {
	now := instantOf(t)
	if !s.started {
		s.started, s.t, s.since, s.base, s.level, s.n = !t.IsZero(), now, now, x, x, 1
		return 0, false
	}
	dt := t.Sub(s.t.Time())
	if dt <= 0 {
		return s.level - s.base, false
	}
	s.t = now
	if dt > cfg.Smooth/4 {
		// A gap (the GPU was not comparable for a while): start the
		// smoothing again and judge only once it has a window's samples.
		s.level, s.since = x, now
		return s.level - s.base, false
	}
	s.level += (1 - math.Exp(-float64(dt)/float64(cfg.Smooth))) * (x - s.level)
	s.learned += dt // regular steps only: a clock jump teaches nothing
	if t.Sub(s.since.Time()) < cfg.Smooth {
		return s.level - s.base, false
	}
	if s.learned < slowWarm {
		s.n++
		s.base += (x - s.base) / float64(s.n)
		return 0, false
	}
	off := s.level - s.base
	if math.Abs(off) < cfg.OffsetC/3 {
		s.base += (1 - math.Exp(-float64(dt)/float64(slowAdapt))) * (s.level - s.base)
	}
	switch {
	case math.Abs(off) >= cfg.OffsetC && !s.fired:
		s.fired = true
		return off, true
	case math.Abs(off) < cfg.OffsetC/2:
		s.fired = false
	}
	return off, false
}

func (d *driftDetector) telemetry(m *Message) []Finding {
	var out []Finding
	t := m.Ref.Time
	rack := d.rack(m.Telemetry.Host)
	// First the lagged loads and the rack's latest readings, so that each
	// GPU is compared with its peers as of this message.
	for i := range m.Telemetry.GPUs {
		g := &m.Telemetry.GPUs[i]
		if g.Asset == "" {
			continue
		}
		s := d.state[g.Asset]
		if s == nil {
			s = &driftState{}
			d.state[d.view.id(g.Asset)] = s
		}
		if s.loadT.IsZero() || !t.After(s.loadT.Time()) {
			s.load = g.UtilPct
		} else {
			// Temperature follows load with a lag of about a minute:
			// compare GPUs whose load, lagged the same way, is alike.
			s.load += (1 - math.Exp(-t.Sub(s.loadT.Time()).Seconds()/60)) * (g.UtilPct - s.load)
		}
		s.loadT = instantOf(t)
		if rack != "" {
			if d.racks == nil {
				d.racks = map[string]*rackReadings{}
			}
			r := d.racks[rack]
			if r == nil {
				r = &rackReadings{}
				d.racks[rack] = r
			}
			id, model := d.view.named(g.Asset) // the view's string: the rack keeps no copy of its own
			r.set(s, id, peerReading{temp: g.TempC, load: s.load, model: d.modelNumber(model), t: instantOf(t)})
		}
	}
	for i := range m.Telemetry.GPUs {
		g := &m.Telemetry.GPUs[i]
		if g.Asset == "" {
			continue
		}
		s := d.state[g.Asset]
		median, peersAgainst, peers := d.peerMedian(m, g, s, rack)
		// One finding per spell: while any check still sees the drift,
		// another that sees it too says nothing new.
		was := s.fired || s.self.fired || s.peers.fired
		if d.cfg.OffsetC > 0 && d.cfg.Smooth > 0 {
			var off float64
			var fire bool
			against := "its memory sensor"
			if g.MemTempC > 0 {
				off, fire = s.self.update(g.TempC-g.MemTempC, t, &d.cfg)
			}
			if peers {
				if o, f := s.peers.update(g.TempC-median, t, &d.cfg); f && !fire {
					off, fire, against = o, f, peersAgainst
				}
			}
			if fire && !was {
				was = true
				out = append(out, Finding{
					Type: TypeSensorDrift, Asset: g.Asset, Severity: Warning, Time: t,
					Summary:  fmt.Sprintf("%s temperature sensor drifting %s slowly against %s (%.1f °C off its baseline)", g.Asset, direction(off), against, off),
					Evidence: Evidence{Messages: ref(m), Values: values("temp_c", fmt.Sprintf("%.1f", g.TempC), "against", against, "offset_c", fmt.Sprintf("%.1f", off))},
				})
			}
		}
		x, against := g.TempC, "its own baseline"
		switch {
		case g.MemTempC > 0:
			x, against = g.TempC-g.MemTempC, "its memory sensor"
		case len(m.Telemetry.GPUs) > d.cfg.MinPeers || rack != "":
			// It has peers: the slow check compares with them. A CUSUM
			// on that residual is too quick to take a GPU a few minutes
			// into a new job for a drifting one.
			continue
		}
		if s.n < d.cfg.Warmup {
			s.n++
			s.baseline += (x - s.baseline) / float64(s.n)
			continue
		}
		dev := x - s.baseline
		s.hi = math.Max(0, s.hi+dev-d.cfg.K)
		s.lo = math.Max(0, s.lo-dev-d.cfg.K)
		if math.Abs(dev) < d.cfg.K {
			s.baseline += d.cfg.Alpha * (x - s.baseline)
		}
		if s.hi <= d.cfg.H && s.lo <= d.cfg.H {
			if s.hi == 0 && s.lo == 0 {
				s.fired = false
			}
			continue
		}
		if s.fired {
			continue
		}
		s.fired = true
		if was {
			continue
		}
		dir := "up"
		if s.lo > s.hi {
			dir = "down"
		}
		out = append(out, Finding{
			Type: TypeSensorDrift, Asset: g.Asset, Severity: Warning, Time: t,
			Summary: fmt.Sprintf("%s temperature sensor drifting %s against %s (%.1f °C off its baseline)", g.Asset, dir, against, dev),
			Evidence: Evidence{Messages: ref(m), Values: values("temp_c", fmt.Sprintf("%.1f", g.TempC), "peer_median_c", fmt.Sprintf("%.1f", median),
				"deviation_c", fmt.Sprintf("%.1f", dev), "cusum_hi", fmt.Sprintf("%.1f", s.hi), "cusum_lo", fmt.Sprintf("%.1f", s.lo))},
		})
	}
	return out
}

func direction(off float64) string {
	if off < 0 {
		return "down"
	}
	return "up"
}

// peerMedian is the median temperature of g's peers: GPUs of the same
// model whose lagged load is within PeerLoadPct of g's, in its server or,
// when it has fewer than MinPeers of them, in its rack. ok is false when g
// is not at a steady load or has too few peers.
func (d *driftDetector) peerMedian(m *Message, g *wire.GPUSample, s *driftState, rack string) (median float64, against string, ok bool) {
	if math.Abs(g.UtilPct-s.load) > d.cfg.PeerLoadPct {
		return 0, "", false // changing load: its temperature is still on its way
	}
	model := d.model(g.Asset)
	d.buf = d.buf[:0]
	for i := range m.Telemetry.GPUs {
		p := &m.Telemetry.GPUs[i]
		if ps := d.state[p.Asset]; p.Asset != g.Asset && ps != nil && math.Abs(ps.load-s.load) <= d.cfg.PeerLoadPct && d.model(p.Asset) == model {
			d.buf = append(d.buf, p.TempC)
		}
	}
	against = "its peers in " + m.Telemetry.Host
	if len(d.buf) < d.cfg.MinPeers && rack != "" {
		d.buf, against = d.buf[:0], "its peers in rack "+rack
		num := d.modelNumber(model)
		var r rackReadings
		if rr := d.racks[rack]; rr != nil {
			r = *rr
		}
		for i, p := range r.readings {
			if r.ids[i] != g.Asset && m.Ref.Time.Sub(p.t.Time()).Abs() < 2*time.Minute && math.Abs(p.load-s.load) <= d.cfg.PeerLoadPct && p.model == num {
				d.buf = append(d.buf, p.temp)
			}
		}
	}
	if len(d.buf) < d.cfg.MinPeers {
		return 0, "", false
	}
	slices.Sort(d.buf)
	median = d.buf[len(d.buf)/2]
	if len(d.buf)%2 == 0 {
		median = (median + d.buf[len(d.buf)/2-1]) / 2
	}
	return median, against, true
}

// model is a GPU's model name from its twin, "" when unknown.
func (d *driftDetector) model(asset string) string {
	_, name := d.view.named(asset) // not view.Asset: no copy of the whole twin for every peer of every sample
	return name
}

// modelNumber is the number of model name in d.models, a new one for a
// name not seen before: equal names, equal numbers.
func (d *driftDetector) modelNumber(model string) int32 {
	n, ok := d.models[model]
	if !ok {
		if d.models == nil {
			d.models = map[string]int32{}
		}
		n = int32(len(d.models))
		d.models[model] = n
	}
	return n
}

// rack is a server's rack from its twin, "" when unknown.
func (d *driftDetector) rack(host string) string {
	a, _ := d.view.Asset(host)
	return a.Identity.Rack
}

// hardwareDetector finds failing GPUs in their telemetry: critical XIDs,
// double-bit ECC, row-remap failures, retired pages over the limit, thermal
// slowdown, overheating, power excursions and PCIe replay storms.
type hardwareDetector struct {
	cfg   HardwareConfig
	view  *View
	state map[string]*hwState
}

// hwState keeps no pointer (no strings, slices or time.Time): 100,000 GPUs
// each hold one, and the GC need not mark through them.
type hwState struct {
	// The previous sample's counters, which the next one's are compared with.
	xidCount, eccDoubleBit uint64
	rowRemapFailure        bool
	retired                bool
	replayHi               bool
	hot                    sustained
	throttled              sustained
	power                  sustained
	replayT                instant
	replayN                uint64
}

var thermalReasons = []string{wire.ThrottleHWThermal, wire.ThrottleSWThermal, wire.ThrottleHWSlowdown}

func (d *hardwareDetector) telemetry(m *Message) []Finding {
	var out []Finding
	t := m.Ref.Time
	for i := range m.Telemetry.GPUs {
		g := &m.Telemetry.GPUs[i]
		if g.Asset == "" {
			continue
		}
		s := d.state[g.Asset]
		first := s == nil
		if first {
			s = &hwState{replayT: instantOf(t), replayN: g.PCIeReplays}
			d.state[d.view.id(g.Asset)] = s
		}
		f := func(typ Type, sev Severity, summary string, kv ...string) {
			out = append(out, Finding{Type: typ, Asset: g.Asset, Severity: sev, Time: t, Summary: summary,
				Evidence: Evidence{Messages: ref(m), Values: values(kv...)}})
		}
		if !first {
			if g.XIDCount > s.xidCount {
				if xid, sv, ok := d.worstXID(g, g.XIDCount-s.xidCount); ok {
					meaning := XIDMeaning(xid)
					f(TypeXID, sv, fmt.Sprintf("%s reported XID %d: %s", g.Asset, xid, meaning),
						"xid", fmt.Sprint(xid), "meaning", meaning, "xids", fmt.Sprint(newXIDs(g, g.XIDCount-s.xidCount)), "xid_count", fmt.Sprint(g.XIDCount))
				}
			}
			if g.ECCDoubleBit > s.eccDoubleBit {
				f(TypeECCDoubleBit, Critical, fmt.Sprintf("%s: %d new double-bit ECC errors", g.Asset, g.ECCDoubleBit-s.eccDoubleBit),
					"ecc_dbe", fmt.Sprint(g.ECCDoubleBit), "previous", fmt.Sprint(s.eccDoubleBit))
			}
			if g.RowRemapFailure && !s.rowRemapFailure {
				f(TypeRowRemapFailure, Critical, g.Asset+" ran out of spare rows (row remap failure)", "remapped_rows", fmt.Sprint(g.RemappedRows))
			}
		}
		if d.cfg.RetiredPagesMax > 0 && g.RetiredPages >= d.cfg.RetiredPagesMax && !s.retired {
			s.retired = true
			f(TypeRetiredPages, Warning, fmt.Sprintf("%s has %d retired pages (limit %d)", g.Asset, g.RetiredPages, d.cfg.RetiredPagesMax),
				"retired_pages", fmt.Sprint(g.RetiredPages))
		}
		if s.hot.update(d.cfg.TempMaxC > 0 && g.TempC >= d.cfg.TempMaxC, t, d.cfg.TempFor) {
			f(TypeOverheating, Critical, fmt.Sprintf("%s at %.0f °C for %s (limit %.0f °C)", g.Asset, g.TempC, t.Sub(s.hot.since.Time()), d.cfg.TempMaxC),
				"temp_c", fmt.Sprintf("%.1f", g.TempC), "since", s.hot.since.Time().In(t.Location()).Format(time.RFC3339))
		}
		thermal := slices.ContainsFunc(g.Throttle, func(r string) bool { return slices.Contains(thermalReasons, r) })
		if s.throttled.update(thermal, t, d.cfg.ThrottleFor) {
			f(TypeThermalSlowdown, Warning, fmt.Sprintf("%s clocks held back for %s (%s)", g.Asset, t.Sub(s.throttled.since.Time()), strings.Join(g.Throttle, ", ")),
				"throttle", strings.Join(g.Throttle, ","), "temp_c", fmt.Sprintf("%.1f", g.TempC), "sm_clock_mhz", fmt.Sprint(g.SMClockMHz))
		}
		over := g.PowerLimitW > 0 && g.PowerW > g.PowerLimitW*(1+d.cfg.PowerOverPct/100)
		if s.power.update(over, t, d.cfg.PowerFor) {
			f(TypePowerExcursion, Warning, fmt.Sprintf("%s drawing %.0f W over its %.0f W limit for %s", g.Asset, g.PowerW, g.PowerLimitW, t.Sub(s.power.since.Time())),
				"power_w", fmt.Sprintf("%.0f", g.PowerW), "power_limit_w", fmt.Sprintf("%.0f", g.PowerLimitW))
		}
		if dt := t.Sub(s.replayT.Time()); dt >= time.Minute && d.cfg.PCIeReplaysPerMin > 0 {
			if g.PCIeReplays >= s.replayN {
				rate := float64(g.PCIeReplays-s.replayN) / dt.Minutes()
				high := rate > d.cfg.PCIeReplaysPerMin
				if high && !s.replayHi {
					f(TypePCIeReplays, Warning, fmt.Sprintf("%s: %.0f PCIe replays a minute (limit %.0f)", g.Asset, rate, d.cfg.PCIeReplaysPerMin),
						"per_min", fmt.Sprintf("%.0f", rate), "pcie_replays", fmt.Sprint(g.PCIeReplays))
				}
				s.replayHi = high
			}
			s.replayT, s.replayN = instantOf(t), g.PCIeReplays
		}
		s.xidCount, s.eccDoubleBit, s.rowRemapFailure = g.XIDCount, g.ECCDoubleBit, g.RowRemapFailure
	}
	return out
}

// newXIDs are the XIDs of g since a sample n XIDs ago: the newest n of
// its recent list, or its last XID when the agent sends no list.
func newXIDs(g *wire.GPUSample, n uint64) []int {
	if len(g.XIDs) == 0 {
		return []int{g.LastXID}
	}
	return g.XIDs[len(g.XIDs)-int(min(n, uint64(len(g.XIDs)))):]
}

// worstXID is the most severe configured XID among the new ones (the later
// one on a tie): an XID the configuration does not list (an application
// fault) never hides one it does.
func (d *hardwareDetector) worstXID(g *wire.GPUSample, n uint64) (int, Severity, bool) {
	best, bestSev := 0, Severity(0)
	for _, x := range newXIDs(g, n) {
		name, ok := d.cfg.XIDs[x]
		if !ok {
			continue
		}
		if sv, _ := ParseSeverity(name); sv >= bestSev {
			best, bestSev = x, sv
		}
	}
	return best, bestSev, bestSev > 0
}

var debugDrift = false

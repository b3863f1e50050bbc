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
}

type driftState struct {
	n        int
	baseline float64
	hi, lo   float64
	fired    bool
}

func (d *driftDetector) telemetry(m *Message) []Finding {
	gpus := m.Telemetry.GPUs
	peers := len(gpus) > d.cfg.MinPeers
	median := 0.0
	if peers {
		d.buf = d.buf[:0]
		for _, g := range gpus {
			d.buf = append(d.buf, g.TempC)
		}
		slices.Sort(d.buf)
		median = d.buf[len(d.buf)/2]
		if len(d.buf)%2 == 0 {
			median = (median + d.buf[len(d.buf)/2-1]) / 2
		}
	}
	var out []Finding
	for _, g := range gpus {
		if g.Asset == "" {
			continue
		}
		s := d.state[g.Asset]
		if s == nil {
			s = &driftState{}
			d.state[g.Asset] = s
		}
		x, against := g.TempC, "its own baseline"
		switch {
		case g.MemTempC > 0:
			x, against = g.TempC-g.MemTempC, "its memory sensor"
		case peers:
			x, against = g.TempC-median, "its peers"
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
		dir := "up"
		if s.lo > s.hi {
			dir = "down"
		}
		out = append(out, Finding{
			Type: TypeSensorDrift, Asset: g.Asset, Severity: Warning, Time: m.Ref.Time,
			Summary: fmt.Sprintf("%s temperature sensor drifting %s against %s (%.1f °C off its baseline)", g.Asset, dir, against, dev),
			Evidence: Evidence{Messages: ref(m), Values: values("temp_c", fmt.Sprintf("%.1f", g.TempC), "peer_median_c", fmt.Sprintf("%.1f", median),
				"deviation_c", fmt.Sprintf("%.1f", dev), "cusum_hi", fmt.Sprintf("%.1f", s.hi), "cusum_lo", fmt.Sprintf("%.1f", s.lo))},
		})
	}
	return out
}

// hardwareDetector finds failing GPUs in their telemetry: critical XIDs,
// double-bit ECC, row-remap failures, retired pages over the limit, thermal
// slowdown, overheating, power excursions and PCIe replay storms.
type hardwareDetector struct {
	cfg   HardwareConfig
	view  *View
	state map[string]*hwState
}

type hwState struct {
	prev      wire.GPUSample
	prevT     time.Time
	retired   bool
	hot       sustained
	throttled sustained
	power     sustained
	replayT   time.Time
	replayN   uint64
	replayHi  bool
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
			s = &hwState{replayT: t, replayN: g.PCIeReplays}
			d.state[g.Asset] = s
		}
		f := func(typ Type, sev Severity, summary string, kv ...string) {
			out = append(out, Finding{Type: typ, Asset: g.Asset, Severity: sev, Time: t, Summary: summary,
				Evidence: Evidence{Messages: ref(m), Values: values(kv...)}})
		}
		if !first {
			if g.XIDCount > s.prev.XIDCount {
				if xid, sv, ok := d.worstXID(g, g.XIDCount-s.prev.XIDCount); ok {
					meaning := XIDMeaning(xid)
					f(TypeXID, sv, fmt.Sprintf("%s reported XID %d: %s", g.Asset, xid, meaning),
						"xid", fmt.Sprint(xid), "meaning", meaning, "xids", fmt.Sprint(newXIDs(g, g.XIDCount-s.prev.XIDCount)), "xid_count", fmt.Sprint(g.XIDCount))
				}
			}
			if g.ECCDoubleBit > s.prev.ECCDoubleBit {
				f(TypeECCDoubleBit, Critical, fmt.Sprintf("%s: %d new double-bit ECC errors", g.Asset, g.ECCDoubleBit-s.prev.ECCDoubleBit),
					"ecc_dbe", fmt.Sprint(g.ECCDoubleBit), "previous", fmt.Sprint(s.prev.ECCDoubleBit))
			}
			if g.RowRemapFailure && !s.prev.RowRemapFailure {
				f(TypeRowRemapFailure, Critical, g.Asset+" ran out of spare rows (row remap failure)", "remapped_rows", fmt.Sprint(g.RemappedRows))
			}
		}
		if d.cfg.RetiredPagesMax > 0 && g.RetiredPages >= d.cfg.RetiredPagesMax && !s.retired {
			s.retired = true
			f(TypeRetiredPages, Warning, fmt.Sprintf("%s has %d retired pages (limit %d)", g.Asset, g.RetiredPages, d.cfg.RetiredPagesMax),
				"retired_pages", fmt.Sprint(g.RetiredPages))
		}
		if s.hot.update(d.cfg.TempMaxC > 0 && g.TempC >= d.cfg.TempMaxC, t, d.cfg.TempFor) {
			f(TypeOverheating, Critical, fmt.Sprintf("%s at %.0f °C for %s (limit %.0f °C)", g.Asset, g.TempC, t.Sub(s.hot.since), d.cfg.TempMaxC),
				"temp_c", fmt.Sprintf("%.1f", g.TempC), "since", s.hot.since.Format(time.RFC3339))
		}
		thermal := slices.ContainsFunc(g.Throttle, func(r string) bool { return slices.Contains(thermalReasons, r) })
		if s.throttled.update(thermal, t, d.cfg.ThrottleFor) {
			f(TypeThermalSlowdown, Warning, fmt.Sprintf("%s clocks held back for %s (%s)", g.Asset, t.Sub(s.throttled.since), strings.Join(g.Throttle, ", ")),
				"throttle", strings.Join(g.Throttle, ","), "temp_c", fmt.Sprintf("%.1f", g.TempC), "sm_clock_mhz", fmt.Sprint(g.SMClockMHz))
		}
		over := g.PowerLimitW > 0 && g.PowerW > g.PowerLimitW*(1+d.cfg.PowerOverPct/100)
		if s.power.update(over, t, d.cfg.PowerFor) {
			f(TypePowerExcursion, Warning, fmt.Sprintf("%s drawing %.0f W over its %.0f W limit for %s", g.Asset, g.PowerW, g.PowerLimitW, t.Sub(s.power.since)),
				"power_w", fmt.Sprintf("%.0f", g.PowerW), "power_limit_w", fmt.Sprintf("%.0f", g.PowerLimitW))
		}
		if dt := t.Sub(s.replayT); dt >= time.Minute && d.cfg.PCIeReplaysPerMin > 0 {
			if g.PCIeReplays >= s.replayN {
				rate := float64(g.PCIeReplays-s.replayN) / dt.Minutes()
				high := rate > d.cfg.PCIeReplaysPerMin
				if high && !s.replayHi {
					f(TypePCIeReplays, Warning, fmt.Sprintf("%s: %.0f PCIe replays a minute (limit %.0f)", g.Asset, rate, d.cfg.PCIeReplaysPerMin),
						"per_min", fmt.Sprintf("%.0f", rate), "pcie_replays", fmt.Sprint(g.PCIeReplays))
				}
				s.replayHi = high
			}
			s.replayT, s.replayN = t, g.PCIeReplays
		}
		s.prev, s.prevT = *g, t
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

package detect

import (
	"fmt"
	"time"
)

// cloneDetector finds one asset seen in two places at once: the same RFID
// tag read by gateways at different sites, the same asset's GPS fixes from
// two gateways far apart, or the same GPU UUID reported in two slots.
type cloneDetector struct {
	cfg   CloneConfig
	view  *View
	tags  map[string]sighting       // epc -> last read
	fixes map[string]sighting       // asset -> last fix
	uuids map[string][]slotSighting // uuid -> the slots reporting it (almost always one)
}

// slotSighting is one slot's last sample of a GPU UUID. A slice of these,
// not a map per UUID: 100,000 GPUs each hold one, and a map costs ~1.2 KB.
// Not a whole sighting either: a sample's time is its message's (ref.Time)
// and it has no position.
type slotSighting struct {
	slot, site string
	ref        MessageRef
}

// sighting is s as the sighting of a sample.
func (s *slotSighting) sighting() sighting { return sighting{site: s.site, t: s.ref.Time, ref: s.ref} }

type sighting struct {
	site     string // ref.Gateway's site
	lat, lon float64
	t        time.Time
	ref      MessageRef
}

func newCloneDetector(cfg CloneConfig, view *View) *cloneDetector {
	return &cloneDetector{cfg: cfg, view: view, tags: map[string]sighting{}, fixes: map[string]sighting{}, uuids: map[string][]slotSighting{}}
}

func (d *cloneDetector) near(a, b time.Time) bool {
	dt := a.Sub(b)
	return dt < d.cfg.Window && dt > -d.cfg.Window
}

func (d *cloneDetector) clone(asset string, t time.Time, summary string, a, b sighting) Finding {
	return Finding{
		Type: TypeClone, Asset: asset, Severity: Critical, Time: t, Summary: summary,
		Evidence: Evidence{Messages: []MessageRef{a.ref, b.ref},
			Values: values("gateway_a", a.ref.Gateway, "gateway_b", b.ref.Gateway, "site_a", a.site, "site_b", b.site)},
	}
}

func (d *cloneDetector) rfid(m *Message) []Finding {
	site := d.view.site(m.Ref.Gateway)
	var out []Finding
	for _, r := range m.RFID.Reads {
		asset, known := d.view.ByTag(r.EPC)
		if !known {
			continue // a tag no asset carries: not tracked (bounded memory)
		}
		t := r.LastSeen
		if t.IsZero() {
			t = m.Ref.Time
		}
		now := sighting{site: site, t: t, ref: m.Ref}
		prev, ok := d.tags[r.EPC]
		d.tags[r.EPC] = now
		if !ok || prev.ref.Gateway == now.ref.Gateway || prev.site == "" || site == "" || prev.site == site || !d.near(t, prev.t) {
			continue
		}
		out = append(out, d.clone(asset, t, fmt.Sprintf("tag %s read at sites %s and %s within %s", r.EPC, prev.site, site, t.Sub(prev.t).Abs()), prev, now))
	}
	return out
}

func (d *cloneDetector) gps(m *Message) []Finding {
	f := m.GPS
	if f.Asset == "" || f.Quality == 0 {
		return nil
	}
	t := f.FixTime
	if t.IsZero() {
		t = m.Ref.Time
	}
	now := sighting{site: d.view.site(m.Ref.Gateway), lat: f.Lat, lon: f.Lon, t: t, ref: m.Ref}
	prev, ok := d.fixes[f.Asset]
	d.fixes[f.Asset] = now
	if !ok || prev.ref.Gateway == now.ref.Gateway || !d.near(t, prev.t) {
		return nil
	}
	dist := distanceM(prev.lat, prev.lon, f.Lat, f.Lon)
	if dist <= d.cfg.MaxDistanceM {
		return nil
	}
	return []Finding{d.clone(f.Asset, t, fmt.Sprintf("%s reported %.0f m apart by %s and %s", f.Asset, dist, prev.ref.Gateway, now.ref.Gateway), prev, now)}
}

func (d *cloneDetector) telemetry(m *Message) []Finding {
	var out []Finding
	now := sighting{site: d.view.site(m.Ref.Gateway), t: m.Ref.Time, ref: m.Ref}
	for i := range m.Telemetry.GPUs {
		g := &m.Telemetry.GPUs[i] // not a copy: this runs for every GPU of every sample
		if g.UUID == "" || g.Asset == "" {
			continue
		}
		old := d.uuids[g.UUID]
		slots := old[:0]
		mine := -1
		for _, prev := range old {
			switch {
			case prev.slot == g.Asset:
				mine = len(slots)
			case !d.near(now.t, prev.ref.Time):
				continue // forgotten
			}
			slots = append(slots, prev)
		}
		for _, prev := range slots {
			// Seen here, then in the other slot, then here again (by
			// reading time: a sample read before the other slot's and
			// stored after it is no return): both slots report it, so
			// the identity is cloned.
			if mine >= 0 && prev.slot != g.Asset && slots[mine].ref.Time.Before(prev.ref.Time) && now.t.After(prev.ref.Time) {
				out = append(out, d.clone(g.Asset, now.t, fmt.Sprintf("GPU UUID %s reported in slots %s and %s", g.UUID, prev.slot, g.Asset), prev.sighting(), now))
			}
		}
		if mine >= 0 {
			slots[mine].site, slots[mine].ref = now.site, now.ref
		} else {
			slots = append(slots, slotSighting{slot: d.view.id(g.Asset), site: now.site, ref: now.ref})
		}
		if len(slots) != len(old) { // else slots is old, updated in place
			// Storing a key stores its string: the view's where it has
			// it, not this message's.
			uuid := g.UUID
			if a, ok := d.view.assets[g.Asset]; ok && a.Identity.UUID == uuid {
				uuid = a.Identity.UUID
			}
			d.uuids[uuid] = slots
		}
	}
	return out
}

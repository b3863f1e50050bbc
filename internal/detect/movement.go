package detect

import (
	"fmt"
	"path"
	"strconv"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// movementDetector watches GPS fixes and RFID reads: geofence exits,
// reads outside the asset's zone, movement while in service, impossible travel.
type movementDetector struct {
	cfg    Config
	view   *View
	fences map[string]*polygon
	assets map[string]*moveState
	zones  map[string]string // asset -> learned home zone
	fleet  *gatewayDetector  // for the fleet's clock (quiet)
}

type moveState struct {
	outside   sustained
	outRef    *Message      // the last fix outside the fence, while the exit is not reported yet
	outDist   float64       // how far outside it was
	lastRecv  time.Time     // when the last fix was received
	medAt     time.Duration // the fleet offset then
	last      *wire.GPSFix
	every     time.Duration // the gap between its last two fixes: how often it reports
	anchor    *wire.GPSFix  // where the asset settled while in service
	movedOnce bool
}

func newMovementDetector(cfg Config, view *View, fences map[string]*polygon, fleet *gatewayDetector) *movementDetector {
	return &movementDetector{cfg: cfg, view: view, fences: fences, assets: map[string]*moveState{}, zones: map[string]string{}, fleet: fleet}
}

func fmtPos(lat, lon float64) string {
	return strconv.FormatFloat(lat, 'f', 6, 64) + "," + strconv.FormatFloat(lon, 'f', 6, 64)
}

func (d *movementDetector) gps(m *Message) []Finding {
	f := m.GPS
	if f.Asset == "" || f.Quality == 0 || (d.cfg.Geofence.MaxHDOP > 0 && f.HDOP > d.cfg.Geofence.MaxHDOP) {
		return nil
	}
	t := f.FixTime
	if t.IsZero() {
		t = m.Ref.Time
	}
	st := d.assets[f.Asset]
	if st == nil {
		st = &moveState{}
		d.assets[f.Asset] = st
	}
	site := d.view.site(f.Asset)
	status := d.view.status(f.Asset)
	pos := fmtPos(f.Lat, f.Lon)
	var out []Finding

	// Impossible travel: the distance between two fixes, less what their
	// accuracy allows, cannot be covered at MaxSpeedMS.
	if prev := st.last; prev != nil && d.cfg.Movement.MaxSpeedMS > 0 {
		pt := prev.FixTime
		if dt := t.Sub(pt).Seconds(); dt > 0 {
			dist := distanceM(prev.Lat, prev.Lon, f.Lat, f.Lon)
			slack := 5 * (prev.HDOP + f.HDOP)
			if speed := (dist - slack) / dt; speed > d.cfg.Movement.MaxSpeedMS {
				out = append(out, Finding{
					Type: TypeImpossibleTravel, Asset: f.Asset, Severity: Critical, Time: t,
					Summary: fmt.Sprintf("%s moved %.0f m in %.0f s (%.0f m/s)", f.Asset, dist, dt, dist/dt),
					Evidence: Evidence{Messages: ref(m), Values: values("from", fmtPos(prev.Lat, prev.Lon), "to", pos,
						"distance_m", fmt.Sprintf("%.0f", dist), "seconds", fmt.Sprintf("%.0f", dt))},
				})
			}
		}
	}
	fix := *f
	fix.FixTime = t
	if st.last != nil && t.After(st.last.FixTime) {
		st.every = t.Sub(st.last.FixTime)
	}
	st.last = &fix
	st.lastRecv, st.medAt = received(m), d.fleet.median
	st.outRef = nil

	// Geofence, with margin and entry delay. An asset in transit or retired
	// is expected off site.
	if fence := d.fences[site]; fence != nil && status != twin.StatusInTransit && status != twin.StatusRetired {
		dist := fence.signedDistanceM(f.Lat, f.Lon)
		switch {
		case dist > d.cfg.Geofence.MarginM:
			if st.outside.update(true, t, d.cfg.Geofence.EntryDelay) {
				out = append(out, d.exit(m, site, dist, st, t, ""))
			} else if !st.outside.fired {
				mc := *m
				st.outRef, st.outDist = &mc, dist
			}
		case dist < -d.cfg.Geofence.MarginM:
			st.outside = sustained{}
		}
	}

	// Movement while in service.
	if status != twin.StatusInService {
		st.anchor, st.movedOnce = nil, false
		return out
	}
	if st.anchor == nil {
		st.anchor = &fix
		return out
	}
	if dist := distanceM(st.anchor.Lat, st.anchor.Lon, f.Lat, f.Lon); dist > d.cfg.Movement.InServiceRadiusM && !st.movedOnce {
		st.movedOnce = true
		out = append(out, Finding{
			Type: TypeMovedInService, Asset: f.Asset, Severity: Warning, Time: t,
			Summary:  fmt.Sprintf("%s moved %.0f m while in service", f.Asset, dist),
			Evidence: Evidence{Messages: ref(m), Values: values("from", fmtPos(st.anchor.Lat, st.anchor.Lon), "to", pos)},
			Changes:  []twin.Change{{Field: "location", Old: fmtPos(st.anchor.Lat, st.anchor.Lon), New: pos}}, Coverable: true,
		})
	}
	return out
}

// homeZone is the zone the asset belongs in: configured, or learned from
// its first read.
func (d *movementDetector) homeZone(asset, rack string) (string, bool) {
	for _, id := range []string{asset, rack} {
		if id == "" {
			continue
		}
		if z, ok := d.cfg.Movement.HomeZones[id]; ok {
			return z, true
		}
		for pat, z := range d.cfg.Movement.HomeZones {
			if ok, _ := path.Match(pat, id); ok {
				return z, true
			}
		}
	}
	z, ok := d.zones[asset]
	return z, ok
}

func (d *movementDetector) rfid(m *Message) []Finding {
	var out []Finding
	for i := range m.RFID.Reads {
		r := &m.RFID.Reads[i]
		asset, ok := d.view.ByTag(r.EPC)
		if !ok || r.Zone == "" {
			continue // a tag no asset carries
		}
		a, _ := d.view.Asset(asset)
		home, ok := d.homeZone(asset, a.Identity.Rack)
		if !ok {
			d.zones[asset] = r.Zone
			continue
		}
		if r.Zone == home {
			continue
		}
		t := r.LastSeen
		if t.IsZero() {
			t = m.Ref.Time
		}
		out = append(out, Finding{
			Type: TypeZoneViolation, Asset: asset, Severity: Warning, Time: t,
			Summary: fmt.Sprintf("%s (tag %s) read at %s in zone %s, outside its zone %s", asset, r.EPC, r.ReadPoint, r.Zone, home),
			Evidence: Evidence{Messages: ref(m), Values: values("epc", r.EPC, "read_point", r.ReadPoint, "zone", r.Zone,
				"home_zone", home, "reader", r.Reader)},
			Changes: []twin.Change{{Field: "location.zone", Old: home, New: r.Zone}}, Coverable: true,
		})
		if d.view.status(asset) == twin.StatusInService {
			out = append(out, Finding{
				Type: TypeMovedInService, Asset: asset, Severity: Warning, Time: t,
				Summary:  fmt.Sprintf("%s moved to zone %s while in service", asset, r.Zone),
				Evidence: Evidence{Messages: ref(m), Values: values("epc", r.EPC, "read_point", r.ReadPoint, "zone", r.Zone)},
				Changes:  []twin.Change{{Field: "location.zone", Old: home, New: r.Zone}}, Coverable: true,
			})
		}
	}
	return out
}

// exit is the geofence_exit finding for fix message m, dist metres outside.
func (d *movementDetector) exit(m *Message, site string, dist float64, st *moveState, t time.Time, silent string) Finding {
	f := m.GPS
	pos := fmtPos(f.Lat, f.Lon)
	summary := fmt.Sprintf("%s is %.0f m outside site %s's geofence", f.Asset, dist, site)
	vals := values("position", pos, "outside_m", fmt.Sprintf("%.0f", dist), "since", st.outside.since.Time().In(t.Location()).Format(time.RFC3339))
	if silent != "" {
		summary = fmt.Sprintf("%s went silent %.0f m outside site %s's geofence (no fix for %s)", f.Asset, dist, site, silent)
		vals["silent_for"] = silent
	}
	return Finding{
		Type: TypeGeofenceExit, Asset: f.Asset, Site: site, Severity: Critical, Time: t,
		Summary: summary, Evidence: Evidence{Messages: ref(m), Values: vals},
		Changes: []twin.Change{{Field: "location", Old: site, New: pos}}, Coverable: true,
	}
}

// tick reports the assets whose last fix was outside their fence and that
// sent no fix since for the entry delay: silence after leaving is the
// theft signal, not a reason to wait. An asset is silent only once its next
// fix is overdue by half its usual gap; until then the fix that is due
// decides (an asset reporting every 10 s with a 30 s entry delay is not
// called silent between two fixes).
func (d *movementDetector) tick(now time.Time) []Finding {
	var out []Finding
	for _, st := range d.assets {
		m := st.outRef
		if m == nil || st.outside.fired || st.outside.since.IsZero() {
			continue
		}
		quiet := d.fleet.quiet(now, st.lastRecv, st.medAt)
		if quiet <= st.every+st.every/2 {
			continue
		}
		t := st.last.FixTime.Add(quiet)
		if t.Sub(st.outside.since.Time()) < d.cfg.Geofence.EntryDelay {
			continue
		}
		site := d.view.site(m.GPS.Asset)
		if s := d.view.status(m.GPS.Asset); s == twin.StatusInTransit || s == twin.StatusRetired || d.fences[site] == nil {
			continue
		}
		st.outside.fired, st.outRef = true, nil
		out = append(out, d.exit(m, site, st.outDist, st, t, quiet.Round(time.Second).String()))
	}
	sortFindings(out)
	return out
}

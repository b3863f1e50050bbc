package detect

import (
	"fmt"

	"twinchain/internal/twin"
)

// View is the detectors' picture of the fleet: every twin, folded from the
// event log with twin.Apply, and indexes by RFID tag and GPU UUID. It also
// knows which assets the gateway registry lists (Known).
type View struct {
	assets map[string]*twin.Asset
	byTag  map[string]string
	known  map[string]bool // nil: no registry, every asset counts as known
}

// NewView returns an empty view. known lists the assets the gateway registry
// names; nil turns the unknown-asset check off.
func NewView(known []string) *View {
	v := &View{assets: map[string]*twin.Asset{}, byTag: map[string]string{}}
	if known != nil {
		v.known = make(map[string]bool, len(known))
		for _, id := range known {
			v.known[id] = true
		}
	}
	return v
}

// Apply folds one event in. An event that does not follow the asset's
// revision is skipped with an error; the view stays usable. The asset's
// twin is updated in place (no new one for every event): nothing outside
// the view holds a pointer to it (Asset returns a copy).
func (v *View) Apply(e twin.Event) error {
	prev := v.assets[e.Asset]
	var a twin.Asset
	if prev != nil {
		a = *prev
	}
	next, err := twin.Apply(a, e)
	if err != nil {
		return fmt.Errorf("view: %w", err)
	}
	if prev != nil {
		next.ID = prev.ID // the same id (twin.Apply checks): keep the string the detectors' keys share (id)
	}
	if a.Identity.RFIDTag != "" && a.Identity.RFIDTag != next.Identity.RFIDTag {
		delete(v.byTag, a.Identity.RFIDTag)
	}
	if next.Identity.RFIDTag != "" {
		v.byTag[next.Identity.RFIDTag] = next.ID
	}
	if prev == nil {
		prev = new(twin.Asset)
		v.assets[e.Asset] = prev
	}
	*prev = next
	return nil
}

// Asset returns the twin of id.
func (v *View) Asset(id string) (twin.Asset, bool) {
	a, ok := v.assets[id]
	if !ok {
		return twin.Asset{}, false
	}
	return *a, true
}

// ByTag returns the asset whose identity carries the RFID tag epc.
func (v *View) ByTag(epc string) (string, bool) {
	id, ok := v.byTag[epc]
	return id, ok
}

// id is id as the view holds it, the same string, when the view has the
// asset: per-asset state keyed by it keeps no copy of its own of the
// string (a message's, decoded afresh for every message).
func (v *View) id(id string) string {
	if a, ok := v.assets[id]; ok {
		return a.ID
	}
	return id
}

// named is id as the view holds it (as id does) and the asset's model
// name, "" when the view does not have it.
func (v *View) named(id string) (string, string) {
	a, ok := v.assets[id]
	if !ok {
		return id, ""
	}
	return a.ID, a.Identity.Name
}

// Known reports whether the gateway registry lists id.
func (v *View) Known(id string) bool { return v.known == nil || v.known[id] }

// SetKnown replaces the registry's asset list; nil turns the unknown-asset
// check off, as in NewView.
func (v *View) SetKnown(known []string) {
	if known == nil {
		v.known = nil
		return
	}
	v.known = make(map[string]bool, len(known))
	for _, id := range known {
		v.known[id] = true
	}
}

// site is the asset's site, or its parent's.
func (v *View) site(id string) string {
	for range 4 {
		a, ok := v.assets[id]
		if !ok {
			return ""
		}
		if a.Site != "" {
			return a.Site
		}
		id = a.Parent
	}
	return ""
}

// status is the custody status of id, or of its parent when it has none.
func (v *View) status(id string) twin.Status {
	for range 4 {
		a, ok := v.assets[id]
		if !ok {
			return ""
		}
		if a.Custody.Status != "" {
			return a.Custody.Status
		}
		id = a.Parent
	}
	return ""
}

// placement is the server id is (or is in) and that server's rack; empty
// for assets in no server (gateways, unknown ids).
func (v *View) placement(id string) (host, rack string) {
	for range 4 {
		a, ok := v.assets[id]
		if !ok {
			return "", ""
		}
		if a.Kind == twin.KindServer {
			return a.ID, a.Identity.Rack
		}
		if a.Parent == "" {
			return "", ""
		}
		id = a.Parent
	}
	return "", ""
}

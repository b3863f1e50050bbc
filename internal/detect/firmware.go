package detect

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"twinchain/internal/twin"
)

// firmwareDetector finds firmware changes (which a work order may explain)
// and versions off the allow-list for the asset's class (which nothing explains).
type firmwareDetector struct {
	view  *View
	allow []AllowList
}

func (d *firmwareDetector) event(e *twin.Event) []Finding {
	var changed, offList []twin.Change
	for _, c := range e.Changes {
		if !strings.HasPrefix(c.Field, "firmware.") {
			continue
		}
		if c.Old != "" {
			changed = append(changed, c)
		}
		if c.New != "" && !d.allowed(e.Asset, c.Field, c.New) {
			offList = append(offList, c)
		}
	}
	var out []Finding
	if len(changed) > 0 {
		out = append(out, Finding{
			Type: TypeFirmwareUnauthorised, Asset: e.Asset, Severity: Critical, Time: e.Time,
			Summary:  "firmware changed on " + e.Asset + ": " + describe(changed),
			Evidence: Evidence{Events: []twin.Event{*e}},
			Changes:  changed, Coverable: true,
		})
	}
	if len(offList) > 0 {
		out = append(out, Finding{
			Type: TypeFirmwareNotAllowed, Asset: e.Asset, Severity: Critical, Time: e.Time,
			Summary:  "firmware not on the allow-list on " + e.Asset + ": " + describe(offList),
			Evidence: Evidence{Events: []twin.Event{*e}},
			Changes:  offList,
		})
	}
	return out
}

// allowed reports whether version is allowed for field on the asset: true
// when no allow-list matches the asset's class or the matching one leaves
// that part open.
func (d *firmwareDetector) allowed(asset, field, version string) bool {
	a, _ := d.view.Asset(asset)
	for i := range d.allow {
		l := &d.allow[i]
		if l.Kind != string(a.Kind) {
			continue
		}
		if l.Name != "" {
			if ok, _ := path.Match(l.Name, a.Identity.Name); !ok {
				continue
			}
		}
		vs := l.versions(field)
		return len(vs) == 0 || slices.Contains(vs, version)
	}
	return true
}

func describe(cs []twin.Change) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		old := c.Old
		if old == "" {
			old = "(none)"
		}
		parts[i] = fmt.Sprintf("%s %s -> %s", c.Field, old, c.New)
	}
	return strings.Join(parts, ", ")
}

package twin

import (
	"fmt"
	"strconv"
	"time"
)

// EventType names what an event did.
type EventType string

// Event types. Most are changes of tracked fields; SequenceGap and the
// gateway ones record what the ingest saw about a gateway's stream; the
// alert ones record an alert's lifecycle on its asset.
const (
	EventRegistered       EventType = "registered"
	EventIdentityChanged  EventType = "identity_changed"
	EventFirmwareChanged  EventType = "firmware_changed"
	EventLocationChanged  EventType = "location_changed"
	EventHealthChanged    EventType = "health_changed"
	EventCustodyChanged   EventType = "custody_changed"
	EventPlacementChanged EventType = "placement_changed" // site, parent, gateway
	EventSequenceGap      EventType = "sequence_gap"
	EventGatewayOnline    EventType = "gateway_online"
	EventGatewayOffline   EventType = "gateway_offline"
	// Alert lifecycle events change no field: their Note names the alert
	// (internal/detect/alert), so alerts are anchored with the event log.
	EventAlertRaised       EventType = "alert_raised"
	EventAlertAcknowledged EventType = "alert_acknowledged"
	EventAlertResolved     EventType = "alert_resolved"
	EventAlertAssigned     EventType = "alert_assigned"
	EventAlertCommented    EventType = "alert_commented"
)

// Source is the gateway message an event came from; empty for events made
// through the API.
type Source struct {
	Gateway string `json:"gateway,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Actor   string `json:"actor,omitempty"` // user or service that made an API change
}

// Change is one tracked field's move from Old to New, as text.
type Change struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// Event is one change of one asset. ID is the event's position in the
// service's event log (1-based, assigned when stored); Revision is the
// asset's revision after the event.
type Event struct {
	ID       uint64    `json:"id"`
	Asset    string    `json:"asset"`
	Revision uint64    `json:"revision"`
	Type     EventType `json:"type"`
	Time     time.Time `json:"time"`     // reading time
	Recorded time.Time `json:"recorded"` // when the service stored it
	Source   Source    `json:"source"`
	Changes  []Change  `json:"changes,omitempty"`
	// Note explains the change, e.g. the work order that covered it.
	Note string `json:"note,omitempty"`
}

// field is one tracked field: its name in a Change and how to read and write it.
type field struct {
	name string
	typ  EventType
	get  func(*Asset) string
	set  func(*Asset, string) error
}

func str(p func(*Asset) *string) (func(*Asset) string, func(*Asset, string) error) {
	return func(a *Asset) string { return *p(a) },
		func(a *Asset, v string) error { *p(a) = v; return nil }
}

func u64(p func(*Asset) *uint64) (func(*Asset) string, func(*Asset, string) error) {
	return func(a *Asset) string { return strconv.FormatUint(*p(a), 10) },
		func(a *Asset, v string) error {
			n, err := strconv.ParseUint(v, 10, 64)
			*p(a) = n
			return err
		}
}

func integer(p func(*Asset) *int) (func(*Asset) string, func(*Asset, string) error) {
	return func(a *Asset) string { return strconv.Itoa(*p(a)) },
		func(a *Asset, v string) error {
			n, err := strconv.Atoi(v)
			*p(a) = n
			return err
		}
}

func float(p func(*Asset) *float64) (func(*Asset) string, func(*Asset, string) error) {
	return func(a *Asset) string { return strconv.FormatFloat(*p(a), 'f', -1, 64) },
		func(a *Asset, v string) error {
			n, err := strconv.ParseFloat(v, 64)
			*p(a) = n
			return err
		}
}

func boolean(p func(*Asset) *bool) (func(*Asset) string, func(*Asset, string) error) {
	return func(a *Asset) string { return strconv.FormatBool(*p(a)) },
		func(a *Asset, v string) error {
			b, err := strconv.ParseBool(v)
			*p(a) = b
			return err
		}
}

// fields is every tracked field, in the order changes are listed.
var fields = func() []field {
	var fs []field
	add := func(name string, typ EventType, get func(*Asset) string, set func(*Asset, string) error) {
		fs = append(fs, field{name, typ, get, set})
	}
	g, s := str(func(a *Asset) *string { return (*string)(&a.Kind) })
	add("kind", EventPlacementChanged, g, s)
	g, s = str(func(a *Asset) *string { return &a.Site })
	add("site", EventPlacementChanged, g, s)
	g, s = str(func(a *Asset) *string { return &a.Parent })
	add("parent", EventPlacementChanged, g, s)
	g, s = str(func(a *Asset) *string { return &a.Gateway })
	add("gateway", EventPlacementChanged, g, s)
	for _, f := range []struct {
		name string
		p    func(*Asset) *string
	}{
		{"identity.name", func(a *Asset) *string { return &a.Identity.Name }},
		{"identity.serial", func(a *Asset) *string { return &a.Identity.Serial }},
		{"identity.uuid", func(a *Asset) *string { return &a.Identity.UUID }},
		{"identity.pci_bus_id", func(a *Asset) *string { return &a.Identity.PCIBusID }},
		{"identity.board_part", func(a *Asset) *string { return &a.Identity.BoardPart }},
		{"identity.rfid_tag", func(a *Asset) *string { return &a.Identity.RFIDTag }},
		{"identity.hostname", func(a *Asset) *string { return &a.Identity.Hostname }},
		{"identity.rack", func(a *Asset) *string { return &a.Identity.Rack }},
	} {
		g, s := str(f.p)
		add(f.name, EventIdentityChanged, g, s)
	}
	for _, f := range []struct {
		name string
		p    func(*Asset) *string
	}{
		{"firmware.vbios", func(a *Asset) *string { return &a.Firmware.VBIOS }},
		{"firmware.driver", func(a *Asset) *string { return &a.Firmware.Driver }},
		{"firmware.inforom", func(a *Asset) *string { return &a.Firmware.InfoROM }},
		{"firmware.bios", func(a *Asset) *string { return &a.Firmware.BIOS }},
		{"firmware.bmc", func(a *Asset) *string { return &a.Firmware.BMC }},
	} {
		g, s := str(f.p)
		add(f.name, EventFirmwareChanged, g, s)
	}
	g, s = str(func(a *Asset) *string { return &a.Location.Zone })
	add("location.zone", EventLocationChanged, g, s)
	g, s = str(func(a *Asset) *string { return &a.Location.ReadPoint })
	add("location.read_point", EventLocationChanged, g, s)
	g, s = float(func(a *Asset) *float64 { return &a.Location.Lat })
	add("location.lat", EventLocationChanged, g, s)
	g, s = float(func(a *Asset) *float64 { return &a.Location.Lon })
	add("location.lon", EventLocationChanged, g, s)
	g, s = str(func(a *Asset) *string { return &a.Health.State })
	add("health.state", EventHealthChanged, g, s)
	g, s = u64(func(a *Asset) *uint64 { return &a.Health.ECCDoubleBit })
	add("health.ecc_dbe", EventHealthChanged, g, s)
	g, s = u64(func(a *Asset) *uint64 { return &a.Health.XIDCount })
	add("health.xid_count", EventHealthChanged, g, s)
	g, s = integer(func(a *Asset) *int { return &a.Health.LastXID })
	add("health.last_xid", EventHealthChanged, g, s)
	g, s = integer(func(a *Asset) *int { return &a.Health.RetiredPages })
	add("health.retired_pages", EventHealthChanged, g, s)
	g, s = integer(func(a *Asset) *int { return &a.Health.RemappedRows })
	add("health.remapped_rows", EventHealthChanged, g, s)
	g, s = boolean(func(a *Asset) *bool { return &a.Health.RowRemapFailure })
	add("health.row_remap_failure", EventHealthChanged, g, s)
	g, s = str(func(a *Asset) *string { return &a.Custody.Owner })
	add("custody.owner", EventCustodyChanged, g, s)
	g, s = str(func(a *Asset) *string { return &a.Custody.Holder })
	add("custody.holder", EventCustodyChanged, g, s)
	g, s = str(func(a *Asset) *string { return (*string)(&a.Custody.Status) })
	add("custody.status", EventCustodyChanged, g, s)
	return fs
}()

var fieldByName = func() map[string]*field {
	m := make(map[string]*field, len(fields))
	for i := range fields {
		m[fields[i].name] = &fields[i]
	}
	return m
}()

// Diff lists the tracked fields that differ between prev and next, in a
// fixed order. Observations are not compared.
func Diff(prev, next *Asset) []Change {
	var out []Change
	for i := range fields {
		f := &fields[i]
		if o, n := f.get(prev), f.get(next); o != n {
			out = append(out, Change{Field: f.name, Old: o, New: n})
		}
	}
	return out
}

// TypeOf is the event type for a set of changes: the type of the first
// change, or Registered for an asset's first revision.
func TypeOf(prevRevision uint64, changes []Change) EventType {
	if prevRevision == 0 {
		return EventRegistered
	}
	if len(changes) == 0 {
		return ""
	}
	return fieldByName[changes[0].Field].typ
}

// Apply folds one event into an asset: it checks the event is the next
// revision of this asset, sets every changed field, and returns the new twin.
// Observations in prev are kept.
func Apply(prev Asset, e Event) (Asset, error) {
	if e.Asset != prev.ID && prev.ID != "" {
		return prev, fmt.Errorf("event %d is for asset %q, not %q", e.ID, e.Asset, prev.ID)
	}
	if e.Revision != prev.Revision+1 {
		return prev, fmt.Errorf("event %d: revision %d does not follow %d", e.ID, e.Revision, prev.Revision)
	}
	next := prev
	next.ID = e.Asset
	for _, c := range e.Changes {
		f, ok := fieldByName[c.Field]
		if !ok {
			return prev, fmt.Errorf("event %d: unknown field %q", e.ID, c.Field)
		}
		if err := f.set(&next, c.New); err != nil {
			return prev, fmt.Errorf("event %d: field %s = %q: %w", e.ID, c.Field, c.New, err)
		}
	}
	next.Revision = e.Revision
	next.Updated = e.Time
	if e.Time.After(next.LastSeen) {
		next.LastSeen = e.Time
	}
	return next, nil
}

// Fold replays events from an empty twin.
func Fold(events []Event) (Asset, error) {
	var a Asset
	for _, e := range events {
		var err error
		if a, err = Apply(a, e); err != nil {
			return a, err
		}
	}
	return a, nil
}

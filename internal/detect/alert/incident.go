package alert

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"twinchain/internal/detect"
)

// An Incident groups the alerts that one thing to do explains: alerts of
// the same cause in the same place (host, rack or site, as the cause
// decides) whose findings came within the correlation window of each
// other. A rack losing its cooling is one incident with the overheating
// and slowdown alerts of its GPUs as members, not sixteen things to do.
//
// An incident is open while any member is; it resolves when the last open
// member is resolved. A later related alert then opens a new incident.
type Incident struct {
	ID       string          `json:"id"` // "IN-1", ...
	State    State           `json:"state"`
	Severity detect.Severity `json:"severity"` // the highest of its members'
	// Cause is the class of its alerts (Causes); Scope is where: "host
	// srv-s1-001", "rack s1-r01", "site s1", "asset X" or "fleet".
	Cause     string    `json:"cause"`
	Scope     string    `json:"scope"`
	Site      string    `json:"site,omitempty"`
	Summary   string    `json:"summary"`    // the cause summary: what, where, how many of which type
	FirstSeen time.Time `json:"first_seen"` // reading time of its first finding
	LastSeen  time.Time `json:"last_seen"`
	Opened    time.Time `json:"opened"`            // service time
	Resolved  time.Time `json:"resolved,omitzero"` // service time the last member was resolved
	Alerts    []string  `json:"alerts"`            // member alert ids, oldest first
	Assets    []string  `json:"assets"`            // the members' assets, sorted
	Members   []Member  `json:"members"`           // one per member alert
	Types     []string  `json:"types"`             // the members' types, sorted
	Hosts     []string  `json:"hosts,omitempty"`   // servers involved, sorted
	Racks     []string  `json:"racks,omitempty"`   // racks involved, sorted
	Count     int       `json:"count"`             // findings across its members
	Window    string    `json:"window"`            // the correlation window in force
	// Assignee is who works on the incident; its member alerts carry the
	// same assignee, each through its own anchored assigned step, and an
	// alert that joins later starts with it.
	Assignee string `json:"assignee,omitempty"`
	// History lists the assignments and comments made on the incident as
	// a whole (each also a step of every member alert still open).
	History []Transition `json:"history,omitempty"`
}

// Member is one alert of an incident as the incident last saw it.
type Member struct {
	Alert    string          `json:"alert"`
	Type     detect.Type     `json:"type"`
	Asset    string          `json:"asset"`
	Severity detect.Severity `json:"severity"`
	State    State           `json:"state"`
	Count    int             `json:"count"`
}

// Causes maps each finding type to its cause class. Types not listed are
// their own class, scoped to their asset.
var Causes = map[detect.Type]string{
	detect.TypeOverheating: "thermal", detect.TypeThermalSlowdown: "thermal", detect.TypePowerExcursion: "thermal",
	detect.TypeXID: "hardware", detect.TypeECCDoubleBit: "hardware", detect.TypeRowRemapFailure: "hardware",
	detect.TypeRetiredPages: "hardware", detect.TypePCIeReplays: "hardware",
	detect.TypeSensorDrift:  "sensor",
	detect.TypeSubstitution: "identity", detect.TypeUnknownAsset: "identity", detect.TypeAssetMissing: "identity",
	detect.TypeFirmwareUnauthorised: "firmware", detect.TypeFirmwareNotAllowed: "firmware",
	detect.TypeGeofenceExit: "custody", detect.TypeZoneViolation: "custody", detect.TypeMovedInService: "custody",
	detect.TypeImpossibleTravel: "custody", detect.TypeClone: "custody",
	detect.TypeHeartbeatMissed: "custody", detect.TypeGatewayOffline: "custody",
	detect.TypeBadSignatures: "tamper", detect.TypeReplayedMessages: "tamper", detect.TypeUnknownGateway: "tamper",
	detect.TypeSequenceGap: "tamper", detect.TypeClockSkew: "tamper", detect.TypeGPSClockAnomaly: "tamper",
	detect.TypeUnapprovedModel: "runtime", detect.TypeEnvironmentDrift: "runtime",
}

// Correlation is the cause and scope an alert is grouped by: thermal
// alerts by rack (a cooling failure), hardware and sensor alerts by host,
// identity, firmware, custody and tamper alerts by site (an exchange
// between two servers, a rollout, a theft, an attack).
func Correlation(a *Alert) (cause, scope string) {
	cause, ok := Causes[a.Type]
	if !ok {
		return string(a.Type), "asset " + a.Asset
	}
	var order []string
	switch cause {
	case "thermal":
		order = []string{"rack", "host", "site"}
	case "hardware", "sensor":
		order = []string{"host"}
	default:
		order = []string{"site"}
	}
	for _, o := range order {
		switch {
		case o == "rack" && a.Rack != "":
			return cause, "rack " + a.Rack
		case o == "host" && a.Host != "":
			return cause, "host " + a.Host
		case o == "site" && a.Site != "":
			return cause, "site " + a.Site
		}
	}
	if cause == "tamper" && a.Site == "" {
		return cause, "fleet" // claimed gateway ids with no site: one attack surface
	}
	return cause, "asset " + a.Asset
}

// Add makes a a member (or refreshes its entry) and recomputes what
// follows from the members.
func (in *Incident) Add(a *Alert) {
	i := slices.IndexFunc(in.Members, func(m Member) bool { return m.Alert == a.ID })
	m := Member{Alert: a.ID, Type: a.Type, Asset: a.Asset, Severity: a.Severity, State: a.State, Count: a.Count}
	if i < 0 {
		in.Members = append(in.Members, m)
	} else {
		in.Members[i] = m
	}
	if in.FirstSeen.IsZero() || a.FirstSeen.Before(in.FirstSeen) {
		in.FirstSeen = a.FirstSeen
	}
	if a.LastSeen.After(in.LastSeen) {
		in.LastSeen = a.LastSeen
	}
	if a.Host != "" && !slices.Contains(in.Hosts, a.Host) {
		in.Hosts = append(in.Hosts, a.Host)
		slices.Sort(in.Hosts)
	}
	if a.Rack != "" && !slices.Contains(in.Racks, a.Rack) {
		in.Racks = append(in.Racks, a.Rack)
		slices.Sort(in.Racks)
	}
	in.refresh()
}

// refresh recomputes severity, state, ids, assets, types and the summary
// from the members.
func (in *Incident) refresh() {
	in.Severity, in.Alerts, in.Assets, in.Types, in.Count = 0, nil, nil, nil, 0
	open := false
	byType := map[string]map[string]bool{}
	for _, m := range in.Members {
		in.Severity = max(in.Severity, m.Severity)
		in.Count += m.Count
		in.Alerts = append(in.Alerts, m.Alert)
		if !slices.Contains(in.Assets, m.Asset) {
			in.Assets = append(in.Assets, m.Asset)
		}
		if byType[string(m.Type)] == nil {
			byType[string(m.Type)] = map[string]bool{}
			in.Types = append(in.Types, string(m.Type))
		}
		byType[string(m.Type)][m.Asset] = true
		open = open || m.State != Resolved
	}
	sort.Strings(in.Assets)
	sort.Strings(in.Types)
	if open {
		in.State = Open
	} else {
		in.State = Resolved
	}
	parts := make([]string, 0, len(in.Types))
	for _, t := range in.Types {
		n := len(byType[t])
		if n == 1 {
			for a := range byType[t] {
				parts = append(parts, fmt.Sprintf("%s on %s", t, a))
			}
			continue
		}
		parts = append(parts, fmt.Sprintf("%s on %d assets", t, n))
	}
	in.Summary = fmt.Sprintf("%s, %s: %d alert(s) on %d asset(s): %s", in.Cause, in.Scope, len(in.Members), len(in.Assets), strings.Join(parts, "; "))
}

// IncidentFilter selects incidents in ListIncidents. Empty fields match all.
type IncidentFilter struct {
	State       State
	Cause       string
	Site        string
	Assignee    string
	MinSeverity detect.Severity
	// Q is the dashboard's search (MatchWords) over the incident's id,
	// cause, scope, site, summary, assignee, assets, hosts, racks and
	// alert ids.
	Q string
}

// Match reports whether in passes the filter.
func (f *IncidentFilter) Match(in *Incident) bool {
	if !((f.State == "" || in.State == f.State) && (f.Cause == "" || in.Cause == f.Cause) &&
		(f.Site == "" || in.Site == f.Site) && (f.Assignee == "" || in.Assignee == f.Assignee) && in.Severity >= f.MinSeverity) {
		return false
	}
	if f.Q == "" {
		return true
	}
	fields := append([]string{in.ID, in.Cause, in.Scope, in.Site, in.Summary, in.Assignee}, in.Assets...)
	fields = append(append(append(fields, in.Hosts...), in.Racks...), in.Alerts...)
	return MatchWords(f.Q, fields...)
}

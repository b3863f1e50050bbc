// Package alert turns findings into alerts: one open alert per asset and
// type (later findings raise its count and last-seen time), a lifecycle
// open -> acknowledged -> resolved with who, when and a comment, escalation
// until acknowledged, and routing by severity, site and type to sinks
// (HMAC-signed webhooks, the MQTT alert topic, the SSE stream) through a
// durable outbox, so a notification survives a receiver outage and a restart.
//
// Alerts, the open index, the outbox and the detection cursors live in one
// bbolt file of their own, updated in one transaction per batch of findings.
// With RecordLifecycle, each lifecycle step is also queued there and a
// LifecycleRecorder stores it as a twin event on the alert's asset, so
// alerts are anchored with the event log (lifecycle.go).
package alert

import (
	"errors"
	"strings"
	"time"

	"twinchain/internal/detect"
)

// Errors the store returns; the API maps them to HTTP codes.
var (
	ErrNotFound = errors.New("alert not found")
	ErrConflict = errors.New("alert state conflict")
	ErrInvalid  = errors.New("invalid request")
)

// State is where an alert is in its lifecycle.
type State string

// Alert states.
const (
	Open         State = "open"
	Acknowledged State = "acknowledged"
	Resolved     State = "resolved"
)

// Transition is one lifecycle step: a move to State, or (Step "assigned"
// or "commented") an assignment or a comment, State then being the state
// the alert stayed in.
type Transition struct {
	State    State     `json:"state"`
	Step     Step      `json:"step,omitempty"` // assigned or commented; empty for a move to State
	By       string    `json:"by"`
	At       time.Time `json:"at"`
	Comment  string    `json:"comment,omitempty"`
	Assignee string    `json:"assignee,omitempty"` // the new assignee of an assigned step ("" unassigns)
}

// Alert is one open or past alert.
type Alert struct {
	ID       string          `json:"id"`
	Type     detect.Type     `json:"type"`
	Asset    string          `json:"asset"`
	Site     string          `json:"site,omitempty"`
	Host     string          `json:"host,omitempty"` // the server the asset is (in)
	Rack     string          `json:"rack,omitempty"`
	Severity detect.Severity `json:"severity"`
	State    State           `json:"state"`
	// Assignee is who works on it ("" for nobody), set by assigned steps.
	Assignee string `json:"assignee,omitempty"`
	// Incident is the incident this alert belongs to (incident.go).
	Incident  string           `json:"incident,omitempty"`
	Summary   string           `json:"summary"`
	Count     int              `json:"count"`
	FirstSeen time.Time        `json:"first_seen"` // reading time of the first finding
	LastSeen  time.Time        `json:"last_seen"`  // reading time of the latest finding
	Opened    time.Time        `json:"opened"`     // service time the alert was opened
	Evidence  []EvidenceRecord `json:"evidence"`
	History   []Transition     `json:"history"`
	// Escalations counts re-notifications sent while unacknowledged.
	Escalations    int       `json:"escalations"`
	NextEscalation time.Time `json:"next_escalation,omitzero"`
	// Response records an automated response, e.g. "quarantined".
	Response string `json:"response,omitempty"`
	// Lifecycle lists the steps recorded as twin events on the asset
	// (raised, acknowledged, resolved, assigned, commented), so the alert
	// is anchored.
	Lifecycle []LifecycleEvent `json:"lifecycle,omitempty"`
}

// EvidenceRecord is one finding's evidence.
type EvidenceRecord struct {
	Time     time.Time       `json:"time"`
	Summary  string          `json:"summary"`
	Evidence detect.Evidence `json:"evidence"`
	Note     string          `json:"note,omitempty"` // e.g. the work orders that covered part of it
}

// Notification is what a sink delivers: an alert at one moment of its life.
type Notification struct {
	Event string    `json:"event"` // opened, escalated, acknowledged, resolved, severity_raised
	At    time.Time `json:"at"`
	Alert Alert     `json:"alert"`
}

// Filter selects alerts in List. Empty fields match everything.
type Filter struct {
	State       State
	Type        detect.Type
	Asset       string
	Site        string
	Assignee    string
	MinSeverity detect.Severity
	// Q is the dashboard's search: every word of it, ignoring case, in
	// the alert's id, type, site, asset, summary or assignee.
	Q string
}

// Match reports whether a passes the filter.
func (f *Filter) Match(a *Alert) bool {
	return (f.State == "" || a.State == f.State) && (f.Type == "" || a.Type == f.Type) &&
		(f.Asset == "" || a.Asset == f.Asset) && (f.Site == "" || a.Site == f.Site) && (f.Assignee == "" || a.Assignee == f.Assignee) &&
		a.Severity >= f.MinSeverity && MatchWords(f.Q, a.ID, string(a.Type), a.Site, a.Asset, a.Summary, a.Assignee)
}

// MatchWords is the dashboard's search: true when every word of q is, in
// any case, within one of fields (an empty q matches everything).
func MatchWords(q string, fields ...string) bool {
	words := strings.Fields(strings.ToLower(q))
	if len(words) == 0 {
		return true
	}
	hay := strings.ToLower(strings.Join(fields, " "))
	for _, w := range words {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/twin"
)

// Step is a lifecycle step that is recorded as a twin event on the alert's
// asset, so that the alert is anchored with the event log.
type Step string

// Recorded steps. A finding merged into an open alert (a count bump) is not
// a step; a raised severity shows in the next step's note. Assigned and
// commented change no state: the alert keeps the state of its last state
// step (raised, acknowledged, resolved).
const (
	StepRaised       Step = "raised"
	StepAcknowledged Step = "acknowledged"
	StepResolved     Step = "resolved"
	StepAssigned     Step = "assigned"
	StepCommented    Step = "commented"
)

// SignedEvidence are the alert types whose raised step names the gateway
// message its first finding rests on: the anchorer records that signed
// message on the ledger as evidence (kind alert) about the asset, so the
// ledger holds what the gateway reported, not only the service's word.
var SignedEvidence = map[detect.Type]bool{detect.TypeUnapprovedModel: true, detect.TypeEnvironmentDrift: true}

// State is the alert state step s moves to; false for the steps that
// change no state (assigned, commented).
func (s Step) State() (State, bool) {
	switch s {
	case StepRaised:
		return Open, true
	case StepAcknowledged:
		return Acknowledged, true
	case StepResolved:
		return Resolved, true
	}
	return "", false
}

// EventType is the twin event type of a step.
func (s Step) EventType() twin.EventType {
	switch s {
	case StepRaised:
		return twin.EventAlertRaised
	case StepAcknowledged:
		return twin.EventAlertAcknowledged
	case StepResolved:
		return twin.EventAlertResolved
	case StepAssigned:
		return twin.EventAlertAssigned
	case StepCommented:
		return twin.EventAlertCommented
	}
	return ""
}

// LifecycleEvent is one step of an alert as recorded on the event log:
// the alert's severity, count and evidence hash at that step, every other
// field an analyst reads (Facts, whose hash the event's note carries), and
// the twin event that records it (0 until recorded). Error says why it
// could not be.
type LifecycleEvent struct {
	Step         Step            `json:"step"`
	By           string          `json:"by"`
	Severity     detect.Severity `json:"severity"`
	Count        int             `json:"count"`
	EvidenceHash string          `json:"evidence_hash"`
	Facts        *Facts          `json:"facts,omitempty"` // nil on steps recorded before facts were
	Event        uint64          `json:"event,omitempty"`
	Error        string          `json:"error,omitempty"`
}

// Facts is what an analyst reads on an alert at one lifecycle step,
// besides its id, type and asset (in the step's note) and its evidence
// records (their hash): a proof of the step proves these values then.
type Facts struct {
	Site         string          `json:"site"`
	Severity     detect.Severity `json:"severity"`
	State        State           `json:"state"`
	Assignee     string          `json:"assignee,omitempty"` // who works on it (assigned steps)
	Summary      string          `json:"summary"`
	Count        int             `json:"count"`
	FirstSeen    time.Time       `json:"first_seen"`
	LastSeen     time.Time       `json:"last_seen"`
	Opened       time.Time       `json:"opened"`
	History      []Transition    `json:"history"` // who moved it, when, with what comment
	Response     string          `json:"response"`
	Escalations  int             `json:"escalations"`
	EvidenceHash string          `json:"evidence_hash"`
}

// FactsOf is a's facts as they are now.
func FactsOf(a *Alert) Facts {
	return Facts{Site: a.Site, Severity: a.Severity, State: a.State, Assignee: a.Assignee, Summary: a.Summary, Count: a.Count,
		FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, Opened: a.Opened, History: append([]Transition(nil), a.History...),
		Response: a.Response, Escalations: a.Escalations, EvidenceHash: EvidenceHash(a.Evidence)}
}

// Hash is "sha256:" and the hex SHA-256 of the facts' JSON.
func (f *Facts) Hash() string {
	raw, _ := json.Marshal(f) // plain data: cannot fail
	h := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(h[:])
}

// EvidenceHash is "sha256:" and the hex SHA-256 of the evidence records'
// JSON (as the alert store writes them).
func EvidenceHash(ev []EvidenceRecord) string {
	raw, _ := json.Marshal(ev) // plain data: cannot fail
	h := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(h[:])
}

// LifecycleNote is the Note of the twin event that records step l of alert
// id (of type typ); a verifier recomputes it from the alert record.
func LifecycleNote(id string, typ detect.Type, l *LifecycleEvent) string {
	note := fmt.Sprintf("alert %s %s by %s: type=%s severity=%s count=%d evidence=%s", id, l.Step, l.By, typ, l.Severity, l.Count, l.EvidenceHash)
	if l.Facts != nil {
		note += " facts=" + l.Facts.Hash()
	}
	return note
}

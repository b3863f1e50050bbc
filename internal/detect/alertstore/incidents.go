package alertstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/detect/alert"
)

// joinIncident puts alert a into its incident, in the alert's own
// transaction: the one it already belongs to, else the newest open
// incident of its cause and scope whose last finding is within the
// correlation window of a's first, else a new one. It sets a.Incident.
func (s *Store) joinIncident(tx *bolt.Tx, a *alert.Alert, now time.Time) error {
	var in *alert.Incident
	var err error
	if a.Incident != "" {
		if in, err = getIncident(tx, a.Incident); err != nil {
			return err
		}
	} else {
		cause, scope := alert.Correlation(a)
		key := []byte(cause + "\x00" + scope)
		open := tx.Bucket(bktIncOpen)
		if id := open.Get(key); id != nil && s.cfg.IncidentWindow > 0 {
			cand, err := getIncident(tx, string(id))
			if err != nil {
				return err
			}
			if cand.State == alert.Open && !a.FirstSeen.After(cand.LastSeen.Add(s.cfg.IncidentWindow)) {
				in = cand
			}
		}
		if in == nil {
			seq, err := tx.Bucket(bktInc).NextSequence()
			if err != nil {
				return err
			}
			in = &alert.Incident{ID: incidentID(seq), Cause: cause, Scope: scope, Site: a.Site, Opened: now, Window: s.cfg.IncidentWindow.String()}
			if err := open.Put(key, []byte(in.ID)); err != nil {
				return err
			}
		}
		a.Incident = in.ID
		if a.Assignee == "" && in.Assignee != "" && len(a.Lifecycle) == 0 {
			a.Assignee = in.Assignee // a new alert, before its raised step
		}
	}
	wasOpen := in.State == alert.Open
	in.Add(a)
	switch {
	case in.State == alert.Resolved && wasOpen:
		in.Resolved = now
		cause, scope := alert.Correlation(a)
		key := []byte(cause + "\x00" + scope)
		if id := tx.Bucket(bktIncOpen).Get(key); id != nil && string(id) == in.ID {
			if err := tx.Bucket(bktIncOpen).Delete(key); err != nil {
				return err
			}
		}
	case in.State == alert.Open:
		in.Resolved = time.Time{}
	}
	return putIncident(tx, in)
}

func putIncident(tx *bolt.Tx, in *alert.Incident) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return tx.Bucket(bktInc).Put(incidentKey(in.ID), raw)
}

func getIncident(tx *bolt.Tx, id string) (*alert.Incident, error) {
	raw := tx.Bucket(bktInc).Get(incidentKey(id))
	if raw == nil {
		return nil, fmt.Errorf("%s: %w", id, alert.ErrNotFound)
	}
	var in alert.Incident
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("incident %s: %w", id, err)
	}
	return &in, nil
}

func incidentID(n uint64) string { return fmt.Sprintf("IN-%d", n) }

// incidentKey sorts incidents by number, as alertKey does alerts.
func incidentKey(id string) []byte {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, "IN-"), 10, 64)
	if err != nil {
		return []byte(id)
	}
	return []byte(fmt.Sprintf("IN-%016d", n))
}

// Incident returns one incident.
func (s *Store) Incident(id string) (alert.Incident, error) {
	var out alert.Incident
	err := s.db.View(func(tx *bolt.Tx) error {
		in, err := getIncident(tx, id)
		if err == nil {
			out = *in
		}
		return err
	})
	return out, err
}

// Incidents returns up to limit incidents matching f, newest first,
// starting after the incident id cursor ("" for the newest); next is the
// cursor for the following page, "" at the end.
func (s *Store) Incidents(f alert.IncidentFilter, limit int, cursor string) (items []alert.Incident, next string, err error) {
	var after []byte
	if cursor != "" {
		after = incidentKey(cursor)
	}
	return newestFirst(s.db, bktInc, after, limit, "incident", f.Match, func(in *alert.Incident) string { return in.ID })
}

// AssignIncident gives an open incident to assignee ("" takes it back):
// the incident's assignee and history, and an anchored assigned step on
// each member alert not resolved, in one transaction.
func (s *Store) AssignIncident(id, assignee, by, comment string) (alert.Incident, error) {
	if err := checkAssignee(assignee); err != nil {
		return alert.Incident{}, err
	}
	return s.annotateIncident(id, alert.StepAssigned, assignee, by, comment)
}

// CommentIncident adds a comment to an open incident and, as an anchored
// commented step, to each member alert not resolved.
func (s *Store) CommentIncident(id, by, comment string) (alert.Incident, error) {
	if err := checkComment(comment); err != nil {
		return alert.Incident{}, err
	}
	return s.annotateIncident(id, alert.StepCommented, "", by, comment)
}

// AcknowledgeIncident acknowledges an open incident: the incident's
// history, and an anchored acknowledged step on each member alert still
// open, in one transaction. An incident with no open member alert left
// (all acknowledged already) is a conflict.
func (s *Store) AcknowledgeIncident(id, by, comment string) (alert.Incident, error) {
	if err := checkNote(comment); err != nil {
		return alert.Incident{}, err
	}
	return s.stepIncident(id, by, alert.Transition{State: alert.Acknowledged, Comment: comment},
		func(m alert.Member) bool { return m.State == alert.Open },
		func(tx *bolt.Tx, a *alert.Alert, now time.Time) error {
			return s.move(tx, a, alert.Acknowledged, by, comment, now)
		})
}

// ResolveIncident resolves an open incident: the incident's history, and
// an anchored resolved step on each member alert not resolved, in one
// transaction; the incident is then resolved (a later finding of its
// cause opens a new one).
func (s *Store) ResolveIncident(id, by, comment string) (alert.Incident, error) {
	if err := checkNote(comment); err != nil {
		return alert.Incident{}, err
	}
	return s.stepIncident(id, by, alert.Transition{State: alert.Resolved, Comment: comment},
		func(m alert.Member) bool { return m.State != alert.Resolved },
		func(tx *bolt.Tx, a *alert.Alert, now time.Time) error {
			return s.move(tx, a, alert.Resolved, by, comment, now)
		})
}

func (s *Store) annotateIncident(id string, st alert.Step, assignee, by, comment string) (alert.Incident, error) {
	tr := alert.Transition{Step: st, Comment: comment}
	if st == alert.StepAssigned {
		tr.Assignee = assignee
	}
	return s.stepIncident(id, by, tr,
		func(m alert.Member) bool { return m.State != alert.Resolved },
		func(tx *bolt.Tx, a *alert.Alert, now time.Time) error {
			return s.annotate(tx, a, st, assignee, by, comment, now)
		})
}

// stepIncident records tr (by, now) in the history of the open incident
// id and applies do to each member alert that takes the step (takes), in
// one transaction: each member's own anchored step, its notification and
// its incident entry. An incident with no member taking the step is a
// conflict.
func (s *Store) stepIncident(id, by string, tr alert.Transition, takes func(alert.Member) bool, do func(tx *bolt.Tx, a *alert.Alert, now time.Time) error) (alert.Incident, error) {
	if by == "" {
		return alert.Incident{}, fmt.Errorf("who is required: %w", alert.ErrInvalid)
	}
	what := string(tr.Step)
	if what == "" {
		what = string(tr.State)
	}
	var out alert.Incident
	var notify []alert.Notification
	now := s.now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		notify = nil
		in, err := getIncident(tx, id)
		if err != nil {
			return err
		}
		if in.State == alert.Resolved {
			return fmt.Errorf("%s is resolved: cannot be %s: %w", id, what, alert.ErrConflict)
		}
		members := slices.DeleteFunc(slices.Clone(in.Members), func(m alert.Member) bool { return !takes(m) })
		if len(members) == 0 {
			return fmt.Errorf("%s has no member alert left to be %s: %w", id, what, alert.ErrConflict)
		}
		h := tr
		h.By, h.At = by, now
		if h.Step != "" {
			h.State = in.State
		}
		if tr.Step == alert.StepAssigned {
			in.Assignee = tr.Assignee
		}
		in.History = append(in.History, h)
		if err := putIncident(tx, in); err != nil {
			return err
		}
		for _, m := range members {
			a, err := getAlert(tx, m.Alert)
			if err != nil {
				return err
			}
			if err := do(tx, a, now); err != nil {
				return err
			}
			if err := s.joinIncident(tx, a, now); err != nil {
				return err
			}
			if err := putAlert(tx, a); err != nil {
				return err
			}
			if err := s.enqueue(tx, a, what, now); err != nil {
				return err
			}
			notify = append(notify, alert.Notification{Event: what, At: now, Alert: *a})
		}
		got, err := getIncident(tx, id)
		if err == nil {
			out = *got
		}
		return err
	})
	if err != nil {
		return alert.Incident{}, err
	}
	s.published(notify)
	return out, nil
}

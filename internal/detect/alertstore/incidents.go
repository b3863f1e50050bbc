package alertstore

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktInc).Cursor()
		var k, v []byte
		if cursor == "" {
			k, v = c.Last()
		} else {
			ck := incidentKey(cursor)
			k, v = c.Seek(ck)
			if k == nil {
				k, v = c.Last()
			}
			if k != nil && bytes.Compare(k, ck) >= 0 {
				k, v = c.Prev()
			}
		}
		for ; k != nil; k, v = c.Prev() {
			var in alert.Incident
			if err := json.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("incident %s: %w", k, err)
			}
			if !f.Match(&in) {
				continue
			}
			if len(items) == limit {
				next = items[len(items)-1].ID
				return nil
			}
			items = append(items, in)
		}
		return nil
	})
	return items, next, err
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

func (s *Store) annotateIncident(id string, st alert.Step, assignee, by, comment string) (alert.Incident, error) {
	if by == "" {
		return alert.Incident{}, fmt.Errorf("who is required: %w", alert.ErrInvalid)
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
			return fmt.Errorf("%s is resolved: cannot be %s: %w", id, st, alert.ErrConflict)
		}
		tr := alert.Transition{State: in.State, Step: st, By: by, At: now, Comment: comment}
		if st == alert.StepAssigned {
			in.Assignee, tr.Assignee = assignee, assignee
		}
		in.History = append(in.History, tr)
		if err := putIncident(tx, in); err != nil {
			return err
		}
		for _, m := range in.Members {
			if m.State == alert.Resolved {
				continue
			}
			a, err := getAlert(tx, m.Alert)
			if err != nil {
				return err
			}
			if err := s.annotate(tx, a, st, assignee, by, comment, now); err != nil {
				return err
			}
			if err := s.joinIncident(tx, a, now); err != nil {
				return err
			}
			if err := putAlert(tx, a); err != nil {
				return err
			}
			if err := s.enqueue(tx, a, string(st), now); err != nil {
				return err
			}
			notify = append(notify, alert.Notification{Event: string(st), At: now, Alert: *a})
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

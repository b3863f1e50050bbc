package alertstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"twinchain/internal/detect/alert"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/detect"
)

var (
	bktAlerts  = []byte("alerts")         // id -> alert.Alert
	bktOpen    = []byte("alerts_open")    // asset \0 type -> id, for open and acknowledged alerts
	bktOutbox  = []byte("outbox")         // seq -> delivery
	bktDead    = []byte("outbox_dead")    // seq -> delivery that ran out of attempts
	bktCursors = []byte("cursors")        // name -> position
	bktSteps   = []byte("alert_steps")    // seq -> pendingStep: lifecycle steps to record as twin events
	bktInc     = []byte("incidents")      // id -> alert.Incident
	bktIncOpen = []byte("incidents_open") // cause \0 scope -> id of the newest open incident
	allBuckets = [][]byte{bktAlerts, bktOpen, bktOutbox, bktDead, bktCursors, bktSteps, bktInc, bktIncOpen}
)

// delivery is one notification waiting for one sink.
type delivery struct {
	Seq       uint64             `json:"seq"`
	Sink      string             `json:"sink"`
	Attempts  int                `json:"attempts"`
	LastError string             `json:"last_error,omitempty"`
	N         alert.Notification `json:"notification"`
}

// DeliveryID names a delivery to its receiver (for deduplication).
func (d *delivery) DeliveryID() string {
	return d.N.Alert.ID + "/" + d.N.Event + "/" + strconv.FormatUint(d.Seq, 10)
}

// Store keeps alerts, their outbox and the detection cursors in bbolt. It
// is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	cfg  alert.Config
	now  func() time.Time
	hub  *Hub
	wake chan struct{}
	// record queues lifecycle steps for a LifecycleRecorder (stepWake).
	record   bool
	stepWake chan struct{}
}

// NewStore uses db (creating the buckets it needs).
func NewStore(db *bolt.DB, cfg alert.Config, now func() time.Time) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert store: %w", err)
	}
	return &Store{db: db, cfg: cfg, now: now, hub: NewHub(64), wake: make(chan struct{}, 1), stepWake: make(chan struct{}, 1)}, nil
}

// Hub is the live stream of notifications (the SSE sink).
func (s *Store) Hub() *Hub { return s.hub }

// Config is the alerting configuration in force.
func (s *Store) Config() alert.Config { return s.cfg }

func getAlert(tx *bolt.Tx, id string) (*alert.Alert, error) {
	raw := tx.Bucket(bktAlerts).Get(alertKey(id))
	if raw == nil {
		return nil, fmt.Errorf("%s: %w", id, alert.ErrNotFound)
	}
	var a alert.Alert
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("alert %s: %w", id, err)
	}
	return &a, nil
}

func putAlert(tx *bolt.Tx, a *alert.Alert) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return tx.Bucket(bktAlerts).Put(alertKey(a.ID), raw)
}

// alertKey sorts alerts by number: "AL-" then the number, zero-padded.
func alertKey(id string) []byte {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, "AL-"), 10, 64)
	if err != nil {
		return []byte(id)
	}
	return []byte(fmt.Sprintf("AL-%016d", n))
}

// enqueue adds a notification for every sink the routes name.
func (s *Store) enqueue(tx *bolt.Tx, a *alert.Alert, event string, at time.Time) error {
	b := tx.Bucket(bktOutbox)
	n := alert.Notification{Event: event, At: at, Alert: *a}
	for _, sink := range s.cfg.SinksFor(a) {
		if sink == alert.SinkSSE {
			continue
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		raw, err := json.Marshal(delivery{Seq: seq, Sink: sink, N: n})
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(seq), raw); err != nil {
			return err
		}
	}
	return nil
}

func seqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// Result is what one Apply did.
type Result struct {
	Opened  []alert.Alert // new alerts
	Updated []alert.Alert // open alerts a finding was merged into
}

// Apply records findings and sets cursors in one transaction: a finding
// for an asset and type with an open (or acknowledged) alert is merged into
// it; any other opens a new alert and queues its notifications.
func (s *Store) Apply(findings []detect.Finding, notes []string, cursors map[string]uint64) (Result, error) {
	var res Result
	var notify []alert.Notification
	now := s.now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		res, notify = Result{}, nil
		open := tx.Bucket(bktOpen)
		for i := range findings {
			f := &findings[i]
			ev := alert.EvidenceRecord{Time: f.Time, Summary: f.Summary, Evidence: f.Evidence}
			if i < len(notes) {
				ev.Note = notes[i]
			}
			key := openKey(f.Asset, f.Type)
			if id := open.Get(key); id != nil {
				a, err := getAlert(tx, string(id))
				if err != nil {
					return err
				}
				a.Count++
				if f.Time.After(a.LastSeen) {
					a.LastSeen = f.Time
				}
				a.Evidence = append(a.Evidence, ev)
				if len(a.Evidence) > maxEvidence {
					a.Evidence = append(a.Evidence[:1], a.Evidence[len(a.Evidence)-maxEvidence+1:]...)
				}
				if f.Severity > a.Severity {
					a.Severity, a.Summary = f.Severity, f.Summary
					if err := s.enqueue(tx, a, "severity_raised", now); err != nil {
						return err
					}
					notify = append(notify, alert.Notification{Event: "severity_raised", At: now, Alert: *a})
				}
				if err := s.joinIncident(tx, a, now); err != nil {
					return err
				}
				if err := putAlert(tx, a); err != nil {
					return err
				}
				res.Updated = append(res.Updated, *a)
				continue
			}
			seq, err := tx.Bucket(bktAlerts).NextSequence()
			if err != nil {
				return err
			}
			a := &alert.Alert{
				ID: alertID(seq), Type: f.Type, Asset: f.Asset, Site: f.Site, Host: f.Host, Rack: f.Rack, Severity: f.Severity, State: alert.Open,
				Summary: f.Summary, Count: 1, FirstSeen: f.Time, LastSeen: f.Time, Opened: now,
				Evidence: []alert.EvidenceRecord{ev}, History: []alert.Transition{{State: alert.Open, By: "detect", At: now}},
			}
			if s.cfg.EscalateAfter > 0 && s.cfg.EscalateMax > 0 {
				a.NextEscalation = now.Add(s.cfg.EscalateAfter)
			}
			if err := s.joinIncident(tx, a, now); err != nil {
				return err
			}
			if err := s.step(tx, a, alert.StepRaised, "detect"); err != nil {
				return err
			}
			if err := putAlert(tx, a); err != nil {
				return err
			}
			if err := open.Put(key, []byte(a.ID)); err != nil {
				return err
			}
			if err := s.enqueue(tx, a, "opened", now); err != nil {
				return err
			}
			res.Opened = append(res.Opened, *a)
			notify = append(notify, alert.Notification{Event: "opened", At: now, Alert: *a})
		}
		return putCursors(tx, cursors)
	})
	if err != nil {
		return Result{}, fmt.Errorf("apply %d findings: %w", len(findings), err)
	}
	s.published(notify)
	return res, nil
}

func putCursors(tx *bolt.Tx, cursors map[string]uint64) error {
	b := tx.Bucket(bktCursors)
	for name, pos := range cursors {
		if err := b.Put([]byte(name), seqKey(pos)); err != nil {
			return err
		}
	}
	return nil
}

// Cursor returns a detection cursor stored with Apply, 0 if never set.
func (s *Store) Cursor(name string) (uint64, error) {
	var pos uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bktCursors).Get([]byte(name)); len(v) == 8 {
			pos = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return pos, err
}

func (s *Store) published(ns []alert.Notification) {
	for i := range ns {
		s.hub.Publish(&ns[i])
	}
	if len(ns) > 0 {
		for _, c := range []chan struct{}{s.wake, s.stepWake} {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// transition moves alert id to state, recording who, when and why.
func (s *Store) transition(id string, to alert.State, by, comment string, from ...alert.State) (alert.Alert, error) {
	return s.change(id, by, func(tx *bolt.Tx, a *alert.Alert, now time.Time) (string, error) {
		if !slices.Contains(from, a.State) {
			return "", fmt.Errorf("%s is %s: cannot move to %s: %w", id, a.State, to, alert.ErrConflict)
		}
		return string(to), s.move(tx, a, to, by, comment, now)
	})
}

// move puts a into state to, in tx: its history, its anchored step, and for
// resolved the end of its open slot.
func (s *Store) move(tx *bolt.Tx, a *alert.Alert, to alert.State, by, comment string, now time.Time) error {
	a.State = to
	a.History = append(a.History, alert.Transition{State: to, By: by, At: now, Comment: comment})
	a.NextEscalation = time.Time{}
	if to == alert.Resolved {
		if err := tx.Bucket(bktOpen).Delete(openKey(a.Asset, a.Type)); err != nil {
			return err
		}
	}
	return s.step(tx, a, alert.Step(to), by)
}

// change applies one lifecycle change (do, which returns the notification
// event) to alert id in one transaction, refreshes its incident, queues
// its notifications and publishes it.
func (s *Store) change(id, by string, do func(tx *bolt.Tx, a *alert.Alert, now time.Time) (event string, err error)) (alert.Alert, error) {
	if by == "" {
		return alert.Alert{}, fmt.Errorf("who is required: %w", alert.ErrInvalid)
	}
	var out alert.Alert
	var event string
	now := s.now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		a, err := getAlert(tx, id)
		if err != nil {
			return err
		}
		if event, err = do(tx, a, now); err != nil {
			return err
		}
		if err := s.joinIncident(tx, a, now); err != nil {
			return err
		}
		if err := putAlert(tx, a); err != nil {
			return err
		}
		out = *a
		return s.enqueue(tx, a, event, now)
	})
	if err != nil {
		return alert.Alert{}, err
	}
	s.published([]alert.Notification{{Event: event, At: now, Alert: out}})
	return out, nil
}

// annotate records an assigned or commented step on a, which must not be
// resolved: a's history, its assignee (assigned) and its anchored step.
func (s *Store) annotate(tx *bolt.Tx, a *alert.Alert, st alert.Step, assignee, by, comment string, now time.Time) error {
	if a.State == alert.Resolved {
		return fmt.Errorf("%s is resolved: cannot be %s: %w", a.ID, st, alert.ErrConflict)
	}
	tr := alert.Transition{State: a.State, Step: st, By: by, At: now, Comment: comment}
	if st == alert.StepAssigned {
		a.Assignee, tr.Assignee = assignee, assignee
	}
	a.History = append(a.History, tr)
	return s.step(tx, a, st, by)
}

// Assign gives an open or acknowledged alert to assignee ("" takes it
// back), recording who did and why as an anchored step.
func (s *Store) Assign(id, assignee, by, comment string) (alert.Alert, error) {
	if err := checkAssignee(assignee); err != nil {
		return alert.Alert{}, err
	}
	return s.change(id, by, func(tx *bolt.Tx, a *alert.Alert, now time.Time) (string, error) {
		return string(alert.StepAssigned), s.annotate(tx, a, alert.StepAssigned, assignee, by, comment, now)
	})
}

// Comment adds a comment to an open or acknowledged alert as an anchored
// step.
func (s *Store) Comment(id, by, comment string) (alert.Alert, error) {
	if err := checkComment(comment); err != nil {
		return alert.Alert{}, err
	}
	return s.change(id, by, func(tx *bolt.Tx, a *alert.Alert, now time.Time) (string, error) {
		return string(alert.StepCommented), s.annotate(tx, a, alert.StepCommented, "", by, comment, now)
	})
}

// maxNote bounds a comment and an assignee name.
const maxNote = 2000

func checkAssignee(assignee string) error {
	if len(assignee) > 200 || strings.ContainsAny(assignee, "\x00\n\r") {
		return fmt.Errorf("assignee: at most 200 characters on one line: %w", alert.ErrInvalid)
	}
	return nil
}

func checkComment(comment string) error {
	if strings.TrimSpace(comment) == "" || len(comment) > maxNote {
		return fmt.Errorf("comment: want 1 to %d characters: %w", maxNote, alert.ErrInvalid)
	}
	return nil
}

// checkNote bounds the optional comment of an incident's acknowledge or
// resolve.
func checkNote(comment string) error {
	if len(comment) > maxNote {
		return fmt.Errorf("comment: at most %d characters: %w", maxNote, alert.ErrInvalid)
	}
	return nil
}

// Acknowledge marks an open alert as seen by someone; it stops escalating.
func (s *Store) Acknowledge(id, by, comment string) (alert.Alert, error) {
	return s.transition(id, alert.Acknowledged, by, comment, alert.Open)
}

// Resolve closes an open or acknowledged alert; a later finding of the
// same asset and type opens a new one.
func (s *Store) Resolve(id, by, comment string) (alert.Alert, error) {
	return s.transition(id, alert.Resolved, by, comment, alert.Open, alert.Acknowledged)
}

// SetResponse records an automated response on an alert.
func (s *Store) SetResponse(id, response string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		a, err := getAlert(tx, id)
		if err != nil {
			return err
		}
		a.Response = response
		return putAlert(tx, a)
	})
}

// Get returns one alert.
func (s *Store) Get(id string) (alert.Alert, error) {
	var out alert.Alert
	err := s.db.View(func(tx *bolt.Tx) error {
		a, err := getAlert(tx, id)
		if err == nil {
			out = *a
		}
		return err
	})
	return out, err
}

// List returns up to limit alerts matching f, newest first, starting after
// the alert id cursor ("" for the newest); next is the cursor for the
// following page, "" at the end.
func (s *Store) List(f alert.Filter, limit int, cursor string) (items []alert.Alert, next string, err error) {
	var after []byte
	if cursor != "" {
		after = alertKey(cursor)
	}
	return newestFirst(s.db, bktAlerts, after, limit, "alert", f.Match, func(a *alert.Alert) string { return a.ID })
}

// newestFirst pages bucket bkt newest first: up to limit records (100 when
// limit is out of 1..1000) that match, starting below key after (nil for the
// newest); next is the last record's id when more follow, "" at the end.
func newestFirst[T any](db *bolt.DB, bkt, after []byte, limit int, what string, match func(*T) bool, id func(*T) string) (items []T, next string, err error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	err = db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bkt).Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.Last()
		} else {
			k, v = c.Seek(after)
			if k == nil {
				k, v = c.Last()
			}
			if k != nil && bytes.Compare(k, after) >= 0 {
				k, v = c.Prev()
			}
		}
		for ; k != nil; k, v = c.Prev() {
			var r T
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%s %s: %w", what, k, err)
			}
			if !match(&r) {
				continue
			}
			if len(items) == limit {
				next = id(&items[len(items)-1])
				return nil
			}
			items = append(items, r)
		}
		return nil
	})
	return items, next, err
}

// escalate queues a re-notification for every open, unacknowledged alert
// whose escalation time has come.
func (s *Store) escalate() (int, error) {
	if s.cfg.EscalateAfter <= 0 || s.cfg.EscalateMax <= 0 {
		return 0, nil
	}
	now := s.now().UTC()
	var notify []alert.Notification
	err := s.db.Update(func(tx *bolt.Tx) error {
		notify = nil
		return tx.Bucket(bktOpen).ForEach(func(_, id []byte) error {
			a, err := getAlert(tx, string(id))
			if err != nil {
				return err
			}
			if a.State != alert.Open || a.NextEscalation.IsZero() || now.Before(a.NextEscalation) || a.Escalations >= s.cfg.EscalateMax {
				return nil
			}
			a.Escalations++
			a.NextEscalation = now.Add(s.cfg.EscalateAfter)
			if a.Escalations >= s.cfg.EscalateMax {
				a.NextEscalation = time.Time{}
			}
			if err := putAlert(tx, a); err != nil {
				return err
			}
			notify = append(notify, alert.Notification{Event: "escalated", At: now, Alert: *a})
			return s.enqueue(tx, a, "escalated", now)
		})
	})
	if err != nil {
		return 0, fmt.Errorf("escalate: %w", err)
	}
	s.published(notify)
	return len(notify), nil
}

// pending returns up to limit queued deliveries, oldest first.
func (s *Store) pending(limit int) ([]delivery, error) {
	var out []delivery
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktOutbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var d delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("outbox %x: %w", k, err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// OutboxLen is the number of queued deliveries.
func (s *Store) OutboxLen() int {
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error { // fails only when closed: then 0
		n = tx.Bucket(bktOutbox).Stats().KeyN
		return nil
	})
	return n
}

// delivered removes a delivery from the outbox.
func (s *Store) delivered(seq uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bktOutbox).Delete(seqKey(seq)) })
}

// failed records a failed attempt; a delivery out of attempts moves to the
// dead-letter bucket.
func (s *Store) failed(d delivery, cause error, maxAttempts int) (dead bool, err error) {
	d.Attempts++
	d.LastError = cause.Error()
	raw, err := json.Marshal(d)
	if err != nil {
		return false, err
	}
	dead = maxAttempts > 0 && d.Attempts >= maxAttempts
	err = s.db.Update(func(tx *bolt.Tx) error {
		if dead {
			if err := tx.Bucket(bktOutbox).Delete(seqKey(d.Seq)); err != nil {
				return err
			}
			return tx.Bucket(bktDead).Put(seqKey(d.Seq), raw)
		}
		return tx.Bucket(bktOutbox).Put(seqKey(d.Seq), raw)
	})
	return dead, err
}

// maxEvidence bounds the evidence kept per alert: the first finding's and
// the latest ones.
const maxEvidence = 10

func openKey(asset string, t detect.Type) []byte { return []byte(asset + "\x00" + string(t)) }

func alertID(n uint64) string { return fmt.Sprintf("AL-%d", n) }

package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/detect/alertstore"
	"twinchain/internal/detect/workorder"
)

// AlertStore is what the alert routes use; *alertstore.Store is one.
type AlertStore interface {
	List(f alert.Filter, limit int, cursor string) ([]alert.Alert, string, error)
	Get(id string) (alert.Alert, error)
	Acknowledge(id, by, comment string) (alert.Alert, error)
	Resolve(id, by, comment string) (alert.Alert, error)
	Assign(id, assignee, by, comment string) (alert.Alert, error)
	Comment(id, by, comment string) (alert.Alert, error)
	AssignIncident(id, assignee, by, comment string) (alert.Incident, error)
	CommentIncident(id, by, comment string) (alert.Incident, error)
	AcknowledgeIncident(id, by, comment string) (alert.Incident, error)
	ResolveIncident(id, by, comment string) (alert.Incident, error)
	Hub() *alertstore.Hub
	Incidents(f alert.IncidentFilter, limit int, cursor string) ([]alert.Incident, string, error)
	Incident(id string) (alert.Incident, error)
}

// WorkOrderStore is what the work-order routes use; *workorderstore.Store is one.
type WorkOrderStore interface {
	Create(o workorder.Order, user, role string) (workorder.Order, error)
	Approve(id, user, role string) (workorder.Order, error)
	Cancel(id, user string) (workorder.Order, error)
	Get(id string) (workorder.Order, error)
	List(asset string, state workorder.State) []workorder.Order
}

func (s *Server) registerAlerts(api router) {
	if s.opts.Alerts == nil {
		api.unavailable("/alerts", "alerting")
		api.unavailable("/incidents", "alerting")
	} else {
		api.get("/alerts", s.listAlerts)
		api.get("/alerts/stream", s.alertStream)
		api.get("/alerts/:id", s.getAlert)
		api.post("/alerts/:id/ack", s.alertTransition(s.opts.Alerts.Acknowledge))
		api.post("/alerts/:id/resolve", s.alertTransition(s.opts.Alerts.Resolve))
		// Assign and comment: body {"assignee","comment"} ("" unassigns);
		// on an incident, also a step on each member alert not resolved.
		al := s.opts.Alerts
		api.post("/alerts/:id/assign", annotate(func(id string, a actor) (alert.Alert, error) { return al.Assign(id, a.Assignee, a.By, a.Comment) }))
		api.post("/alerts/:id/comment", s.alertTransition(al.Comment))
		api.get("/incidents", s.listIncidents)
		api.get("/incidents/:id", s.getIncident)
		api.post("/incidents/:id/assign", annotate(func(id string, a actor) (alert.Incident, error) {
			return al.AssignIncident(id, a.Assignee, a.By, a.Comment)
		}))
		api.post("/incidents/:id/comment", annotate(func(id string, a actor) (alert.Incident, error) { return al.CommentIncident(id, a.By, a.Comment) }))
		// Acknowledge and resolve: body {"comment"}; an acknowledged or
		// resolved step on each member alert the step still applies to.
		api.post("/incidents/:id/ack", annotate(func(id string, a actor) (alert.Incident, error) { return al.AcknowledgeIncident(id, a.By, a.Comment) }))
		api.post("/incidents/:id/resolve", annotate(func(id string, a actor) (alert.Incident, error) { return al.ResolveIncident(id, a.By, a.Comment) }))
	}
	if s.opts.WorkOrders == nil {
		api.unavailable("/workorders", "work orders")
		return
	}
	api.get("/workorders", s.listWorkOrders)
	api.post("/workorders", s.createWorkOrder)
	api.get("/workorders/:id", s.getWorkOrder)
	api.post("/workorders/:id/approve", s.approveWorkOrder)
	api.post("/workorders/:id/cancel", s.cancelWorkOrder)
}

// actor is who makes a request: the user and role the sign-in middleware
// put in the context (Locals "user" and "role"); the body's "by" and "role"
// count only when no middleware set a user (an API built without sign-in).
// Routes that write check the role with Allow (auth.Policy) first; the
// work-order store then applies the two-person rule.
type actor struct {
	By      string `json:"by"`
	Role    string `json:"role"`
	Comment string `json:"comment"`
	// Assignee is the new assignee of an assign request ("" unassigns).
	Assignee string `json:"assignee"`
}

func who(c *fiber.Ctx) (actor, error) {
	var a actor
	if len(c.Body()) > 0 {
		if err := json.Unmarshal(c.Body(), &a); err != nil {
			return a, fmt.Errorf("body: %w", err)
		}
	}
	if u, ok := c.Locals("user").(string); ok && u != "" {
		a.By = u
		if r, ok := c.Locals("role").(string); ok {
			a.Role = r
		}
	}
	return a, nil
}

func alertError(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, alert.ErrNotFound), errors.Is(err, workorder.ErrNotFound):
		return apiError(c, fiber.StatusNotFound, CodeNotFound, err.Error())
	case errors.Is(err, alert.ErrConflict), errors.Is(err, workorder.ErrConflict):
		return apiError(c, fiber.StatusConflict, CodeConflict, err.Error())
	case errors.Is(err, alert.ErrInvalid), errors.Is(err, workorder.ErrInvalid):
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	case errors.Is(err, workorder.ErrForbidden):
		return apiError(c, fiber.StatusForbidden, CodeForbidden, err.Error())
	}
	return err
}

// GET /api/v1/alerts?state=&type=&asset=&site=&assignee=&severity=&q=&limit=&cursor=
// (newest first; q is the dashboard's search, alert.MatchWords)
func (s *Server) listAlerts(c *fiber.Ctx) error {
	limit, err := queryLimit(c, 100, 1000)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	f := alert.Filter{State: alert.State(c.Query("state")), Type: detect.Type(c.Query("type")), Asset: c.Query("asset"), Site: c.Query("site"),
		Assignee: c.Query("assignee"), Q: c.Query("q")}
	switch f.State {
	case "", alert.Open, alert.Acknowledged, alert.Resolved:
	default:
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("state %q: want open, acknowledged or resolved", f.State))
	}
	if sev := c.Query("severity"); sev != "" {
		if f.MinSeverity, err = detect.ParseSeverity(sev); err != nil {
			return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
		}
	}
	if !validCursor(c.Query("cursor"), "AL-") {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "cursor is not one this API returned")
	}
	items, next, err := s.opts.Alerts.List(f, limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	if items == nil {
		items = []alert.Alert{}
	}
	return c.JSON(Page[alert.Alert]{Items: items, NextCursor: next})
}

// validCursor reports whether cursor is empty or an id the list returns
// as next_cursor: prefix and a number (AL-12, IN-3).
func validCursor(cursor, prefix string) bool {
	n, ok := strings.CutPrefix(cursor, prefix)
	if cursor == "" {
		return true
	}
	_, err := strconv.ParseUint(n, 10, 64)
	return ok && err == nil
}

// GET /api/v1/alerts/:id
func (s *Server) getAlert(c *fiber.Ctx) error {
	a, err := s.opts.Alerts.Get(param(c, "id"))
	if err != nil {
		return alertError(c, err)
	}
	return c.JSON(a)
}

// GET /api/v1/incidents?state=&severity=&cause=&site=&assignee=&q=&limit=&cursor=
// (newest first; q is the dashboard's search, alert.MatchWords)
func (s *Server) listIncidents(c *fiber.Ctx) error {
	limit, err := queryLimit(c, 100, 1000)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	f := alert.IncidentFilter{State: alert.State(c.Query("state")), Cause: c.Query("cause"), Site: c.Query("site"),
		Assignee: c.Query("assignee"), Q: c.Query("q")}
	switch f.State {
	case "", alert.Open, alert.Resolved:
	default:
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("state %q: want open or resolved", f.State))
	}
	if sev := c.Query("severity"); sev != "" {
		if f.MinSeverity, err = detect.ParseSeverity(sev); err != nil {
			return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
		}
	}
	if !validCursor(c.Query("cursor"), "IN-") {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "cursor is not one this API returned")
	}
	items, next, err := s.opts.Alerts.Incidents(f, limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	if items == nil {
		items = []alert.Incident{}
	}
	return c.JSON(Page[alert.Incident]{Items: items, NextCursor: next})
}

// GET /api/v1/incidents/:id : the incident with its member alerts in full.
func (s *Server) getIncident(c *fiber.Ctx) error {
	in, err := s.opts.Alerts.Incident(param(c, "id"))
	if err != nil {
		return alertError(c, err)
	}
	out := struct {
		alert.Incident
		MemberAlerts []alert.Alert `json:"member_alerts"`
	}{Incident: in, MemberAlerts: make([]alert.Alert, 0, len(in.Alerts))}
	for _, id := range in.Alerts {
		a, err := s.opts.Alerts.Get(id)
		if err != nil {
			return alertError(c, err)
		}
		out.MemberAlerts = append(out.MemberAlerts, a)
	}
	return c.JSON(out)
}

// POST /api/v1/alerts/:id/ack, /resolve and /comment, body {"by":"...","comment":"..."}
func (s *Server) alertTransition(move func(id, by, comment string) (alert.Alert, error)) fiber.Handler {
	return annotate(func(id string, a actor) (alert.Alert, error) { return move(id, a.By, a.Comment) })
}

// annotate serves an assign or comment route: do gets the id, the
// caller and the body (assignee, comment).
func annotate[T any](do func(id string, a actor) (T, error)) fiber.Handler {
	return func(c *fiber.Ctx) error {
		a, err := who(c)
		if err != nil {
			return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
		}
		out, err := do(param(c, "id"), a)
		if err != nil {
			return alertError(c, err)
		}
		return c.JSON(out)
	}
}

// GET /api/v1/alerts/stream : server-sent events of alert notifications,
// "event: alert\ndata: {alert.Notification JSON}", live from now on (list
// /alerts for what came before). A slow client loses notifications rather
// than holding anything up; the stream ends when a write fails.
func (s *Server) alertStream(c *fiber.Ctx) error {
	ch, cancel := s.opts.Alerts.Hub().Subscribe()
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderConnection, "keep-alive")
	c.Set("X-Accel-Buffering", "no")
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer cancel()
		heartbeat := time.NewTicker(s.opts.StreamHeartbeat)
		defer heartbeat.Stop()
		if _, err := w.WriteString(": twinchain alerts\nretry: 2000\n\n"); err != nil || w.Flush() != nil {
			return
		}
		for {
			select {
			case n := <-ch:
				data, err := json.Marshal(&n)
				if err != nil {
					continue
				}
				fmt.Fprintf(w, "event: alert\ndata: %s\n\n", data)
				if w.Flush() != nil {
					return
				}
			case <-heartbeat.C:
				if _, err := w.WriteString(": ping\n\n"); err != nil || w.Flush() != nil {
					return
				}
			case <-s.done:
				return
			}
		}
	})
	return nil
}

// GET /api/v1/workorders?asset=&state=&limit=&cursor= (in id order; pageInMemory)
func (s *Server) listWorkOrders(c *fiber.Ctx) error {
	items := s.opts.WorkOrders.List(c.Query("asset"), workorder.State(c.Query("state")))
	return pageInMemory(c, items, func(o *workorder.Order) string { return o.ID })
}

// POST /api/v1/workorders, body: the order (asset, reason, changes, start,
// end) and "by" and "role" unless signed in.
func (s *Server) createWorkOrder(c *fiber.Ctx) error {
	var o workorder.Order
	if err := json.Unmarshal(c.Body(), &o); err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("body: %v", err))
	}
	a, err := who(c)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	out, err := s.opts.WorkOrders.Create(o, a.By, a.Role)
	if err != nil {
		return alertError(c, err)
	}
	return c.Status(fiber.StatusCreated).JSON(out)
}

// GET /api/v1/workorders/:id (with the changes it covered)
func (s *Server) getWorkOrder(c *fiber.Ctx) error {
	o, err := s.opts.WorkOrders.Get(param(c, "id"))
	if err != nil {
		return alertError(c, err)
	}
	return c.JSON(o)
}

// POST /api/v1/workorders/:id/approve, body {"by","role"}: someone other
// than the creator, in an approving role.
func (s *Server) approveWorkOrder(c *fiber.Ctx) error {
	a, err := who(c)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	o, err := s.opts.WorkOrders.Approve(param(c, "id"), a.By, a.Role)
	if err != nil {
		return alertError(c, err)
	}
	return c.JSON(o)
}

// POST /api/v1/workorders/:id/cancel, body {"by"}
func (s *Server) cancelWorkOrder(c *fiber.Ctx) error {
	a, err := who(c)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	o, err := s.opts.WorkOrders.Cancel(param(c, "id"), a.By)
	if err != nil {
		return alertError(c, err)
	}
	return c.JSON(o)
}

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/httpapi/auth"
	"twinchain/internal/ingest"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
)

// AssetStore is what the asset routes read; *twinstore.Store is one.
type AssetStore interface {
	Asset(id string) (twin.Asset, error)
	Assets(f twinstore.AssetFilter) (items []twin.Asset, next string, err error)
	AssetEvents(id string, after uint64, limit int) ([]twin.Event, error)
}

// AssetChanger applies API changes to a twin as events; *ingest.Ingest is one.
type AssetChanger interface {
	Change(ctx context.Context, asset, actor, note string, mutate func(*twin.Asset) error) (twin.Event, error)
}

func (s *Server) registerAssets(api router) {
	if s.opts.Assets == nil {
		api.unavailable("/assets", "the asset store")
		api.unavailable("/stats/assets", "the asset store")
		return
	}
	api.get("/stats/assets", s.assetStats)
	api.get("/assets", s.listAssets)
	api.get("/assets/:id", s.getAsset)
	api.get("/assets/:id/events", s.assetEvents)
	api.get("/assets/:id/runtime", func(c *fiber.Ctx) error {
		return s.withAsset(c, func(a *twin.Asset) any { return s.runtimeOf(a) })
	})
	if s.opts.Changes != nil {
		api.patch("/assets/:id", s.patchAsset)
	} else {
		api.patch("/assets/:id", unavailable("asset changes"))
	}
}

// CustodyPatch is the body of PATCH /api/v1/assets/:id: the custody fields
// to set (absent ones stay) and why.
type CustodyPatch struct {
	Custody struct {
		Status *twin.Status `json:"status"`
		Owner  *string      `json:"owner"`
		Holder *string      `json:"holder"`
	} `json:"custody"`
	Note string `json:"note"`
}

// actorOf is who makes a change: the signed-in principal's name (auth.go),
// else "api".
func actorOf(c *fiber.Ctx) string {
	if p, ok := Principal(c); ok && p.Name != "" {
		return p.Name
	}
	return "api"
}

// PATCH /api/v1/assets/:id {"custody":{"status":"quarantined"},"note":"..."}
// changes custody through the ingest's writer as one event, returned with 200.
func (s *Server) patchAsset(c *fiber.Ctx) error {
	var p CustodyPatch
	if err := json.Unmarshal(c.Body(), &p); err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("body: %v", err))
	}
	id := param(c, "id")
	who, _ := Principal(c)
	var refused auth.Action
	e, err := s.opts.Changes.Change(c.UserContext(), id, actorOf(c), p.Note, func(a *twin.Asset) error {
		for _, act := range custodyActions(a.Custody, p) {
			if !who.Can(act) {
				refused = act
				return errRefused
			}
		}
		if p.Custody.Status != nil {
			a.Custody.Status = *p.Custody.Status
		}
		if p.Custody.Owner != nil {
			a.Custody.Owner = *p.Custody.Owner
		}
		if p.Custody.Holder != nil {
			a.Custody.Holder = *p.Custody.Holder
		}
		return nil
	})
	switch {
	case errors.Is(err, errRefused):
		return forbidden(c, who, refused)
	case errors.Is(err, ingest.ErrNoAsset):
		return apiError(c, fiber.StatusNotFound, CodeNotFound, fmt.Sprintf("asset %s not found", id))
	case errors.Is(err, ingest.ErrInvalidChange):
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	case errors.Is(err, ingest.ErrClosed):
		return apiError(c, fiber.StatusServiceUnavailable, CodeUnavailable, err.Error())
	case err != nil:
		return err
	case e.ID == 0:
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("asset %s: nothing to change", id))
	}
	return c.JSON(e)
}

// queryLimit reads ?limit= within 1..max, def when absent.
func queryLimit(c *fiber.Ctx, def, max int) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("limit %q: want a number from 1 to %d", v, max)
	}
	return n, nil
}

// GET /api/v1/assets?site=&kind=&status=&q=&limit=&cursor=
func (s *Server) listAssets(c *fiber.Ctx) error {
	limit, err := queryLimit(c, 100, 1000)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	f := twinstore.AssetFilter{
		Site:   c.Query("site"),
		Kind:   twin.Kind(c.Query("kind")),
		Status: twin.Status(c.Query("status")),
		Parent: c.Query("parent"),
		Q:      c.Query("q"),
		Cursor: c.Query("cursor"),
		Limit:  limit,
	}
	if f.Status != "" && !f.Status.Valid() {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("status %q is not a custody status", f.Status))
	}
	items, next, err := s.opts.Assets.Assets(f)
	if errors.Is(err, twinstore.ErrBadCursor) {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "cursor is not one this API returned")
	}
	if err != nil {
		return err
	}
	return c.JSON(Page[twin.Asset]{Items: items, NextCursor: next})
}

// AssetSummarizer counts assets by kind, site, status and health;
// *twinstore.Store is one.
type AssetSummarizer interface {
	Summarize() (twinstore.Summary, error)
}

// GET /api/v1/stats/assets: counts by kind, site, custody status and health.
func (s *Server) assetStats(c *fiber.Ctx) error {
	sz, ok := s.opts.Assets.(AssetSummarizer)
	if !ok {
		return apiError(c, fiber.StatusServiceUnavailable, CodeUnavailable, "asset counts are not available from this store")
	}
	sum, err := sz.Summarize()
	if err != nil {
		return err
	}
	return c.JSON(sum)
}

// GET /api/v1/assets/:id
func (s *Server) getAsset(c *fiber.Ctx) error {
	return s.withAsset(c, func(a *twin.Asset) any { return a })
}

// withAsset answers with what f makes of the twin the path names, or 404.
func (s *Server) withAsset(c *fiber.Ctx, f func(a *twin.Asset) any) error {
	a, err := s.opts.Assets.Asset(param(c, "id"))
	if errors.Is(err, twinstore.ErrNotFound) {
		return apiError(c, fiber.StatusNotFound, CodeNotFound, fmt.Sprintf("asset %s not found", param(c, "id")))
	}
	if err != nil {
		return err
	}
	return c.JSON(f(&a))
}

// GET /api/v1/assets/:id/events?cursor=&limit= (cursor: the last event id seen)
func (s *Server) assetEvents(c *fiber.Ctx) error {
	limit, err := queryLimit(c, 100, 1000)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	var after uint64
	if v := c.Query("cursor"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("cursor %q: want an event id", v))
		}
	}
	id := param(c, "id")
	events, err := s.opts.Assets.AssetEvents(id, after, limit)
	if errors.Is(err, twinstore.ErrNotFound) {
		return apiError(c, fiber.StatusNotFound, CodeNotFound, fmt.Sprintf("asset %s not found", id))
	}
	if err != nil {
		return err
	}
	page := Page[twin.Event]{Items: events}
	if len(events) == limit {
		page.NextCursor = strconv.FormatUint(events[len(events)-1].ID, 10)
	}
	if page.Items == nil {
		page.Items = []twin.Event{}
	}
	return c.JSON(page)
}

// errRefused ends a change the principal may not make.
var errRefused = errors.New("refused")

// custodyActions are the actions a custody patch takes on custody now:
// the same split as the ledger's (chaincode/core/roles.go rolesForStatus).
// Moving into or out of quarantine is assets.quarantine (security);
// into maintenance, or from it back to service, assets.maintain; any other
// status, owner or holder change assets.write.
func custodyActions(now twin.Custody, p CustodyPatch) []auth.Action {
	var out []auth.Action
	if st := p.Custody.Status; st != nil && *st != now.Status {
		from, to := now.Status, *st
		switch {
		case from == twin.StatusQuarantined, to == twin.StatusQuarantined:
			out = append(out, auth.QuarantineAssets)
		case to == twin.StatusMaintenance, from == twin.StatusMaintenance && to == twin.StatusInService:
			out = append(out, auth.MaintainAssets)
		default:
			out = append(out, auth.WriteAssets)
		}
	}
	if o := p.Custody.Owner; o != nil && *o != now.Owner {
		out = append(out, auth.WriteAssets)
	}
	if h := p.Custody.Holder; h != nil && *h != now.Holder {
		out = append(out, auth.WriteAssets)
	}
	return out
}

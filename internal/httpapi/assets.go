package httpapi

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
)

// AssetStore is what the asset routes read; *twinstore.Store is one.
type AssetStore interface {
	Asset(id string) (twin.Asset, error)
	Assets(f twinstore.AssetFilter) (items []twin.Asset, next string, err error)
	AssetEvents(id string, after uint64, limit int) ([]twin.Event, error)
}

func (s *Server) registerAssets(api fiber.Router) {
	if s.opts.Assets == nil {
		api.All("/assets*", unavailable("the asset store"))
		return
	}
	api.Get("/assets", s.listAssets)
	api.Get("/assets/:id", s.getAsset)
	api.Get("/assets/:id/events", s.assetEvents)
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

// GET /api/v1/assets/:id
func (s *Server) getAsset(c *fiber.Ctx) error {
	a, err := s.opts.Assets.Asset(c.Params("id"))
	if errors.Is(err, twinstore.ErrNotFound) {
		return apiError(c, fiber.StatusNotFound, CodeNotFound, fmt.Sprintf("asset %s not found", c.Params("id")))
	}
	if err != nil {
		return err
	}
	return c.JSON(a)
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
	id := c.Params("id")
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

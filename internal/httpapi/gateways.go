package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/httpapi/auth"
	"twinchain/internal/ingest"
	"twinchain/internal/registry"
)

// GatewayEditor is the gateway registry the API reads and edits;
// *registry.Registry (persisted to the store) is one.
type GatewayEditor interface {
	List() []registry.Gateway
	Get(id string) (registry.Gateway, bool)
	Put(g registry.Gateway) error
	Delete(id string) (bool, error)
}

// IngestSource is what the API reads from the ingest; *ingest.Ingest is one.
type IngestSource interface {
	Stats() ingest.Stats
	Subscribe() (wake <-chan struct{}, cancel func())
}

// GatewayView is a registered gateway with its stream figures.
type GatewayView struct {
	registry.Gateway
	Stream *ingest.GatewayStats `json:"stream,omitempty"`
}

func (s *Server) registerGateways(api router) {
	if s.opts.Ingest != nil {
		api.get("/stats/ingest", func(c *fiber.Ctx) error { return c.JSON(s.opts.Ingest.Stats()) })
	} else {
		api.unavailable("/stats/ingest", "the ingest")
	}
	if s.opts.Gateways == nil {
		api.unavailable("/gateways", "the gateway registry")
		return
	}
	api.get("/gateways", s.listGateways)
	api.get("/gateways/:id", s.getGateway)
	api.post("/gateways", s.createGateway)
	api.put("/gateways/:id", s.putGateway)
	api.delete("/gateways/:id", s.deleteGateway)
}

func (s *Server) gatewayStreams() map[string]*ingest.GatewayStats {
	out := map[string]*ingest.GatewayStats{}
	if s.opts.Ingest == nil {
		return out
	}
	st := s.opts.Ingest.Stats()
	for i := range st.Gateways {
		out[st.Gateways[i].Gateway] = &st.Gateways[i]
	}
	return out
}

// GET /api/v1/gateways?limit=&cursor= (in id order; pageInMemory)
func (s *Server) listGateways(c *fiber.Ctx) error {
	streams := s.gatewayStreams()
	gws := s.opts.Gateways.List()
	items := make([]GatewayView, 0, len(gws))
	for _, g := range gws {
		items = append(items, GatewayView{Gateway: g, Stream: streams[g.ID]})
	}
	return pageInMemory(c, items, func(g *GatewayView) string { return g.ID })
}

// GET /api/v1/gateways/:id
func (s *Server) getGateway(c *fiber.Ctx) error {
	g, ok := s.opts.Gateways.Get(param(c, "id"))
	if !ok {
		return apiError(c, fiber.StatusNotFound, CodeNotFound, fmt.Sprintf("gateway %s not found", param(c, "id")))
	}
	return c.JSON(GatewayView{Gateway: g, Stream: s.gatewayStreams()[g.ID]})
}

// decodeGateway parses a request body into a gateway.
func decodeGateway(c *fiber.Ctx) (registry.Gateway, error) {
	var g registry.Gateway
	if err := json.Unmarshal(c.Body(), &g); err != nil {
		return g, fmt.Errorf("body: %w", err)
	}
	if g.Assets == nil {
		g.Assets = []string{}
	}
	g.Retired = nil // kept by the registry, never set over the API
	return g, nil
}

func (s *Server) saveGateway(c *fiber.Ctx, g registry.Gateway, status int) error {
	if err := s.opts.Gateways.Put(g); errors.Is(err, registry.ErrInvalid) {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	} else if err != nil {
		return err
	}
	s.opts.Log.Info("gateway registered", "gateway", g.ID, "site", g.Site, "assets", len(g.Assets))
	return c.Status(status).JSON(GatewayView{Gateway: g})
}

// POST /api/v1/gateways: register a new gateway; 409 if the id exists.
func (s *Server) createGateway(c *fiber.Ctx) error {
	g, err := decodeGateway(c)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	if _, ok := s.opts.Gateways.Get(g.ID); ok {
		return apiError(c, fiber.StatusConflict, CodeConflict, fmt.Sprintf("gateway %s exists; PUT /api/v1/gateways/%s replaces it", g.ID, g.ID))
	}
	return s.saveGateway(c, g, fiber.StatusCreated)
}

// PUT /api/v1/gateways/:id: create or replace a gateway.
func (s *Server) putGateway(c *fiber.Ctx) error {
	g, err := decodeGateway(c)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	id := param(c, "id")
	if g.ID == "" {
		g.ID = id
	}
	if g.ID != id {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("body id %q differs from the path's %q", g.ID, id))
	}
	status := fiber.StatusOK
	old, ok := s.opts.Gateways.Get(id)
	need := auth.ManageGateways
	switch {
	case !ok:
		status = fiber.StatusCreated
	case !bytes.Equal(old.PublicKey, g.PublicKey):
		need = auth.GatewayKeys // a new key for a registered gateway
	}
	if p, _ := Principal(c); !p.Can(need) {
		return forbidden(c, p, need)
	}
	return s.saveGateway(c, g, status)
}

// DELETE /api/v1/gateways/:id
func (s *Server) deleteGateway(c *fiber.Ctx) error {
	id := param(c, "id")
	ok, err := s.opts.Gateways.Delete(id)
	if err != nil {
		return err
	}
	if !ok {
		return apiError(c, fiber.StatusNotFound, CodeNotFound, fmt.Sprintf("gateway %s not found", id))
	}
	s.opts.Log.Info("gateway removed", "gateway", id)
	return c.SendStatus(fiber.StatusNoContent)
}

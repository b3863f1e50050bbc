package httpapi

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/edge/enroll"
)

// Enroller issues one-time enrollment tokens and redeems them; an
// *enrollment.Service is one.
type Enroller interface {
	Issue(req enroll.TokenRequest) (enroll.Token, error)
	Redeem(req enroll.Request) (enroll.Response, error)
}

// registerEnrollGateway adds POST /api/v1/enroll, where a gateway redeems a
// token with its signed public key. The token is the credential: the
// route is public in the policy table.
func (s *Server) registerEnrollGateway(api router) {
	if s.opts.Enroll == nil {
		api.post(enroll.PathEnroll, unavailable("enrollment"))
		return
	}
	api.post(enroll.PathEnroll, s.redeemToken)
}

// registerEnroll adds POST /api/v1/enroll/tokens, where someone allowed to
// manage gateways asks for a one-time token.
func (s *Server) registerEnroll(api router) {
	if s.opts.Enroll == nil {
		api.post(enroll.PathTokens, unavailable("enrollment"))
		return
	}
	api.post(enroll.PathTokens, s.issueToken)
}

func (s *Server) issueToken(c *fiber.Ctx) error {
	var req enroll.TokenRequest
	if err := c.BodyParser(&req); err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "token request: "+err.Error())
	}
	tok, err := s.opts.Enroll.Issue(req)
	if err != nil {
		return enrollError(c, err)
	}
	by := ""
	if p, ok := Principal(c); ok {
		by = p.Name
	}
	s.opts.Log.Info("enrollment token issued", "site", tok.Site, "gateway", tok.GatewayID, "expires", tok.Expires, "by", by)
	return c.Status(fiber.StatusCreated).JSON(tok)
}

func (s *Server) redeemToken(c *fiber.Ctx) error {
	var req enroll.Request
	if err := c.BodyParser(&req); err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "enrollment request: "+err.Error())
	}
	resp, err := s.opts.Enroll.Redeem(req)
	if err != nil {
		s.opts.Log.Warn("enrollment refused", "gateway", req.GatewayID, "remote", c.IP(), "err", err)
		return enrollError(c, err)
	}
	s.opts.Log.Info("gateway enrolled", "gateway", resp.GatewayID, "site", resp.Site, "remote", c.IP())
	return c.JSON(resp)
}

func enrollError(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, enroll.ErrInvalid):
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	case errors.Is(err, enroll.ErrToken):
		return apiError(c, fiber.StatusUnauthorized, CodeUnauthorized, err.Error())
	case errors.Is(err, enroll.ErrConflict):
		return apiError(c, fiber.StatusConflict, CodeConflict, err.Error())
	}
	return err
}

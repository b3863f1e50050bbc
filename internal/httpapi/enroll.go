package httpapi

import (
	"errors"
	"net"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/enroll"
)

// Enroller issues one-time enrollment tokens and redeems them; an
// *enroll.Service is one.
type Enroller interface {
	Issue(req enroll.TokenRequest) (enroll.Token, error)
	Redeem(req enroll.Request) (enroll.Response, error)
}

// registerEnroll adds the enrollment routes:
//
//	POST /api/v1/enroll/tokens  an administrator asks for a one-time token
//	POST /api/v1/enroll         a gateway redeems it with its signed public key
//
// Until sign-in (auth.go) protects the administrator's route, it answers only
// clients on the loopback interface.
func (s *Server) registerEnroll(api fiber.Router) {
	if s.opts.Enroll == nil {
		api.All("/enroll*", unavailable("enrollment"))
		return
	}
	api.Post(enroll.PathTokens, s.issueToken)
	api.Post(enroll.PathEnroll, s.redeemToken)
}

func (s *Server) issueToken(c *fiber.Ctx) error {
	if ip := net.ParseIP(c.IP()); ip == nil || !ip.IsLoopback() {
		return apiError(c, fiber.StatusForbidden, CodeForbidden, "enrollment tokens are issued to local administrators only")
	}
	var req enroll.TokenRequest
	if err := c.BodyParser(&req); err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "token request: "+err.Error())
	}
	tok, err := s.opts.Enroll.Issue(req)
	if err != nil {
		return enrollError(c, err)
	}
	s.opts.Log.Info("enrollment token issued", "site", tok.Site, "gateway", tok.GatewayID, "expires", tok.Expires)
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

package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/httpapi/auth"
)

// Cookie and header names of the sign-in.
const (
	SessionCookie = "tc_session"
	CSRFCookie    = "tc_csrf"
	CSRFHeader    = "X-CSRF-Token"
	principalKey  = "twinchain.principal"
)

// Auth puts sign-in on the API: the /auth routes, and the middleware that
// finds who each request acts as (a session cookie, or an API token in
// "Authorization: Bearer ...") and guards writes against cross-site forgery.
type Auth struct {
	a      *auth.Authenticator
	secure bool
	log    *slog.Logger
	// failed counts rejected sign-ins and credentials; throttled and busy
	// the sign-ins refused unchecked.
	failed, throttled, busy atomic.Uint64
}

// NewAuth wraps an Authenticator for Fiber. secure marks cookies Secure.
func NewAuth(a *auth.Authenticator, secure bool, log *slog.Logger) *Auth {
	return &Auth{a: a, secure: secure, log: log}
}

// Failed is how many sign-ins and credentials were rejected.
func (x *Auth) Failed() uint64 { return x.failed.Load() }

// Throttled is how many sign-ins were refused unchecked: 429 (too many
// from the address) or 503 (too many at once).
func (x *Auth) Throttled() uint64 { return x.throttled.Load() + x.busy.Load() }

// register adds the /auth routes to api (the /api/v1 group).
func (x *Auth) register(api router) {
	api.post("/auth/login", x.login)
	api.post("/auth/logout", x.logout)
	api.get("/auth/me", x.me)
	api.get("/auth/tokens", x.listTokens)
	api.post("/auth/tokens", x.createToken)
	api.delete("/auth/tokens/:name", x.revokeToken)
}

// GET /api/v1/auth/tokens?limit=&cursor=: every API token's name, role,
// source, maker and last use (never the token), by name.
func (x *Auth) listTokens(c *fiber.Ctx) error {
	return pageInMemory(c, x.a.Tokens(), func(t *auth.TokenInfo) string { return t.Name })
}

type createTokenRequest struct {
	Name string    `json:"name"`
	Role auth.Role `json:"role"`
}

// POST /api/v1/auth/tokens {"name","role"}: 201 with the token, shown this
// once ("token"), and its listing ("info"). The service keeps its SHA-256.
func (x *Auth) createToken(c *fiber.Ctx) error {
	var req createTokenRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "body: want {\"name\": ..., \"role\": ...}: "+err.Error())
	}
	p, _ := Principal(c)
	tok, info, err := x.a.CreateToken(req.Name, req.Role, p.Name)
	switch {
	case errors.Is(err, auth.ErrTokenExists):
		return apiError(c, fiber.StatusConflict, CodeConflict, err.Error())
	case errors.Is(err, auth.ErrNoTokenFile):
		return apiError(c, fiber.StatusConflict, CodeConflict, err.Error())
	case err != nil && (errors.Is(err, auth.ErrTokenName) || !req.Role.Valid()):
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	case err != nil:
		return err
	}
	x.log.Info("API token created", "name", info.Name, "role", info.Role, "by", p.Name)
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"token": tok, "info": info})
}

// DELETE /api/v1/auth/tokens/:name: the token stops working at once.
func (x *Auth) revokeToken(c *fiber.Ctx) error {
	name := param(c, "name")
	err := x.a.RevokeToken(name)
	switch {
	case errors.Is(err, auth.ErrTokenNotFound):
		return apiError(c, fiber.StatusNotFound, CodeNotFound, err.Error())
	case errors.Is(err, auth.ErrTokenInConfig):
		return apiError(c, fiber.StatusConflict, CodeConflict, err.Error())
	case err != nil:
		return err
	}
	p, _ := Principal(c)
	x.log.Info("API token revoked", "name", name, "by", p.Name)
	return c.SendStatus(fiber.StatusNoContent)
}

// Authenticate is the middleware that requires a principal. A bearer token
// acts as its configured role; a session cookie acts as its user, and then
// a write (any method but GET, HEAD, OPTIONS) must also carry the session's
// CSRF token in the X-CSRF-Token header and, if the browser sent an Origin,
// come from this host.
func (x *Auth) Authenticate(c *fiber.Ctx) error {
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		p, found := x.a.Token(strings.TrimSpace(tok))
		if !ok || !found {
			return x.reject(c, fiber.StatusUnauthorized, CodeUnauthorized, "invalid API token")
		}
		setPrincipal(c, p)
		return c.Next()
	}
	p, ok := x.a.Session(c.Cookies(SessionCookie))
	if !ok {
		return apiError(c, fiber.StatusUnauthorized, CodeUnauthorized, "sign in first")
	}
	if !safeMethod(c.Method()) {
		if !sameOrigin(c) {
			return x.reject(c, fiber.StatusForbidden, CodeForbidden, "cross-origin write refused")
		}
		if !auth.CheckCSRF(p, c.Get(CSRFHeader)) {
			return x.reject(c, fiber.StatusForbidden, CodeForbidden, "missing or wrong "+CSRFHeader+" header")
		}
	}
	setPrincipal(c, p)
	return c.Next()
}

// setPrincipal records who the request acts as: the Principal for Require,
// and Locals "user" and "role" (strings) for route files that only need
// the name and role (alerts.go, ledger.go).
func setPrincipal(c *fiber.Ctx, p auth.Principal) {
	c.Locals(principalKey, p)
	c.Locals("user", p.Name)
	c.Locals("role", string(p.Role))
}

// NoAuth is the middleware for an API built without sign-in (tests of
// other domains): every request acts as an anonymous admin. twin-service
// always configures sign-in.
func NoAuth(c *fiber.Ctx) error {
	setPrincipal(c, auth.Principal{Name: "anonymous", Role: auth.Admin, Via: "none"})
	return c.Next()
}

// Principal is who the request acts as (set by Authenticate).
func Principal(c *fiber.Ctx) (auth.Principal, bool) {
	p, ok := c.Locals(principalKey).(auth.Principal)
	return p, ok
}

type loginRequest struct {
	Username string `json:"username" form:"username"`
	Password string `json:"password" form:"password"`
}

type meResponse struct {
	User    string        `json:"user"`
	Role    auth.Role     `json:"role"`
	Via     string        `json:"via"`
	Actions []auth.Action `json:"actions"`
	CSRF    string        `json:"csrf_token,omitempty"`
}

func (x *Auth) login(c *fiber.Ctx) error {
	if !sameOrigin(c) {
		return x.reject(c, fiber.StatusForbidden, CodeForbidden, "cross-origin sign-in refused")
	}
	var req loginRequest
	if err := c.BodyParser(&req); err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "sign-in wants a username and a password")
	}
	s, err := x.a.Login(c.IP(), req.Username, req.Password)
	var th *auth.Throttled
	switch {
	case errors.As(err, &th):
		x.throttled.Add(1)
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(th.RetryAfter.Seconds()))))
		return apiError(c, fiber.StatusTooManyRequests, CodeThrottled, err.Error())
	case errors.Is(err, auth.ErrBusy):
		x.busy.Add(1)
		c.Set(fiber.HeaderRetryAfter, "1")
		return apiError(c, fiber.StatusServiceUnavailable, CodeUnavailable, err.Error())
	case errors.Is(err, auth.ErrBadCredentials):
		// Each of these had its password checked, which the throttle
		// bounds per address: logging them cannot flood the log.
		x.failed.Add(1)
		x.log.Info("sign-in refused", "user", req.Username, "ip", c.IP())
		return apiError(c, fiber.StatusUnauthorized, CodeUnauthorized, err.Error())
	case err != nil:
		return apiError(c, fiber.StatusInternalServerError, CodeInternal, err.Error())
	}
	c.Cookie(&fiber.Cookie{Name: SessionCookie, Value: s.ID, Path: "/", HTTPOnly: true, Secure: x.secure, SameSite: fiber.CookieSameSiteStrictMode})
	c.Cookie(&fiber.Cookie{Name: CSRFCookie, Value: s.CSRF, Path: "/", Secure: x.secure, SameSite: fiber.CookieSameSiteStrictMode})
	x.log.Info("signed in", "user", s.User, "role", s.Role)
	return c.JSON(meResponse{User: s.User, Role: s.Role, Via: "session", Actions: auth.Actions(s.Role), CSRF: s.CSRF})
}

func (x *Auth) logout(c *fiber.Ctx) error {
	x.a.Logout(c.Cookies(SessionCookie))
	for _, name := range []string{SessionCookie, CSRFCookie} {
		c.Cookie(&fiber.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HTTPOnly: name == SessionCookie, Secure: x.secure, SameSite: fiber.CookieSameSiteStrictMode})
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (x *Auth) me(c *fiber.Ctx) error {
	p, _ := Principal(c)
	return c.JSON(meResponse{User: p.Name, Role: p.Role, Via: p.Via, Actions: auth.Actions(p.Role), CSRF: p.CSRF})
}

// reject answers a refused credential or forgery, counting it.
func (x *Auth) reject(c *fiber.Ctx, status int, code, msg string) error {
	x.failed.Add(1)
	x.log.Debug("request refused", "code", code, "reason", msg, "path", c.Path(), "ip", c.IP())
	return apiError(c, status, code, msg)
}

func safeMethod(m string) bool {
	return m == fiber.MethodGet || m == fiber.MethodHead || m == fiber.MethodOptions
}

// sameOrigin reports whether the request's Origin header, when present,
// names the host it was sent to.
func sameOrigin(c *fiber.Ctx) bool {
	o := c.Get(fiber.HeaderOrigin)
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == c.Hostname()
}

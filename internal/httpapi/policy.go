package httpapi

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/edge/enroll"
	"twinchain/internal/httpapi/auth"
)

// Route is one row of the API's policy table: a route, and the actions of
// which the caller must have one (auth.Policy says which roles have each).
// A route with no actions is public: it needs no sign-in.
type Route struct {
	Method string        `json:"method"`
	Path   string        `json:"path"`
	Any    []auth.Action `json:"any_of"`
}

// Public reports whether the route needs no sign-in.
func (r Route) Public() bool { return len(r.Any) == 0 }

// Roles are the roles that get past the route's check, admin included.
func (r Route) Roles() []auth.Role {
	var out []auth.Role
	for _, role := range auth.Roles() {
		if slices.ContainsFunc(r.Any, func(a auth.Action) bool { return auth.Allowed(role, a) }) {
			out = append(out, role)
		}
	}
	return out
}

// v1 is the API's prefix.
const v1 = "/api/v1"

// Routes is the policy table: every route the API serves, with who may
// call it. Every route is registered through it (Server.route); a route
// missing from it makes New fail, and TestEveryRouteInPolicy walks the
// registered routes against it. Some handlers check more once they know
// what the request does: a custody change into or out of quarantine needs
// assets.quarantine, a new key for a registered gateway gateways.keys, and
// the ledger's own role table (chaincode/core/roles.go) decides each
// ledger write.
func Routes() []Route {
	read := []auth.Action{auth.ReadAll}
	r := func(method, path string, any ...auth.Action) Route { return Route{method, path, any} }
	get := func(path string) Route { return r("GET", path, read...) }
	ledgerWrite := func(path string) Route { return r("POST", v1+"/ledger"+path, auth.LedgerWrite) }
	return []Route{
		r("GET", "/healthz"),
		r("GET", "/readyz"),
		get("/metrics"),
		r("POST", v1+"/auth/login"),
		r("POST", v1+"/auth/logout", read...),
		get(v1 + "/auth/me"),
		get(v1 + "/auth/policy"),
		r("GET", v1+"/auth/tokens", auth.ManageTokens),
		r("POST", v1+"/auth/tokens", auth.ManageTokens),
		r("DELETE", v1+"/auth/tokens/:name", auth.ManageTokens),
		r("POST", v1+enroll.PathEnroll), // the enrollment token is the credential
		r("POST", v1+enroll.PathTokens, auth.ManageGateways),

		get(v1 + "/stats/assets"),
		get(v1 + "/assets"),
		get(v1 + "/assets/:id"),
		get(v1 + "/assets/:id/events"),
		get(v1 + "/assets/:id/runtime"),
		get(v1 + "/assets/:id/series"),
		get(v1 + "/assets/:id/latest"),
		r("PATCH", v1+"/assets/:id", auth.WriteAssets, auth.MaintainAssets, auth.QuarantineAssets),

		get(v1 + "/stats/ingest"),
		get(v1 + "/gateways"),
		get(v1 + "/gateways/:id"),
		r("POST", v1+"/gateways", auth.ManageGateways),
		r("PUT", v1+"/gateways/:id", auth.ManageGateways, auth.GatewayKeys),
		r("DELETE", v1+"/gateways/:id", auth.GatewayKeys),

		get(v1 + "/stream"),
		get(v1 + "/sites"),

		get(v1 + "/alerts"),
		get(v1 + "/alerts/stream"),
		get(v1 + "/alerts/:id"),
		r("POST", v1+"/alerts/:id/ack", auth.AckAlerts),
		r("POST", v1+"/alerts/:id/resolve", auth.AckAlerts),
		r("POST", v1+"/alerts/:id/assign", auth.AckAlerts),
		r("POST", v1+"/alerts/:id/comment", auth.AckAlerts),
		get(v1 + "/incidents"),
		get(v1 + "/incidents/:id"),
		r("POST", v1+"/incidents/:id/assign", auth.AckAlerts),
		r("POST", v1+"/incidents/:id/comment", auth.AckAlerts),
		r("POST", v1+"/incidents/:id/ack", auth.AckAlerts),
		r("POST", v1+"/incidents/:id/resolve", auth.AckAlerts),
		get(v1 + "/workorders"),
		get(v1 + "/workorders/:id"),
		r("POST", v1+"/workorders", auth.WriteWorkOrders),
		r("POST", v1+"/workorders/:id/approve", auth.ApproveWorkOrders),
		r("POST", v1+"/workorders/:id/cancel", auth.WriteWorkOrders),

		get(v1 + "/ledger/status"),
		get(v1 + "/ledger/assets/:id"),
		get(v1 + "/ledger/assets/:id/history"),
		get(v1 + "/ledger/assets/:id/evidence"),
		get(v1 + "/ledger/assets/:id/deployments"),
		get(v1 + "/ledger/assets/:id/models"),
		get(v1 + "/ledger/anchors/head"),
		get(v1 + "/ledger/anchors/:seq"),
		get(v1 + "/ledger/events/:id/anchor"),
		get(v1 + "/ledger/events/:id/proof"),
		get(v1 + "/ledger/alerts/:id/proof"),
		get(v1 + "/ledger/proofs/:type/:id"),
		get(v1 + "/ledger/checkpoint"),
		get(v1 + "/ledger/consistency"),
		get(v1 + "/ledger/datasets"),
		get(v1 + "/ledger/datasets/:id"),
		get(v1 + "/ledger/datasets/:id/private"),
		r("POST", v1+"/ledger/datasets/:id/private/verify", read...), // a check: reads only
		get(v1 + "/ledger/models"),
		get(v1 + "/ledger/models/:id"),
		get(v1 + "/ledger/models/:id/lineage"),
		get(v1 + "/ledger/models/:id/deployments"),
		get(v1 + "/ledger/models/:id/runs"),
		get(v1 + "/ledger/attestations"),
		get(v1 + "/ledger/policies/:id"),
		get(v1 + "/ledger/deployments/:id"),
		get(v1 + "/ledger/remediations"),
		get(v1 + "/ledger/remediations/:id"),
		ledgerWrite("/assets"),
		ledgerWrite("/assets/:id/status"),
		ledgerWrite("/datasets"),
		ledgerWrite("/datasets/:id/checks"),
		r("PUT", v1+"/ledger/datasets/:id/private", auth.LedgerWrite),
		ledgerWrite("/models"),
		ledgerWrite("/models/:id/evaluations"),
		ledgerWrite("/attestations"),
		ledgerWrite("/policies"),
		ledgerWrite("/deployments"),
		ledgerWrite("/remediations"),
		ledgerWrite("/remediations/:id/decisions"),
		ledgerWrite("/remediations/:id/execute"),
	}
}

// findRoute is the policy row of method and path (a registered pattern).
func findRoute(method, path string) (Route, bool) {
	for _, r := range Routes() {
		if r.Method == method && r.Path == path {
			return r, true
		}
	}
	return Route{}, false
}

// router registers routes under a prefix through the policy table: each
// gets the sign-in check and its row's role check in front of the group's
// middleware and its handlers.
type router struct {
	s      *Server
	prefix string
	mw     []fiber.Handler // the group's own middleware, after the checks
}

func (rt router) group(prefix string, mw ...fiber.Handler) router {
	return router{s: rt.s, prefix: rt.prefix + prefix, mw: append(slices.Clone(rt.mw), mw...)}
}

func (rt router) get(path string, h ...fiber.Handler)    { rt.add("GET", path, h...) }
func (rt router) post(path string, h ...fiber.Handler)   { rt.add("POST", path, h...) }
func (rt router) put(path string, h ...fiber.Handler)    { rt.add("PUT", path, h...) }
func (rt router) patch(path string, h ...fiber.Handler)  { rt.add("PATCH", path, h...) }
func (rt router) delete(path string, h ...fiber.Handler) { rt.add("DELETE", path, h...) }

func (rt router) add(method, path string, h ...fiber.Handler) {
	full := rt.prefix + path
	row, ok := findRoute(method, full)
	if !ok {
		rt.s.routeErrs = append(rt.s.routeErrs, fmt.Errorf("route %s %s is not in the policy table (httpapi.Routes): add it there with who may call it", method, full))
		return
	}
	var chain []fiber.Handler
	if !row.Public() {
		chain = append(chain, rt.s.authenticate, allowRoute(row))
	}
	if names := paramNames(full); len(names) > 0 {
		chain = append(chain, decodeParams(names))
	}
	chain = append(append(chain, rt.mw...), h...)
	rt.s.app.Add(method, full, chain...)
}

// unavailable answers every request under path (a prefix) of a domain that
// is not configured with 503, after sign-in.
func (rt router) unavailable(path, what string) {
	rt.s.app.Use(rt.prefix+path, rt.s.authenticate, unavailable(what))
}

// allowRoute lets a request through only when its principal may take one
// of the row's actions.
func allowRoute(row Route) fiber.Handler {
	roles := row.Roles()
	return func(c *fiber.Ctx) error {
		p, ok := Principal(c)
		if !ok {
			return apiError(c, fiber.StatusUnauthorized, CodeUnauthorized, "sign in first")
		}
		if !slices.Contains(roles, p.Role) {
			return forbidden(c, p, row.Any...)
		}
		return c.Next()
	}
}

// PolicyRefusal starts the message of every 403 the policy table gives.
const PolicyRefusal = "role %s may not do this: it needs %s (GET " + v1 + "/auth/policy lists who may do what)"

func forbidden(c *fiber.Ctx, p auth.Principal, actions ...auth.Action) error {
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = string(a)
	}
	return apiError(c, fiber.StatusForbidden, CodeForbidden, fmt.Sprintf(PolicyRefusal, p.Role, strings.Join(names, " or ")))
}

// PolicyRow is one row of GET /api/v1/auth/policy.
type PolicyRow struct {
	Route
	Roles []auth.Role `json:"roles"`
}

// GET /api/v1/auth/policy: every route with the roles that may call it.
func policy(c *fiber.Ctx) error {
	var out []PolicyRow
	for _, r := range Routes() {
		out = append(out, PolicyRow{Route: r, Roles: r.Roles()})
	}
	return c.JSON(fiber.Map{"routes": out, "actions": auth.Policy()})
}

// paramNames are the :names in a route pattern.
func paramNames(pattern string) []string {
	var out []string
	for _, seg := range strings.Split(pattern, "/") {
		if name, ok := strings.CutPrefix(seg, ":"); ok {
			out = append(out, name)
		}
	}
	return out
}

const paramLocal = "twinchain.param."

// decodeParams percent-decodes each path parameter once (Fiber hands them
// over as sent: "rack%2F1" for the asset "rack/1") and answers 400 to an
// invalid encoding; handlers read the decoded values with param.
func decodeParams(names []string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		for _, name := range names {
			raw := c.Params(name)
			v, err := url.PathUnescape(raw)
			if err != nil || v == "" {
				return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("path parameter %s %q: not a valid percent-encoded value", name, raw))
			}
			c.Locals(paramLocal+name, v)
		}
		return c.Next()
	}
}

// param is the decoded path parameter name (decodeParams).
func param(c *fiber.Ctx, name string) string {
	v, _ := c.Locals(paramLocal + name).(string)
	return v
}

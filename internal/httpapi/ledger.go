package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"twinchain/chaincode/core"
	"twinchain/internal/detect/alert"
	"twinchain/internal/httpapi/auth"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/proofbundle"
)

// ProofExporter builds proof bundles (*proofbundle.Exporter).
type ProofExporter interface {
	Event(ctx context.Context, id uint64) (*proofbundle.Bundle, error)
	Record(ctx context.Context, typ, id string) (*proofbundle.Bundle, error)
	Alert(ctx context.Context, alert []byte) (*proofbundle.Bundle, error)
}

// EventTree is the event tree's checkpoints and consistency proofs
// (*eventtree.Tree).
type EventTree interface {
	LatestCheckpoint() (eventtree.Checkpoint, bool, error)
	ConsistencyProof(size1, size2 uint64) ([][]byte, error)
}

// LedgerDeps are the ledger routes' dependencies.
type LedgerDeps struct {
	Ledger ledger.Ledger
	Proofs ProofExporter // nil: proof routes answer 503
	Tree   EventTree     // nil: checkpoint routes answer 503
	// Caller says who makes a request; an error answers 401. Every ledger
	// route needs a caller: the core checks roles. nil: the signed-in
	// principal (auth.go), see PrincipalCaller.
	Caller func(c *fiber.Ctx) (core.Caller, error)
	// Status is shown by GET /ledger/status (anchoring counters, tree size,
	// service key); nil leaves it out.
	Status func() any
}

// registerLedger adds the /ledger routes: records, queries and proofs.
func (s *Server) registerLedger(api router) {
	d := s.opts.Ledger
	if d == nil || d.Ledger == nil {
		api.unavailable("/ledger", "the ledger")
		return
	}
	l := d.Ledger
	g := api.group("/ledger", s.ledgerCaller)
	g.get("/status", func(c *fiber.Ctx) error {
		if d.Status == nil {
			return c.JSON(fiber.Map{})
		}
		return c.JSON(d.Status())
	})
	g.post("/assets", post(l.RegisterAsset))
	g.get("/assets/:id", byID(l.GetAsset))
	g.post("/assets/:id/status", postFor(l.SetAssetStatus, func(in *core.StatusChange, id string) { in.Asset = id }))
	g.get("/assets/:id/history", byID(l.AssetHistory))
	g.get("/assets/:id/evidence", byID(l.ListEvidence))
	g.get("/assets/:id/deployments", byID(l.DeploymentsOn))
	// ?exposed=xid,ecc_dbe lists the models that used the asset while it had
	// that evidence; without it, the models trained on it.
	g.get("/assets/:id/models", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		if ex := c.Query("exposed"); ex != "" {
			var kinds []core.EvidenceKind
			for _, k := range strings.Split(ex, ",") {
				kinds = append(kinds, core.EvidenceKind(k))
			}
			return l.ModelsExposedTo(ctx, param(c, "id"), kinds)
		}
		return l.ModelsTrainedOn(ctx, param(c, "id"))
	}))
	g.get("/anchors/head", get(func(ctx context.Context, c *fiber.Ctx) (any, error) { return l.AnchorHead(ctx) }))
	g.get("/anchors/:seq", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		seq, err := uintParam(c, "seq")
		if err != nil {
			return nil, err
		}
		return l.GetAnchor(ctx, seq)
	}))
	g.get("/events/:id/anchor", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		id, err := uintParam(c, "id")
		if err != nil {
			return nil, err
		}
		return l.AnchorForEvent(ctx, id)
	}))
	g.get("/events/:id/proof", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		if d.Proofs == nil {
			return nil, fmt.Errorf("proof export is not configured: %w", ledger.ErrUnavailable)
		}
		id, err := uintParam(c, "id")
		if err != nil {
			return nil, err
		}
		b, err := d.Proofs.Event(ctx, id)
		if errors.Is(err, proofbundle.ErrPending) {
			return nil, fmt.Errorf("%v: %w", err, errPending)
		}
		return b, err
	}))
	// An alert's proof: the anchored twin events behind it (alerts.go's store).
	g.get("/alerts/:id/proof", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		if d.Proofs == nil || s.opts.Alerts == nil {
			return nil, fmt.Errorf("alert proofs need the proof export and alerting: %w", ledger.ErrUnavailable)
		}
		a, err := s.opts.Alerts.Get(param(c, "id"))
		if errors.Is(err, alert.ErrNotFound) {
			return nil, fmt.Errorf("%v: %w", err, ledger.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		b, err := d.Proofs.Alert(ctx, raw)
		if errors.Is(err, proofbundle.ErrPending) {
			return nil, fmt.Errorf("%v: %w", err, errPending)
		}
		return b, err
	}))
	g.get("/proofs/:type/:id", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		if d.Proofs == nil {
			return nil, fmt.Errorf("proof export is not configured: %w", ledger.ErrUnavailable)
		}
		return d.Proofs.Record(ctx, param(c, "type"), param(c, "id"))
	}))
	// The latest signed checkpoint, and a proof that an earlier tree size is
	// a prefix of a later one: how an auditor checks the log only grew.
	g.get("/checkpoint", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		if d.Tree == nil {
			return nil, fmt.Errorf("the event tree is not configured: %w", ledger.ErrUnavailable)
		}
		cp, ok, err := d.Tree.LatestCheckpoint()
		if err == nil && !ok {
			err = fmt.Errorf("no checkpoint yet: %w", ledger.ErrNotFound)
		}
		return cp, err
	}))
	g.get("/consistency", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		if d.Tree == nil {
			return nil, fmt.Errorf("the event tree is not configured: %w", ledger.ErrUnavailable)
		}
		from, err := strconv.ParseUint(c.Query("from"), 10, 64)
		to, err2 := strconv.ParseUint(c.Query("to"), 10, 64)
		if err != nil || err2 != nil || from > to {
			return nil, fmt.Errorf("want ?from=SIZE&to=SIZE with from <= to: %w", errBadInput)
		}
		p, err := d.Tree.ConsistencyProof(from, to)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, ledger.ErrNotFound)
		}
		hs := make([]eventtree.Hash, len(p))
		for i, h := range p {
			hs[i] = h
		}
		return fiber.Map{"from": from, "to": to, "proof": hs}, nil
	}))
	// The dataset and model lists: ?limit=N (1..500, default 50) and
	// ?after=ID (the previous page's "next"), in id order.
	g.get("/datasets", pageOf(l.ListDatasets))
	g.get("/models", pageOf(l.ListModels))
	g.post("/datasets", post(l.RegisterDataset))
	g.get("/datasets/:id", byID(l.GetDataset))
	g.post("/datasets/:id/checks", postFor(l.AddQualityChecks, func(in *core.QualityChecksInput, id string) { in.Dataset = id }))
	// Private metadata: kept in the owning organisation's collection (PUT,
	// read back by that organisation only); any organisation checks a
	// disclosed copy against the ledger's hash (verify).
	g.put("/datasets/:id/private", func(c *fiber.Ctx) error {
		var in core.DatasetMeta
		if err := decode(c, &in); err != nil {
			return ledgerError(c, err)
		}
		out, err := l.PutDatasetPrivate(ledgerCtx(c), param(c, "id"), in)
		if err != nil {
			return ledgerError(c, err)
		}
		return c.JSON(out)
	})
	g.get("/datasets/:id/private", byID(l.GetDatasetPrivate))
	g.post("/datasets/:id/private/verify", func(c *fiber.Ctx) error {
		var in core.Disclosure
		if err := decode(c, &in); err != nil {
			return ledgerError(c, err)
		}
		in.Dataset = param(c, "id")
		out, err := l.VerifyDatasetPrivate(ledgerCtx(c), in)
		if err != nil {
			return ledgerError(c, err)
		}
		return c.JSON(out)
	})
	g.post("/models", post(l.RegisterModel))
	g.get("/models/:id", byID(l.GetModel))
	g.get("/models/:id/lineage", byID(l.ModelLineage))
	g.get("/models/:id/deployments", byID(l.DeploymentsOf))
	g.get("/models/:id/runs", get(s.modelRuns)) // runtime.go
	g.post("/models/:id/evaluations", postFor(l.AddEvaluation, func(in *core.EvaluationInput, id string) { in.Model = id }))
	g.post("/attestations", post(l.Attest))
	g.get("/attestations", get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		return l.ListAttestations(ctx, core.SubjectKind(c.Query("subject_kind")), c.Query("subject"))
	}))
	g.post("/policies", post(l.SetPolicy))
	g.get("/policies/:id", byID(l.GetPolicy))
	g.post("/deployments", post(func(ctx context.Context, in core.DeploymentInput) (core.Deployment, error) {
		in.Environment.Assets = s.targetEnvironment(in.Targets, in.Environment.Assets)
		d, err := l.RequestDeployment(ctx, in)
		if err == nil && d.Allowed && s.opts.Approvals != nil {
			s.opts.Approvals.Kick() // the run-time checks see it soon, not at the next periodic read
		}
		return d, err
	}))
	g.get("/deployments/:id", byID(l.GetDeployment))
	// Remediation of a tainted model (docs/runtime.md): proposed, decided by
	// the sign-off roles, executed once every one approved (409 before).
	g.get("/remediations", pageOf(l.ListRemediations))
	g.post("/remediations", post(l.ProposeRemediation))
	g.get("/remediations/:id", byID(l.GetRemediation))
	g.post("/remediations/:id/decisions", postFor(l.DecideRemediation, func(in *core.RemediationApproval, id string) { in.ID = id }))
	g.post("/remediations/:id/execute", postFor(func(ctx context.Context, in core.IDQuery) (core.Remediation, error) {
		r, err := l.ExecuteRemediation(ctx, in.ID)
		if err == nil && s.opts.Approvals != nil {
			s.opts.Approvals.Kick() // paused deployments leave force soon
		}
		return r, err
	}, func(in *core.IDQuery, id string) { in.ID = id }))
}

// targetEnvironment is the environment of a deployment's targets as the
// twins show them now: GPU model, UUID, serial, VBIOS and driver. The twin
// is the source of truth; what the request said is kept only for a target
// that has no twin (or when the service keeps no twins).
func (s *Server) targetEnvironment(targets []string, given []core.AssetEnvironment) []core.AssetEnvironment {
	if s.opts.Assets == nil {
		return given
	}
	var out []core.AssetEnvironment
	for _, id := range targets {
		a, err := s.opts.Assets.Asset(id)
		if err != nil {
			if i := slices.IndexFunc(given, func(e core.AssetEnvironment) bool { return e.Asset == id }); i >= 0 {
				out = append(out, given[i])
			}
			continue
		}
		out = append(out, core.AssetEnvironment{Asset: id, GPUModel: a.Identity.Name, UUID: a.Identity.UUID,
			Serial: a.Identity.Serial, VBIOS: a.Firmware.VBIOS, Driver: a.Firmware.Driver})
	}
	return out
}

// errPending marks an event proof asked for before its anchor exists.
var errPending = errors.New("pending")

const ctxKeyLedger = "ledger.ctx"

// PrincipalCaller is the ledger caller of a signed-in request: the user or
// token name and its role. The sign-in roles are the core's roles with the
// same names (ml_lead and compliance sign attestations), except viewer,
// which reads as an auditor.
func PrincipalCaller(c *fiber.Ctx) (core.Caller, error) {
	p, ok := Principal(c)
	if !ok {
		return core.Caller{}, errors.New("sign in first")
	}
	role := core.Role(p.Role)
	if p.Role == auth.Viewer {
		role = core.RoleAuditor
	}
	if !role.Valid() {
		return core.Caller{}, fmt.Errorf("role %q has no ledger role", p.Role)
	}
	return core.Caller{ID: p.Name, MSP: "", Role: role}, nil
}

// ledgerCaller resolves the caller once per request.
func (s *Server) ledgerCaller(c *fiber.Ctx) error {
	callerOf := s.opts.Ledger.Caller
	if callerOf == nil {
		callerOf = PrincipalCaller
	}
	caller, err := callerOf(c)
	if err != nil {
		return apiError(c, fiber.StatusUnauthorized, CodeUnauthorized, err.Error())
	}
	c.Locals(ctxKeyLedger, ledger.WithCaller(c.UserContext(), caller))
	return c.Next()
}

func ledgerCtx(c *fiber.Ctx) context.Context {
	if ctx, ok := c.Locals(ctxKeyLedger).(context.Context); ok {
		return ctx
	}
	return c.UserContext()
}

// ledgerError maps the ledger's sentinels onto the API's error shape.
func ledgerError(c *fiber.Ctx, err error) error {
	status, code := fiber.StatusInternalServerError, CodeInternal
	switch {
	case errors.Is(err, errBadInput), errors.Is(err, ledger.ErrInvalid):
		status, code = fiber.StatusBadRequest, CodeBadRequest
	case errors.Is(err, ledger.ErrNotFound):
		status, code = fiber.StatusNotFound, CodeNotFound
	case errors.Is(err, ledger.ErrForbidden):
		status, code = fiber.StatusForbidden, CodeForbidden
	case errors.Is(err, ledger.ErrConflict), errors.Is(err, errPending):
		status, code = fiber.StatusConflict, CodeConflict
	case errors.Is(err, ledger.ErrUnavailable):
		status, code = fiber.StatusServiceUnavailable, CodeUnavailable
	}
	return apiError(c, status, code, err.Error())
}

var errBadInput = errors.New("bad input")

func uintParam(c *fiber.Ctx, name string) (uint64, error) {
	n, err := strconv.ParseUint(param(c, name), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s %q: want a positive number: %w", name, param(c, name), errBadInput)
	}
	return n, nil
}

// decode reads a JSON body strictly: unknown fields are refused.
func decode(c *fiber.Ctx, v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v: %w", err, errBadInput)
	}
	return nil
}

func get(f func(ctx context.Context, c *fiber.Ctx) (any, error)) fiber.Handler {
	return func(c *fiber.Ctx) error {
		out, err := f(ledgerCtx(c), c)
		if err != nil {
			return ledgerError(c, err)
		}
		return c.JSON(out)
	}
}

// ledgerPage is a ledger list page as every list route answers it: items
// and next_cursor (next, the ledger's own name for it, stays).
type ledgerPage[T any] struct {
	core.Page[T]
	NextCursor string `json:"next_cursor,omitempty"`
}

// pageOf serves a list page: ?limit and ?cursor (or ?after, the ledger's
// own name for it) become a core.PageQuery.
func pageOf[T any](f func(ctx context.Context, q core.PageQuery) (core.Page[T], error)) fiber.Handler {
	return get(func(ctx context.Context, c *fiber.Ctx) (any, error) {
		q := core.PageQuery{After: c.Query("cursor", c.Query("after"))}
		if v := c.Query("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("limit %q: want a number: %w", v, errBadInput)
			}
			q.Limit = n
		}
		p, err := f(ctx, q)
		if err != nil {
			return nil, err
		}
		return ledgerPage[T]{Page: p, NextCursor: p.Next}, nil
	})
}

func byID[Out any](f func(ctx context.Context, id string) (Out, error)) fiber.Handler {
	return get(func(ctx context.Context, c *fiber.Ctx) (any, error) { return f(ctx, param(c, "id")) })
}

func post[In, Out any](f func(ctx context.Context, in In) (Out, error)) fiber.Handler {
	return postFor(f, nil)
}

// postFor decodes the body into In, lets set fill fields from the path,
// calls f and answers 201 with its result.
func postFor[In, Out any](f func(ctx context.Context, in In) (Out, error), set func(in *In, id string)) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var in In
		if err := decode(c, &in); err != nil {
			return ledgerError(c, err)
		}
		if set != nil {
			set(&in, param(c, "id"))
		}
		out, err := f(ledgerCtx(c), in)
		if err != nil {
			return ledgerError(c, err)
		}
		return c.Status(fiber.StatusCreated).JSON(out)
	}
}

// Package ledger is the contract twin-service uses to read and write the
// ledger: asset registrations and status, state anchors, hardware evidence,
// datasets, models, attestations, deployment policies and deployments, and
// the lineage queries. The rules live in the chaincode core
// (twinchain/chaincode/core); this package carries calls to a backend that
// runs them: fileledger (embedded, the default) or fabricledger (a
// Hyperledger Fabric network running the chaincode).
//
// Every call acts for a caller taken from the context (WithCaller); the
// core checks the caller's role. Errors wrap the sentinels below; test with
// errors.Is. All methods are safe for concurrent use.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"twinchain/chaincode/core"
)

// Sentinel errors. They are the core's own, so errors.Is holds for an error
// from either a backend or the core.
var (
	ErrNotFound  = core.ErrNotFound  // a referenced record does not exist
	ErrForbidden = core.ErrForbidden // the caller's role may not do this
	ErrConflict  = core.ErrConflict  // the call contradicts what the ledger holds
	ErrInvalid   = core.ErrInvalid   // the input breaks a rule
	// ErrUnavailable: the backend cannot be reached; retrying later may work.
	ErrUnavailable = errors.New("ledger unavailable")
	// ErrTampered: the backend's stored data does not match its hashes or
	// signatures. It takes no more writes until an operator restores it;
	// the error names the place.
	ErrTampered = errors.New("tampered")
)

// Backend runs core functions by name with a JSON argument and returns the
// JSON result (core.Invoke's format). Submit writes through a transaction;
// Evaluate only reads. A backend maps its failures onto the sentinels.
type Backend interface {
	Submit(ctx context.Context, caller core.Caller, fn string, arg []byte) ([]byte, error)
	Evaluate(ctx context.Context, caller core.Caller, fn string, arg []byte) ([]byte, error)
	Close() error
}

// Ledger is what twin-service can do on the ledger.
type Ledger interface {
	RegisterAsset(ctx context.Context, in core.AssetRegistration) (core.Asset, error)
	// RegisterAssets registers up to core.MaxAssetsPerCall assets in one
	// transaction; ids registered before are named, not refused
	// (core.RegisterAssets).
	RegisterAssets(ctx context.Context, in []core.AssetRegistration) (core.RegisteredAssets, error)
	SetAssetStatus(ctx context.Context, in core.StatusChange) (core.Asset, error)
	UpdateFingerprint(ctx context.Context, in core.FingerprintChange) (core.Asset, error)
	SetGatewayKey(ctx context.Context, in core.KeyChange) (core.Asset, error)
	OfferCustody(ctx context.Context, in core.CustodyOffer) (core.Asset, error)
	AcceptCustody(ctx context.Context, in core.CustodyAccept) (core.Asset, error)
	RecordArrival(ctx context.Context, in core.Arrival) (core.Asset, error)
	// PutDatasetPrivate keeps a dataset's sensitive metadata in its
	// organisation's private collection, its hash in the dataset record;
	// the metadata travels as transient data, never in the transaction.
	PutDatasetPrivate(ctx context.Context, dataset string, meta core.DatasetMeta) (core.Dataset, error)
	SubmitAnchor(ctx context.Context, in core.AnchorInput) (core.Anchor, error)
	SubmitAnchors(ctx context.Context, in []core.AnchorInput) ([]core.Anchor, error)
	RecordEvidence(ctx context.Context, in core.EvidenceInput) (core.Evidence, error)
	RegisterDataset(ctx context.Context, in core.DatasetInput) (core.Dataset, error)
	AddQualityChecks(ctx context.Context, in core.QualityChecksInput) (core.Dataset, error)
	RegisterModel(ctx context.Context, in core.ModelInput) (core.Model, error)
	AddEvaluation(ctx context.Context, in core.EvaluationInput) (core.Model, error)
	Attest(ctx context.Context, in core.AttestationInput) (core.Attestation, error)
	SetPolicy(ctx context.Context, in core.PolicyInput) (core.Policy, error)
	RequestDeployment(ctx context.Context, in core.DeploymentInput) (core.Deployment, error)
	// ProposeRemediation, DecideRemediation and ExecuteRemediation: the
	// remediation of a tainted model (core.ProposeRemediation).
	ProposeRemediation(ctx context.Context, in core.RemediationInput) (core.Remediation, error)
	DecideRemediation(ctx context.Context, in core.RemediationApproval) (core.Remediation, error)
	ExecuteRemediation(ctx context.Context, id string) (core.Remediation, error)
	// RecordRemediationStop records the gateway-signed report that a model
	// an executed remediation paused no longer runs on a GPU
	// (core.RecordRemediationStop).
	RecordRemediationStop(ctx context.Context, in core.RemediationStopInput) (core.Remediation, error)

	GetAsset(ctx context.Context, id string) (core.Asset, error)
	AssetHistory(ctx context.Context, id string) (core.AssetHistory, error)
	ListEvidence(ctx context.Context, asset string) ([]core.Evidence, error)
	AnchorHead(ctx context.Context) (core.Anchor, error)
	GetAnchor(ctx context.Context, seq uint64) (core.Anchor, error)
	AnchorForEvent(ctx context.Context, event uint64) (core.Anchor, error)
	GetDataset(ctx context.Context, id string) (core.Dataset, error)
	// GetDatasetPrivate reads the private metadata (its organisation only);
	// VerifyDatasetPrivate checks a disclosed copy against the ledger's hash
	// (any organisation).
	GetDatasetPrivate(ctx context.Context, id string) (core.PrivateRecord, error)
	VerifyDatasetPrivate(ctx context.Context, in core.Disclosure) (core.DisclosureCheck, error)
	GetModel(ctx context.Context, id string) (core.Model, error)
	ListAttestations(ctx context.Context, kind core.SubjectKind, subject string) ([]core.Attestation, error)
	GetPolicy(ctx context.Context, id string) (core.Policy, error)
	GetDeployment(ctx context.Context, id string) (core.Deployment, error)
	DeploymentsOn(ctx context.Context, asset string) ([]core.Deployment, error)
	// DeploymentsOf is every deployment request of a model, allowed or refused.
	DeploymentsOf(ctx context.Context, model string) ([]core.Deployment, error)
	ModelLineage(ctx context.Context, model string) (core.Lineage, error)
	// ListDatasets and ListModels page through the records in id order.
	ListDatasets(ctx context.Context, q core.PageQuery) (core.Page[core.Dataset], error)
	ListModels(ctx context.Context, q core.PageQuery) (core.Page[core.Model], error)
	// ListDeployments pages through every recorded gate decision in id order.
	ListDeployments(ctx context.Context, q core.PageQuery) (core.Page[core.Deployment], error)
	GetRemediation(ctx context.Context, id string) (core.Remediation, error)
	ListRemediations(ctx context.Context, q core.PageQuery) (core.Page[core.Remediation], error)
	ModelsTrainedOn(ctx context.Context, asset string) ([]core.Model, error)
	ModelsExposedTo(ctx context.Context, asset string, kinds []core.EvidenceKind) ([]core.Exposure, error)

	Close() error
}

type callerKey struct{}

type transientKey struct{}

// WithTransient returns a context whose ledger write passes data to the
// core as transient data (core.Tx.Transient), which no backend records:
// on Fabric the proposal's transient map, on the embedded ledger nothing
// in its block.
func WithTransient(ctx context.Context, data map[string][]byte) context.Context {
	return context.WithValue(ctx, transientKey{}, data)
}

// TransientFrom is the data set by WithTransient, or nil.
func TransientFrom(ctx context.Context) map[string][]byte {
	t, _ := ctx.Value(transientKey{}).(map[string][]byte)
	return t
}

type receiptKey struct{}

// Receipt is where a write landed on a backend with transactions of its own
// (Fabric): its transaction id, block number and channel.
type Receipt struct {
	TxID      string `json:"tx_id"`
	Block     uint64 `json:"block"`
	Channel   string `json:"channel,omitempty"`
	Chaincode string `json:"chaincode,omitempty"`
}

// WithReceipt returns a context whose ledger write fills r when the backend
// has one to give (Fabric; the embedded ledger leaves it empty).
func WithReceipt(ctx context.Context, r *Receipt) context.Context {
	return context.WithValue(ctx, receiptKey{}, r)
}

// ReceiptFrom is the receipt set by WithReceipt, or nil.
func ReceiptFrom(ctx context.Context) *Receipt {
	r, _ := ctx.Value(receiptKey{}).(*Receipt)
	return r
}

// WithCaller returns a context whose ledger calls act for c.
func WithCaller(ctx context.Context, c core.Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom is the caller set by WithCaller; ok is false when none is set.
func CallerFrom(ctx context.Context) (c core.Caller, ok bool) {
	c, ok = ctx.Value(callerKey{}).(core.Caller)
	return c, ok
}

// Client implements Ledger over a Backend.
type Client struct {
	b     Backend
	chain string // the anchor chain of the anchor calls; "" the default
}

// New returns a Ledger that calls b.
func New(b Backend) *Client { return &Client{b: b} }

// OnChain returns a client of the same backend whose anchor calls
// (SubmitAnchor(s), AnchorHead, GetAnchor, AnchorForEvent) use the named
// anchor chain (core.AnchorInput.Chain): one per twin-service node that
// anchors its own event tree into a shared ledger. "" is the default
// chain. Closing either client closes the backend.
func (c *Client) OnChain(chain string) *Client { return &Client{b: c.b, chain: chain} }

// Chain is the anchor chain the client's anchor calls use.
func (c *Client) Chain() string { return c.chain }

// Backend is the backend the client calls.
func (c *Client) Backend() Backend { return c.b }

// Close closes the backend.
func (c *Client) Close() error { return c.b.Close() }

func call[Out any](ctx context.Context, c *Client, write bool, fn string, in any) (Out, error) {
	var out Out
	caller, ok := CallerFrom(ctx)
	if !ok {
		return out, fmt.Errorf("%s: no caller in context: %w", fn, ErrForbidden)
	}
	arg, err := json.Marshal(in)
	if err != nil {
		return out, fmt.Errorf("%s: encode argument: %w", fn, err)
	}
	var res []byte
	if write {
		res, err = c.b.Submit(ctx, caller, fn, arg)
	} else {
		res, err = c.b.Evaluate(ctx, caller, fn, arg)
	}
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(res, &out); err != nil {
		return out, fmt.Errorf("%s: decode result: %w", fn, err)
	}
	return out, nil
}

func (c *Client) RegisterAsset(ctx context.Context, in core.AssetRegistration) (core.Asset, error) {
	return call[core.Asset](ctx, c, true, "RegisterAsset", in)
}

func (c *Client) RegisterAssets(ctx context.Context, in []core.AssetRegistration) (core.RegisteredAssets, error) {
	return call[core.RegisteredAssets](ctx, c, true, "RegisterAssets", core.AssetBatch{Assets: in})
}

func (c *Client) SetAssetStatus(ctx context.Context, in core.StatusChange) (core.Asset, error) {
	return call[core.Asset](ctx, c, true, "SetAssetStatus", in)
}

func (c *Client) UpdateFingerprint(ctx context.Context, in core.FingerprintChange) (core.Asset, error) {
	return call[core.Asset](ctx, c, true, "UpdateFingerprint", in)
}

func (c *Client) SetGatewayKey(ctx context.Context, in core.KeyChange) (core.Asset, error) {
	return call[core.Asset](ctx, c, true, "SetGatewayKey", in)
}

// OfferCustody offers an asset's custody to another organisation (core.OfferCustody).
func (c *Client) OfferCustody(ctx context.Context, in core.CustodyOffer) (core.Asset, error) {
	return call[core.Asset](ctx, c, true, "OfferCustody", in)
}

// AcceptCustody takes an offered asset's custody (core.AcceptCustody).
func (c *Client) AcceptCustody(ctx context.Context, in core.CustodyAccept) (core.Asset, error) {
	return call[core.Asset](ctx, c, true, "AcceptCustody", in)
}

// RecordArrival records the fingerprint a receiving site observed (core.RecordArrival).
func (c *Client) RecordArrival(ctx context.Context, in core.Arrival) (core.Asset, error) {
	return call[core.Asset](ctx, c, true, "RecordArrival", in)
}

// PutDatasetPrivate keeps a dataset's sensitive metadata private (core.PutDatasetPrivate).
func (c *Client) PutDatasetPrivate(ctx context.Context, dataset string, meta core.DatasetMeta) (core.Dataset, error) {
	raw, err := json.Marshal(meta)
	if err != nil {
		return core.Dataset{}, fmt.Errorf("PutDatasetPrivate: encode metadata: %w", err)
	}
	ctx = WithTransient(ctx, map[string][]byte{core.TransientPrivate: raw})
	return call[core.Dataset](ctx, c, true, "PutDatasetPrivate", core.DatasetPrivateInput{Dataset: dataset})
}

// GetDatasetPrivate reads a dataset's private metadata (core.GetDatasetPrivate).
func (c *Client) GetDatasetPrivate(ctx context.Context, id string) (core.PrivateRecord, error) {
	return call[core.PrivateRecord](ctx, c, false, "GetDatasetPrivate", core.IDQuery{ID: id})
}

// VerifyDatasetPrivate checks a disclosed copy of private metadata (core.VerifyDatasetPrivate).
func (c *Client) VerifyDatasetPrivate(ctx context.Context, in core.Disclosure) (core.DisclosureCheck, error) {
	return call[core.DisclosureCheck](ctx, c, false, "VerifyDatasetPrivate", in)
}

// SubmitAnchor writes in on the client's chain unless in names one.
func (c *Client) SubmitAnchor(ctx context.Context, in core.AnchorInput) (core.Anchor, error) {
	if in.Chain == "" {
		in.Chain = c.chain
	}
	return call[core.Anchor](ctx, c, true, "SubmitAnchor", in)
}

// SubmitAnchors writes in on the client's chain, as SubmitAnchor does.
func (c *Client) SubmitAnchors(ctx context.Context, in []core.AnchorInput) ([]core.Anchor, error) {
	if c.chain != "" {
		in = slices.Clone(in)
		for i := range in {
			if in[i].Chain == "" {
				in[i].Chain = c.chain
			}
		}
	}
	return call[[]core.Anchor](ctx, c, true, "SubmitAnchors", core.AnchorBatch{Anchors: in})
}

func (c *Client) RecordEvidence(ctx context.Context, in core.EvidenceInput) (core.Evidence, error) {
	return call[core.Evidence](ctx, c, true, "RecordEvidence", in)
}

func (c *Client) RegisterDataset(ctx context.Context, in core.DatasetInput) (core.Dataset, error) {
	return call[core.Dataset](ctx, c, true, "RegisterDataset", in)
}

func (c *Client) AddQualityChecks(ctx context.Context, in core.QualityChecksInput) (core.Dataset, error) {
	return call[core.Dataset](ctx, c, true, "AddQualityChecks", in)
}

func (c *Client) RegisterModel(ctx context.Context, in core.ModelInput) (core.Model, error) {
	return call[core.Model](ctx, c, true, "RegisterModel", in)
}

func (c *Client) AddEvaluation(ctx context.Context, in core.EvaluationInput) (core.Model, error) {
	return call[core.Model](ctx, c, true, "AddEvaluation", in)
}

func (c *Client) Attest(ctx context.Context, in core.AttestationInput) (core.Attestation, error) {
	return call[core.Attestation](ctx, c, true, "Attest", in)
}

func (c *Client) SetPolicy(ctx context.Context, in core.PolicyInput) (core.Policy, error) {
	return call[core.Policy](ctx, c, true, "SetPolicy", in)
}

func (c *Client) RequestDeployment(ctx context.Context, in core.DeploymentInput) (core.Deployment, error) {
	return call[core.Deployment](ctx, c, true, "RequestDeployment", in)
}

func (c *Client) GetAsset(ctx context.Context, id string) (core.Asset, error) {
	return call[core.Asset](ctx, c, false, "GetAsset", core.IDQuery{ID: id})
}

func (c *Client) AssetHistory(ctx context.Context, id string) (core.AssetHistory, error) {
	return call[core.AssetHistory](ctx, c, false, "GetAssetHistory", core.IDQuery{ID: id})
}

func (c *Client) ListEvidence(ctx context.Context, asset string) ([]core.Evidence, error) {
	return call[[]core.Evidence](ctx, c, false, "ListEvidence", core.IDQuery{ID: asset})
}

func (c *Client) AnchorHead(ctx context.Context) (core.Anchor, error) {
	return call[core.Anchor](ctx, c, false, "AnchorHead", core.ChainQuery{Chain: c.chain})
}

func (c *Client) GetAnchor(ctx context.Context, seq uint64) (core.Anchor, error) {
	return call[core.Anchor](ctx, c, false, "GetAnchor", core.SeqQuery{Seq: seq, Chain: c.chain})
}

func (c *Client) AnchorForEvent(ctx context.Context, event uint64) (core.Anchor, error) {
	return call[core.Anchor](ctx, c, false, "AnchorForEvent", core.EventQuery{Event: event, Chain: c.chain})
}

func (c *Client) GetDataset(ctx context.Context, id string) (core.Dataset, error) {
	return call[core.Dataset](ctx, c, false, "GetDataset", core.IDQuery{ID: id})
}

func (c *Client) GetModel(ctx context.Context, id string) (core.Model, error) {
	return call[core.Model](ctx, c, false, "GetModel", core.IDQuery{ID: id})
}

func (c *Client) ListAttestations(ctx context.Context, kind core.SubjectKind, subject string) ([]core.Attestation, error) {
	return call[[]core.Attestation](ctx, c, false, "ListAttestations", core.SubjectQuery{SubjectKind: kind, Subject: subject})
}

func (c *Client) GetPolicy(ctx context.Context, id string) (core.Policy, error) {
	return call[core.Policy](ctx, c, false, "GetPolicy", core.IDQuery{ID: id})
}

func (c *Client) GetDeployment(ctx context.Context, id string) (core.Deployment, error) {
	return call[core.Deployment](ctx, c, false, "GetDeployment", core.IDQuery{ID: id})
}

func (c *Client) DeploymentsOf(ctx context.Context, model string) ([]core.Deployment, error) {
	return call[[]core.Deployment](ctx, c, false, "DeploymentsOf", core.IDQuery{ID: model})
}

func (c *Client) DeploymentsOn(ctx context.Context, asset string) ([]core.Deployment, error) {
	return call[[]core.Deployment](ctx, c, false, "DeploymentsOn", core.IDQuery{ID: asset})
}

func (c *Client) ModelLineage(ctx context.Context, model string) (core.Lineage, error) {
	return call[core.Lineage](ctx, c, false, "ModelLineage", core.IDQuery{ID: model})
}

func (c *Client) ListDatasets(ctx context.Context, q core.PageQuery) (core.Page[core.Dataset], error) {
	return call[core.Page[core.Dataset]](ctx, c, false, "ListDatasets", q)
}

func (c *Client) ListModels(ctx context.Context, q core.PageQuery) (core.Page[core.Model], error) {
	return call[core.Page[core.Model]](ctx, c, false, "ListModels", q)
}

func (c *Client) ListDeployments(ctx context.Context, q core.PageQuery) (core.Page[core.Deployment], error) {
	return call[core.Page[core.Deployment]](ctx, c, false, "ListDeployments", q)
}

func (c *Client) ProposeRemediation(ctx context.Context, in core.RemediationInput) (core.Remediation, error) {
	return call[core.Remediation](ctx, c, true, "ProposeRemediation", in)
}

func (c *Client) DecideRemediation(ctx context.Context, in core.RemediationApproval) (core.Remediation, error) {
	return call[core.Remediation](ctx, c, true, "DecideRemediation", in)
}

func (c *Client) ExecuteRemediation(ctx context.Context, id string) (core.Remediation, error) {
	return call[core.Remediation](ctx, c, true, "ExecuteRemediation", core.IDQuery{ID: id})
}

func (c *Client) RecordRemediationStop(ctx context.Context, in core.RemediationStopInput) (core.Remediation, error) {
	return call[core.Remediation](ctx, c, true, "RecordRemediationStop", in)
}

func (c *Client) GetRemediation(ctx context.Context, id string) (core.Remediation, error) {
	return call[core.Remediation](ctx, c, false, "GetRemediation", core.IDQuery{ID: id})
}

func (c *Client) ListRemediations(ctx context.Context, q core.PageQuery) (core.Page[core.Remediation], error) {
	return call[core.Page[core.Remediation]](ctx, c, false, "ListRemediations", q)
}

func (c *Client) ModelsTrainedOn(ctx context.Context, asset string) ([]core.Model, error) {
	return call[[]core.Model](ctx, c, false, "ModelsTrainedOn", core.IDQuery{ID: asset})
}

func (c *Client) ModelsExposedTo(ctx context.Context, asset string, kinds []core.EvidenceKind) ([]core.Exposure, error) {
	return call[[]core.Exposure](ctx, c, false, "ModelsExposedTo", core.ExposureQuery{Asset: asset, Kinds: kinds})
}

var _ Ledger = (*Client)(nil)

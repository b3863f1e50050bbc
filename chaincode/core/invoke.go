package core

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Every core function can also be called by name with one JSON argument and
// a JSON result: the Fabric contract calls Invoke, and the embedded ledger
// can record (name, argument) in its blocks and replay them. The names and
// argument shapes are therefore the ledger's transaction format.

// IDQuery is the argument of the functions that read one record by id.
type IDQuery struct {
	ID string `json:"id"`
}

// SeqQuery is GetAnchor's argument.
type SeqQuery struct {
	Seq   uint64 `json:"seq"`
	Chain string `json:"chain,omitempty"` // the anchor chain; "" the default
}

// EventQuery is AnchorForEvent's argument.
type EventQuery struct {
	Event uint64 `json:"event"`
	Chain string `json:"chain,omitempty"` // the anchor chain; "" the default
}

// ChainQuery is AnchorHead's argument; {} (or none) is the default chain.
type ChainQuery struct {
	Chain string `json:"chain,omitempty"`
}

// SubjectQuery is ListAttestations's argument.
type SubjectQuery struct {
	SubjectKind SubjectKind `json:"subject_kind"`
	Subject     string      `json:"subject"`
}

// ExposureQuery is ModelsExposedTo's argument.
type ExposureQuery struct {
	Asset string         `json:"asset"`
	Kinds []EvidenceKind `json:"kinds,omitempty"`
}

// NoArgs is the argument of GetGatewayKeyPolicy.
type NoArgs struct{}

// Function is one ledger function callable by name. Write says whether it
// changes state (submit on Fabric, recorded in a block) or only reads
// (evaluate).
type Function struct {
	Name  string
	Write bool
	call  func(tx *Tx, arg []byte) (any, error)
}

func fn[In, Out any](name string, write bool, f func(*Tx, In) (Out, error)) Function {
	return Function{Name: name, Write: write, call: func(tx *Tx, arg []byte) (any, error) {
		var in In
		if len(bytes.TrimSpace(arg)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(arg))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				return nil, fmt.Errorf("%s argument: %v: %w", name, err, ErrInvalid)
			}
			if dec.More() {
				return nil, fmt.Errorf("%s argument: trailing data: %w", name, ErrInvalid)
			}
		}
		return f(tx, in)
	}}
}

func byID[Out any](f func(*Tx, string) (Out, error)) func(*Tx, IDQuery) (Out, error) {
	return func(tx *Tx, q IDQuery) (Out, error) { return f(tx, q.ID) }
}

// Functions lists every ledger function in a fixed order.
func Functions() []Function {
	return []Function{
		fn("RegisterAsset", true, RegisterAsset),
		fn("RegisterAssets", true, RegisterAssets),
		fn("SetAssetStatus", true, SetAssetStatus),
		fn("UpdateFingerprint", true, UpdateFingerprint),
		fn("SetGatewayKey", true, SetGatewayKey),
		fn("SubmitAnchor", true, SubmitAnchor),
		fn("SubmitAnchors", true, SubmitAnchors),
		fn("RecordEvidence", true, RecordEvidence),
		fn("RegisterDataset", true, RegisterDataset),
		fn("AddQualityChecks", true, AddQualityChecks),
		fn("RegisterModel", true, RegisterModel),
		fn("AddEvaluation", true, AddEvaluation),
		fn("Attest", true, Attest),
		fn("SetPolicy", true, SetPolicy),
		fn("RequestDeployment", true, RequestDeployment),
		fn("SetGatewayKeyPolicy", true, SetGatewayKeyPolicy),
		fn("OfferCustody", true, OfferCustody),
		fn("AcceptCustody", true, AcceptCustody),
		fn("RecordArrival", true, RecordArrival),
		fn("PutDatasetPrivate", true, PutDatasetPrivate),
		fn("ProposeRemediation", true, ProposeRemediation),
		fn("DecideRemediation", true, DecideRemediation),
		fn("ExecuteRemediation", true, byID(ExecuteRemediation)),
		fn("RecordRemediationStop", true, RecordRemediationStop),

		fn("GetGatewayKeyPolicy", false, GetGatewayKeyPolicy),
		fn("GetAsset", false, byID(GetAsset)),
		fn("GetAssetHistory", false, byID(GetAssetHistory)),
		fn("ListEvidence", false, byID(ListEvidence)),
		fn("AnchorHead", false, func(tx *Tx, q ChainQuery) (Anchor, error) { return AnchorHead(tx, q.Chain) }),
		fn("GetAnchor", false, func(tx *Tx, q SeqQuery) (Anchor, error) { return GetAnchor(tx, q.Chain, q.Seq) }),
		fn("AnchorForEvent", false, func(tx *Tx, q EventQuery) (Anchor, error) { return AnchorForEvent(tx, q.Chain, q.Event) }),
		fn("GetDataset", false, byID(GetDataset)),
		fn("GetDatasetPrivate", false, byID(GetDatasetPrivate)),
		fn("VerifyDatasetPrivate", false, VerifyDatasetPrivate),
		fn("GetModel", false, byID(GetModel)),
		fn("ListAttestations", false, func(tx *Tx, q SubjectQuery) ([]Attestation, error) {
			return ListAttestations(tx, q.SubjectKind, q.Subject)
		}),
		fn("GetPolicy", false, byID(GetPolicy)),
		fn("GetDeployment", false, byID(GetDeployment)),
		fn("DeploymentsOn", false, byID(DeploymentsOn)),
		fn("DeploymentsOf", false, byID(DeploymentsOf)),
		fn("ModelLineage", false, byID(ModelLineage)),
		fn("ModelsTrainedOn", false, byID(ModelsTrainedOn)),
		fn("ListDatasets", false, ListDatasets),
		fn("ListModels", false, ListModels),
		fn("ListDeployments", false, ListDeployments),
		fn("GetRemediation", false, byID(GetRemediation)),
		fn("ListRemediations", false, ListRemediations),
		fn("ModelsExposedTo", false, func(tx *Tx, q ExposureQuery) ([]Exposure, error) {
			return ModelsExposedTo(tx, q.Asset, q.Kinds)
		}),
	}
}

// Lookup returns the function called name.
func Lookup(name string) (Function, bool) {
	for _, f := range Functions() {
		if f.Name == name {
			return f, true
		}
	}
	return Function{}, false
}

// Invoke calls the function name with a JSON argument and returns its result
// as JSON. Unknown argument fields are refused (ErrInvalid), so a typo cannot
// silently drop a field.
func Invoke(tx *Tx, name string, arg []byte) ([]byte, error) {
	f, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("function %q: %w", name, ErrNotFound)
	}
	return f.Invoke(tx, arg)
}

// Invoke calls f with a JSON argument and returns its result as JSON.
func (f Function) Invoke(tx *Tx, arg []byte) ([]byte, error) {
	out, err := f.call(tx, arg)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("%s result: %w", f.Name, err)
	}
	return b, nil
}

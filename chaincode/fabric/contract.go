// Package fabric is the Hyperledger Fabric chaincode: a
// fabric-contract-api-go contract whose every transaction function takes one
// JSON argument, runs the same-named function of package core and returns its
// JSON result. State goes through the stub, time is the transaction's
// timestamp, and the caller is the submitting identity: its id and MSP, and
// its role from the certificate attribute "twin.role" (a Fabric CA ECert
// attribute).
package fabric

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/statebased"
	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"

	"twinchain/chaincode/core"
)

// RoleAttribute is the certificate attribute that carries a caller's role.
const RoleAttribute = "twin.role"

// ContractName is the contract's name in the chaincode; it is also the
// default contract, so clients may call functions without the prefix.
const ContractName = "twinchain"

// Contract is the twinchain contract. Write functions are submitted,
// read functions evaluated; core.Functions says which is which.
type Contract struct {
	contractapi.Contract
}

// NewChaincode builds the chaincode around the contract.
func NewChaincode() (*contractapi.ContractChaincode, error) {
	c := &Contract{}
	c.Name = ContractName
	c.Info.Title = "twinchain ledger"
	c.Info.Version = "1.0.0"
	cc, err := contractapi.NewChaincode(c)
	if err != nil {
		return nil, fmt.Errorf("build chaincode: %w", err)
	}
	cc.DefaultContract = ContractName
	return cc, nil
}

// newTx builds the core's transaction context from Fabric's.
func newTx(ctx contractapi.TransactionContextInterface) (*core.Tx, error) {
	stub := ctx.GetStub()
	ts, err := stub.GetTxTimestamp()
	if err != nil {
		return nil, fmt.Errorf("transaction timestamp: %w", err)
	}
	tx := &core.Tx{ID: stub.GetTxID(), Time: ts.AsTime().UTC(), State: stubState{stub}}
	if tx.Transient, err = stub.GetTransient(); err != nil {
		return nil, fmt.Errorf("transient data: %w", err)
	}
	ci := ctx.GetClientIdentity()
	if ci == nil {
		return nil, fmt.Errorf("no client identity: %w", core.ErrForbidden)
	}
	if tx.Caller.ID, err = ci.GetID(); err != nil {
		return nil, fmt.Errorf("client id: %v: %w", err, core.ErrForbidden)
	}
	// cid's id is base64 of "x509::<subject DN>::<issuer DN>"; records keep
	// the readable form.
	if b, err := base64.StdEncoding.DecodeString(tx.Caller.ID); err == nil {
		tx.Caller.ID = string(b)
	}
	if tx.Caller.MSP, err = ci.GetMSPID(); err != nil {
		return nil, fmt.Errorf("client msp: %v: %w", err, core.ErrForbidden)
	}
	role, found, err := ci.GetAttributeValue(RoleAttribute)
	if err != nil || !found {
		return nil, fmt.Errorf("client %s of %s has no %s attribute: %w", tx.Caller.ID, tx.Caller.MSP, RoleAttribute, core.ErrForbidden)
	}
	tx.Caller.Role = core.Role(role)
	return tx, nil
}

// call runs the core function name with arg in the transaction. Errors carry
// their code (core.CodedMessage) so a client can recover the sentinel with
// core.ParseCodedMessage.
func call(ctx contractapi.TransactionContextInterface, name, arg string) (string, error) {
	tx, err := newTx(ctx)
	if err == nil {
		var out []byte
		if out, err = core.Invoke(tx, name, []byte(arg)); err == nil {
			return string(out), nil
		}
	}
	return "", errors.New(core.CodedMessage(err))
}

// stubState is the core's State over the chaincode stub.
type stubState struct{ stub shim.ChaincodeStubInterface }

func (s stubState) Get(key string) ([]byte, error)     { return s.stub.GetState(key) }
func (s stubState) Put(key string, value []byte) error { return s.stub.PutState(key, value) }
func (s stubState) Delete(key string) error            { return s.stub.DelState(key) }

// GetPrivate reads key in a private data collection (only a member
// organisation's peer holds the value).
func (s stubState) GetPrivate(collection, key string) ([]byte, error) {
	return s.stub.GetPrivateData(collection, key)
}

// PutPrivate writes key in a private data collection; the channel keeps
// only its hash.
func (s stubState) PutPrivate(collection, key string, value []byte) error {
	return s.stub.PutPrivateData(collection, key, value)
}

// PrivateHash is the channel's SHA-256 of a private value, which every
// peer keeps, member of the collection or not.
func (s stubState) PrivateHash(collection, key string) ([]byte, error) {
	return s.stub.GetPrivateDataHash(collection, key)
}

// SetKeyOwner requires a peer of org to endorse every later write of key
// (a key-level, state-based endorsement policy).
func (s stubState) SetKeyOwner(key, org string) error {
	ep, err := statebased.NewStateEP(nil)
	if err != nil {
		return err
	}
	if err := ep.AddOrgs(statebased.RoleTypePeer, org); err != nil {
		return err
	}
	pol, err := ep.Policy()
	if err != nil {
		return err
	}
	return s.stub.SetStateValidationParameter(key, pol)
}

func (s stubState) Range(start, end string, fn func(key string, value []byte) bool) error {
	it, err := s.stub.GetStateByRange(start, end)
	if err != nil {
		return err
	}
	defer func() { _ = it.Close() }() // read only: nothing to undo
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return err
		}
		if !fn(kv.Key, kv.Value) {
			break
		}
	}
	return nil
}

// The transaction functions, one per core function with the same name and
// argument (see package core for each one's rules and roles).

// RegisterAsset calls core.RegisterAsset.
func (c *Contract) RegisterAsset(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "RegisterAsset", arg)
}

// RegisterAssets calls core.RegisterAssets.
func (c *Contract) RegisterAssets(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "RegisterAssets", arg)
}

// SetAssetStatus calls core.SetAssetStatus.
func (c *Contract) SetAssetStatus(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "SetAssetStatus", arg)
}

// UpdateFingerprint calls core.UpdateFingerprint.
func (c *Contract) UpdateFingerprint(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "UpdateFingerprint", arg)
}

// SetGatewayKey calls core.SetGatewayKey.
func (c *Contract) SetGatewayKey(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "SetGatewayKey", arg)
}

// SubmitAnchor calls core.SubmitAnchor.
func (c *Contract) SubmitAnchor(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "SubmitAnchor", arg)
}

// RecordEvidence calls core.RecordEvidence.
func (c *Contract) RecordEvidence(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "RecordEvidence", arg)
}

// RegisterDataset calls core.RegisterDataset.
func (c *Contract) RegisterDataset(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "RegisterDataset", arg)
}

// AddQualityChecks calls core.AddQualityChecks.
func (c *Contract) AddQualityChecks(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "AddQualityChecks", arg)
}

// RegisterModel calls core.RegisterModel.
func (c *Contract) RegisterModel(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "RegisterModel", arg)
}

// AddEvaluation calls core.AddEvaluation.
func (c *Contract) AddEvaluation(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "AddEvaluation", arg)
}

// Attest calls core.Attest.
func (c *Contract) Attest(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "Attest", arg)
}

// SetPolicy calls core.SetPolicy.
func (c *Contract) SetPolicy(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "SetPolicy", arg)
}

// RequestDeployment calls core.RequestDeployment.
func (c *Contract) RequestDeployment(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "RequestDeployment", arg)
}

// GetAsset calls core.GetAsset.
func (c *Contract) GetAsset(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetAsset", arg)
}

// GetAssetHistory calls core.GetAssetHistory.
func (c *Contract) GetAssetHistory(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetAssetHistory", arg)
}

// ListEvidence calls core.ListEvidence.
func (c *Contract) ListEvidence(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ListEvidence", arg)
}

// SubmitAnchors calls core.SubmitAnchors.
func (c *Contract) SubmitAnchors(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "SubmitAnchors", arg)
}

// AnchorHead calls core.AnchorHead.
func (c *Contract) AnchorHead(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "AnchorHead", arg)
}

// GetAnchor calls core.GetAnchor.
func (c *Contract) GetAnchor(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetAnchor", arg)
}

// AnchorForEvent calls core.AnchorForEvent.
func (c *Contract) AnchorForEvent(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "AnchorForEvent", arg)
}

// GetDataset calls core.GetDataset.
func (c *Contract) GetDataset(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetDataset", arg)
}

// ListDatasets calls core.ListDatasets.
func (c *Contract) ListDatasets(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ListDatasets", arg)
}

// ListModels calls core.ListModels.
func (c *Contract) ListModels(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ListModels", arg)
}

// ListDeployments calls core.ListDeployments.
func (c *Contract) ListDeployments(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ListDeployments", arg)
}

// ProposeRemediation calls core.ProposeRemediation.
func (c *Contract) ProposeRemediation(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ProposeRemediation", arg)
}

// DecideRemediation calls core.DecideRemediation.
func (c *Contract) DecideRemediation(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "DecideRemediation", arg)
}

// ExecuteRemediation calls core.ExecuteRemediation.
func (c *Contract) ExecuteRemediation(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ExecuteRemediation", arg)
}

// RecordRemediationStop calls core.RecordRemediationStop.
func (c *Contract) RecordRemediationStop(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "RecordRemediationStop", arg)
}

// GetRemediation calls core.GetRemediation.
func (c *Contract) GetRemediation(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetRemediation", arg)
}

// ListRemediations calls core.ListRemediations.
func (c *Contract) ListRemediations(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ListRemediations", arg)
}

// GetModel calls core.GetModel.
func (c *Contract) GetModel(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetModel", arg)
}

// ListAttestations calls core.ListAttestations.
func (c *Contract) ListAttestations(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ListAttestations", arg)
}

// GetPolicy calls core.GetPolicy.
func (c *Contract) GetPolicy(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetPolicy", arg)
}

// GetDeployment calls core.GetDeployment.
func (c *Contract) GetDeployment(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetDeployment", arg)
}

// DeploymentsOf calls core.DeploymentsOf.
func (c *Contract) DeploymentsOf(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "DeploymentsOf", arg)
}

// DeploymentsOn calls core.DeploymentsOn.
func (c *Contract) DeploymentsOn(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "DeploymentsOn", arg)
}

// ModelLineage calls core.ModelLineage.
func (c *Contract) ModelLineage(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ModelLineage", arg)
}

// ModelsTrainedOn calls core.ModelsTrainedOn.
func (c *Contract) ModelsTrainedOn(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ModelsTrainedOn", arg)
}

// ModelsExposedTo calls core.ModelsExposedTo.
func (c *Contract) ModelsExposedTo(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "ModelsExposedTo", arg)
}

// SetGatewayKeyPolicy calls core.SetGatewayKeyPolicy.
func (c *Contract) SetGatewayKeyPolicy(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "SetGatewayKeyPolicy", arg)
}

// GetGatewayKeyPolicy calls core.GetGatewayKeyPolicy.
func (c *Contract) GetGatewayKeyPolicy(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetGatewayKeyPolicy", arg)
}

// OfferCustody calls core.OfferCustody.
func (c *Contract) OfferCustody(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "OfferCustody", arg)
}

// AcceptCustody calls core.AcceptCustody.
func (c *Contract) AcceptCustody(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "AcceptCustody", arg)
}

// PutDatasetPrivate calls core.PutDatasetPrivate; the metadata is the
// proposal's transient data "private".
func (c *Contract) PutDatasetPrivate(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "PutDatasetPrivate", arg)
}

// GetDatasetPrivate calls core.GetDatasetPrivate.
func (c *Contract) GetDatasetPrivate(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "GetDatasetPrivate", arg)
}

// VerifyDatasetPrivate calls core.VerifyDatasetPrivate.
func (c *Contract) VerifyDatasetPrivate(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "VerifyDatasetPrivate", arg)
}

// RecordArrival calls core.RecordArrival.
func (c *Contract) RecordArrival(ctx contractapi.TransactionContextInterface, arg string) (string, error) {
	return call(ctx, "RecordArrival", arg)
}

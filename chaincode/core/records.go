package core

import "time"

// Hashes in records are lowercase hex SHA-256 (64 characters) unless a field
// says otherwise. Ids are 1 to 128 characters from [A-Za-z0-9._:-] starting
// with a letter or digit (see ValidID).

// AssetStatus is an asset's custody status on the ledger.
type AssetStatus string

// Asset statuses; the same words as the twin's custody status.
const (
	StatusInService   AssetStatus = "in_service"
	StatusInTransit   AssetStatus = "in_transit"
	StatusMaintenance AssetStatus = "maintenance"
	StatusQuarantined AssetStatus = "quarantined"
	StatusRetired     AssetStatus = "retired"
)

// AssetKindGateway is the kind of an asset that signs envelopes; only a
// gateway has a public key.
const AssetKindGateway = "gateway"

// Stamp says who wrote a record, in which transaction and when.
type Stamp struct {
	By   string    `json:"by"`
	MSP  string    `json:"msp"`
	Role Role      `json:"role"`
	TxID string    `json:"tx_id"`
	Time time.Time `json:"time"`
}

// AssetRegistration is the input to RegisterAsset.
type AssetRegistration struct {
	ID              string      `json:"id"`
	Kind            string      `json:"kind"`             // gpu, server, gateway, rack, tag, ...
	FingerprintHash string      `json:"fingerprint_hash"` // SHA-256 of the identity fingerprint
	OwnerOrg        string      `json:"owner_org"`        // empty: the caller's MSP
	PublicKey       string      `json:"public_key,omitempty"`
	Status          AssetStatus `json:"status,omitempty"` // empty: in_service
}

// AssetBatch is RegisterAssets' argument.
type AssetBatch struct {
	Assets []AssetRegistration `json:"assets"`
}

// RegisteredAssets is RegisterAssets' answer.
type RegisteredAssets struct {
	Assets   []Asset  `json:"assets"`             // recorded by the call, in the order given
	Existing []string `json:"existing,omitempty"` // ids registered before, left as they were
}

// Asset is a registered piece of hardware: its registration (OwnerOrg and
// Status filled in) and the record's revision, counting its changes from 1.
type Asset struct {
	AssetRegistration
	Revision   uint64 `json:"revision"`
	Registered Stamp  `json:"registered"`
	Updated    Stamp  `json:"updated"`
	// KeyStamp says who put a gateway's current public key on the ledger
	// (registration, SetGatewayKey, or a confirmation of the same key).
	KeyStamp *Stamp `json:"key_stamp,omitempty"`
	// Pending is a custody offer to another organisation not accepted yet.
	Pending *PendingCustody `json:"pending,omitempty"`
}

// ChangeType names an entry of an asset's history.
type ChangeType string

// Asset history entry types.
const (
	ChangeRegistered  ChangeType = "registered"
	ChangeStatus      ChangeType = "status"
	ChangeFingerprint ChangeType = "fingerprint"
	ChangeKey         ChangeType = "public_key"
)

// StatusChange is the input to SetAssetStatus.
type StatusChange struct {
	Asset  string      `json:"asset"`
	Status AssetStatus `json:"status"`
	Reason string      `json:"reason,omitempty"`
}

// FingerprintChange is the input to UpdateFingerprint; Reason (e.g. the work
// order) is required.
type FingerprintChange struct {
	Asset           string `json:"asset"`
	FingerprintHash string `json:"fingerprint_hash"`
	Reason          string `json:"reason"`
}

// GatewayKeyPolicy is the ledger-wide rule on whose gateway keys count.
// With TrustedKeysOnly, the service may not register a gateway, and
// evidence is accepted only from gateways whose key was set or confirmed by
// a person (admin, asset_manager or security), so twin-service alone cannot
// invent hardware evidence even by inventing a gateway. Off by default.
type GatewayKeyPolicy struct {
	TrustedKeysOnly bool   `json:"trusted_keys_only"`
	Stamp           *Stamp `json:"stamp,omitempty"`
}

// KeyChange is the input to SetGatewayKey; Reason is required. Setting the
// key a gateway already has confirms it (see Asset.KeyStamp).
type KeyChange struct {
	Asset     string `json:"asset"`
	PublicKey string `json:"public_key"`
	Reason    string `json:"reason"`
}

// AssetChange is one entry of an asset's history on the ledger.
type AssetChange struct {
	Asset    string     `json:"asset"`
	Revision uint64     `json:"revision"`
	Type     ChangeType `json:"type"`
	Old      string     `json:"old,omitempty"`
	New      string     `json:"new"`
	Reason   string     `json:"reason,omitempty"`
	Stamp    Stamp      `json:"stamp"`
}

// AssetHistory is everything the ledger holds about one asset.
type AssetHistory struct {
	Asset    Asset         `json:"asset"`
	Changes  []AssetChange `json:"changes"`  // by revision
	Evidence []Evidence    `json:"evidence"` // by event time, then gateway and sequence
}

// AnchorInput is the input to SubmitAnchor: the RFC 6962 Merkle root of a
// batch of twin events and what the batch covers. TreeSize and TreeRoot
// optionally carry the service's whole event tree after this batch (its
// checkpoint); both or neither. Prev, when set, must name the current head.
type AnchorInput struct {
	Root       string    `json:"root"`        // hex, 32 bytes
	FirstEvent uint64    `json:"first_event"` // event ids, inclusive
	LastEvent  uint64    `json:"last_event"`
	FirstTime  time.Time `json:"first_time"` // the events' times, inclusive
	LastTime   time.Time `json:"last_time"`
	Size       uint64    `json:"size"` // leaves in the batch: LastEvent-FirstEvent+1
	TreeSize   uint64    `json:"tree_size,omitempty"`
	TreeRoot   string    `json:"tree_root,omitempty"`
	Prev       string    `json:"prev,omitempty"` // expected hash of the current head
	// Chain names the anchor chain: "" is the default chain (one
	// service's), a ValidID one of several chains in one ledger, each
	// hash-linked on its own (e.g. one per twin-service node).
	Chain string `json:"chain,omitempty"`
}

// Anchor is one link of an anchor chain (AnchorInput.Chain). Seq counts from 1 in each chain; Prev is the
// previous anchor's Hash (empty for the first), filled in by the core; Hash is
// AnchorHash of the anchor, which covers every field but Hash and Stamp.
type Anchor struct {
	Seq uint64 `json:"seq"`
	AnchorInput
	Hash  string `json:"hash"`
	Stamp Stamp  `json:"stamp"`
}

// EvidenceKind says what a piece of hardware evidence shows.
type EvidenceKind string

// Evidence kinds. Each names what the core checks in the signed envelope.
const (
	EvidenceSwap       EvidenceKind = "swap"       // a firmware (inventory) envelope naming the asset with a new identity
	EvidenceFirmware   EvidenceKind = "firmware"   // a firmware envelope naming the asset
	EvidenceQuarantine EvidenceKind = "quarantine" // any envelope naming the asset that led to a quarantine
	EvidenceXID        EvidenceKind = "xid"        // a telemetry envelope whose sample for the asset has an XID
	EvidenceECCDBE     EvidenceKind = "ecc_dbe"    // a telemetry envelope whose sample for the asset has double-bit ECC errors
	EvidenceRowRemap   EvidenceKind = "row_remap"  // a telemetry envelope whose sample for the asset has a row-remap failure
	EvidenceGateway    EvidenceKind = "gateway"    // a status envelope of the gateway itself
	EvidenceAlert      EvidenceKind = "alert"      // any envelope naming the asset that an alert rests on (e.g. the workloads report of an unapproved model)
)

// EvidenceInput is the input to RecordEvidence: the gateway-signed envelope
// exactly as received, and the twin event it explains.
type EvidenceInput struct {
	Asset    string       `json:"asset"`
	Kind     EvidenceKind `json:"kind"`
	Envelope []byte       `json:"envelope"`           // the raw envelope JSON, base64 in JSON
	EventID  uint64       `json:"event_id,omitempty"` // the twin event it backs, if any
	Revision uint64       `json:"revision,omitempty"` // the asset's twin revision after that event
	Note     string       `json:"note,omitempty"`
}

// Evidence is a recorded, signature-checked envelope about an asset. Gateway,
// Seq and EventTime are read from the envelope, not taken from the caller.
type Evidence struct {
	Asset        string       `json:"asset"`
	Kind         EvidenceKind `json:"kind"`
	Gateway      string       `json:"gateway"`
	Seq          uint64       `json:"seq"`
	EnvelopeKind string       `json:"envelope_kind"`
	EventTime    time.Time    `json:"event_time"`
	EventID      uint64       `json:"event_id,omitempty"`
	Revision     uint64       `json:"revision,omitempty"`
	Envelope     []byte       `json:"envelope"`
	EnvelopeHash string       `json:"envelope_hash"`
	KeyRole      Role         `json:"key_role"` // who put the verifying key on the ledger (Asset.KeyStamp)
	Note         string       `json:"note,omitempty"`
	Stamp        Stamp        `json:"stamp"`
}

// Source is where a dataset's data came from: a registered asset or an
// outside system.
type Source struct {
	Kind string `json:"kind"` // SourceAsset or SourceSystem
	Ref  string `json:"ref"`  // asset id, or the system's name/URI
}

// Source kinds.
const (
	SourceAsset  = "asset"
	SourceSystem = "system"
)

// Consent is the terms a dataset may be used under.
type Consent struct {
	PolicyRef     string   `json:"policy_ref"`     // the consent/licence policy document
	Licence       string   `json:"licence"`        // e.g. an SPDX id or contract reference
	UseScope      []string `json:"use_scope"`      // allowed uses, e.g. "training", "evaluation"
	RetentionDays int      `json:"retention_days"` // how long the data may be kept
}

// Transformation derives a dataset from parents. OutputHash must equal the
// derived dataset's ContentHash. Labeling, when set, makes it a labeling step.
type Transformation struct {
	Step       string        `json:"step"` // e.g. "dedupe", "resize", "label"
	Parents    []string      `json:"parents"`
	CodeRef    string        `json:"code_ref,omitempty"`
	Tools      []ToolVersion `json:"tools,omitempty"`
	OutputHash string        `json:"output_hash"`
	Labeling   *Labeling     `json:"labeling,omitempty"`
}

// ToolVersion is one tool and the version used.
type ToolVersion struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Labeling records how a dataset was labelled.
type Labeling struct {
	Tasks      []LabelTask     `json:"tasks"`
	Annotators []AnnotatorRole `json:"annotators"` // a role attestation for every annotator of a task
	Agreement  Agreement       `json:"agreement"`
	QA         SampledQA       `json:"qa"`
}

// LabelTask is one labeling task's assignment and completion.
type LabelTask struct {
	ID          string    `json:"id"`
	Annotator   string    `json:"annotator"`
	AssignedAt  time.Time `json:"assigned_at"`
	CompletedAt time.Time `json:"completed_at"`
}

// AnnotatorRole attests that an annotator acted in a role (e.g.
// "radiologist", "trained_annotator"), attested by someone else.
type AnnotatorRole struct {
	Annotator  string `json:"annotator"`
	Role       string `json:"role"`
	AttestedBy string `json:"attested_by"`
}

// Agreement is an inter-annotator agreement figure, e.g. Cohen's kappa.
type Agreement struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"` // in [-1, 1]
}

// SampledQA is a quality review of a sample of the labels.
type SampledQA struct {
	Sampled  int    `json:"sampled"`
	Passed   int    `json:"passed"`
	Reviewer string `json:"reviewer"`
}

// Comparison says which side of a threshold passes.
type Comparison string

// Comparisons.
const (
	AtLeast Comparison = "min" // value >= threshold passes
	AtMost  Comparison = "max" // value <= threshold passes
)

// QualityCheckInput is one quality check's result as measured.
type QualityCheckInput struct {
	Name      string     `json:"name"`
	Value     float64    `json:"value"`
	Threshold float64    `json:"threshold"`
	Compare   Comparison `json:"compare"`
}

// QualityChecksInput is the input to AddQualityChecks.
type QualityChecksInput struct {
	Dataset string              `json:"dataset"`
	Checks  []QualityCheckInput `json:"checks"`
}

// QualityCheck is a recorded check; Pass is computed by the core.
type QualityCheck struct {
	Name      string     `json:"name"`
	Value     float64    `json:"value"`
	Threshold float64    `json:"threshold"`
	Compare   Comparison `json:"compare"`
	Pass      bool       `json:"pass"`
	Stamp     Stamp      `json:"stamp"`
}

// DatasetInput is the input to RegisterDataset. A dataset is either a root
// (Sources, no Transform) or derived (Transform with parents; Sources
// optional).
type DatasetInput struct {
	ID          string          `json:"id"`
	Name        string          `json:"name,omitempty"`
	ContentHash string          `json:"content_hash"`
	Sources     []Source        `json:"sources,omitempty"`
	Consent     Consent         `json:"consent"`
	Transform   *Transformation `json:"transform,omitempty"`
}

// Dataset is a registered dataset. Checks holds every quality check recorded,
// in order; a later check of the same name supersedes an earlier one.
type Dataset struct {
	DatasetInput
	Checks     []QualityCheck `json:"checks,omitempty"`
	Registered Stamp          `json:"registered"`
	// Private is the hash of the dataset's sensitive metadata, kept in its
	// organisation's private collection (PutDatasetPrivate).
	Private *PrivateRef `json:"private,omitempty"`
}

// HardwareUse is one asset a training run used, with the twin revisions at
// the start and the end of the run.
type HardwareUse struct {
	Asset         string `json:"asset"`
	RevisionStart uint64 `json:"revision_start"`
	RevisionEnd   uint64 `json:"revision_end"`
}

// TrainingRun is how a model was made.
type TrainingRun struct {
	Hardware   []HardwareUse `json:"hardware"`
	CodeRef    string        `json:"code_ref"`    // e.g. git URL@commit
	ConfigHash string        `json:"config_hash"` // hash of the training configuration
	Start      time.Time     `json:"start"`
	End        time.Time     `json:"end"`
	Federated  []FedRound    `json:"federated,omitempty"`
}

// FedRound is one federated-learning round: each registered node's update
// hash and the aggregate.
type FedRound struct {
	Round         int          `json:"round"` // 1, 2, 3, ...
	Updates       []NodeUpdate `json:"updates"`
	AggregateHash string       `json:"aggregate_hash"`
}

// NodeUpdate is one node's contribution to a round; Node is a registered asset.
type NodeUpdate struct {
	Node       string `json:"node"`
	UpdateHash string `json:"update_hash"`
}

// Metric is one named figure.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// EvaluationInput is the input to AddEvaluation.
type EvaluationInput struct {
	Model   string   `json:"model"`
	Name    string   `json:"name"`              // e.g. "holdout-2026-11"
	Dataset string   `json:"dataset,omitempty"` // the evaluation dataset, if registered
	Metrics []Metric `json:"metrics"`
}

// Evaluation is a recorded evaluation of a model.
type Evaluation struct {
	Name    string   `json:"name"`
	Dataset string   `json:"dataset,omitempty"`
	Metrics []Metric `json:"metrics"`
	Stamp   Stamp    `json:"stamp"`
}

// ModelInput is the input to RegisterModel.
type ModelInput struct {
	ID           string      `json:"id"`
	Name         string      `json:"name,omitempty"`
	ArtifactHash string      `json:"artifact_hash"`
	Datasets     []string    `json:"datasets"`
	Training     TrainingRun `json:"training"`
}

// Model is a registered model with its evaluations, in order.
type Model struct {
	ModelInput
	Evaluations []Evaluation `json:"evaluations,omitempty"`
	Registered  Stamp        `json:"registered"`
	// Revalidation is set when a remediation asked for the model to be
	// validated again: the gate refuses it until every sign-off its policy
	// requires is renewed after Revalidation.Stamp.
	Revalidation *Revalidation `json:"revalidation,omitempty"`
}

// SubjectKind is what an attestation is about.
type SubjectKind string

// Attestation subjects.
const (
	SubjectDataset SubjectKind = "dataset"
	SubjectModel   SubjectKind = "model"
)

// Decision is a sign-off's verdict.
type Decision string

// Decisions.
const (
	Approve Decision = "approve"
	Reject  Decision = "reject"
)

// AttestationInput is the input to Attest. SubjectHash must equal the
// subject's content hash (dataset) or artifact hash (model), binding the
// sign-off to exact bytes.
type AttestationInput struct {
	SubjectKind SubjectKind `json:"subject_kind"`
	Subject     string      `json:"subject"`
	SubjectHash string      `json:"subject_hash"`
	Decision    Decision    `json:"decision"`
	Statement   string      `json:"statement,omitempty"`
	Metrics     []Metric    `json:"metrics,omitempty"`
}

// Attestation is a sign-off by role (the caller's role: ml_lead, security or
// compliance). N numbers the sign-offs of one role on one subject from 1; the
// highest is the one in force.
type Attestation struct {
	SubjectKind SubjectKind `json:"subject_kind"`
	Subject     string      `json:"subject"`
	SubjectHash string      `json:"subject_hash"`
	Role        Role        `json:"role"`
	N           uint64      `json:"n"`
	Decision    Decision    `json:"decision"`
	Statement   string      `json:"statement,omitempty"`
	Metrics     []Metric    `json:"metrics,omitempty"`
	Stamp       Stamp       `json:"stamp"`
}

// Threshold is one metric a policy requires of a model's evaluations.
type Threshold struct {
	Metric  string     `json:"metric"`
	Compare Comparison `json:"compare"`
	Value   float64    `json:"value"`
}

// PolicyInput is the input to SetPolicy.
type PolicyInput struct {
	ID            string      `json:"id"`
	RequiredRoles []Role      `json:"required_roles"` // sign-offs required on the model
	Thresholds    []Threshold `json:"thresholds"`     // on the model's latest evaluated metrics
	// RefuseTrainingEvidence refuses a model whose training hardware has
	// evidence of these kinds (e.g. swap, xid, ecc_dbe) within its run.
	RefuseTrainingEvidence []EvidenceKind `json:"refuse_training_evidence,omitempty"`
	// RefuseQuarantinedTraining refuses a model trained on an asset that is
	// quarantined now.
	RefuseQuarantinedTraining bool `json:"refuse_quarantined_training,omitempty"`
	// HardwareClasses, when set, are the only hardware classes a
	// deployment may name (Environment.HardwareClass).
	HardwareClasses []string `json:"hardware_classes,omitempty"`
	// DriverMin and DriverMax, when set, bound (inclusive) the driver
	// version of every target (Environment.Assets), compared as dotted
	// numbers ("550.54.15").
	DriverMin string `json:"driver_min,omitempty"`
	DriverMax string `json:"driver_max,omitempty"`
}

// Policy is a deployment policy. Version counts from 1 and grows with each
// SetPolicy of the same id; a deployment records the version it was judged by.
type Policy struct {
	ID                        string         `json:"id"`
	Version                   uint64         `json:"version"`
	RequiredRoles             []Role         `json:"required_roles"`
	Thresholds                []Threshold    `json:"thresholds"`
	RefuseTrainingEvidence    []EvidenceKind `json:"refuse_training_evidence,omitempty"`
	RefuseQuarantinedTraining bool           `json:"refuse_quarantined_training,omitempty"`
	HardwareClasses           []string       `json:"hardware_classes,omitempty"`
	DriverMin                 string         `json:"driver_min,omitempty"`
	DriverMax                 string         `json:"driver_max,omitempty"`
	Stamp                     Stamp          `json:"stamp"`
}

// Environment is where a deployment runs.
type Environment struct {
	HardwareClass string        `json:"hardware_class"` // e.g. "h100-sxm-80g"
	Drivers       []ToolVersion `json:"drivers"`
	Dependencies  []ToolVersion `json:"dependencies,omitempty"`
	// Assets are the targets as the digital twin saw them when the
	// deployment was requested (twin-service fills them from its twins).
	Assets []AssetEnvironment `json:"assets,omitempty"`
}

// AssetEnvironment is one target's hardware and firmware at request time.
type AssetEnvironment struct {
	Asset    string `json:"asset"`
	GPUModel string `json:"gpu_model,omitempty"` // e.g. "NVIDIA H100 80GB HBM3"
	UUID     string `json:"uuid,omitempty"`
	Serial   string `json:"serial,omitempty"`
	VBIOS    string `json:"vbios,omitempty"`
	Driver   string `json:"driver,omitempty"`
}

// DeploymentKind is a deployment or a rollback.
type DeploymentKind string

// Deployment kinds.
const (
	KindDeploy   DeploymentKind = "deploy"
	KindRollback DeploymentKind = "rollback"
)

// DeploymentInput is the input to RequestDeployment. A rollback names the
// deployment it replaces in Replaces and redeploys Model.
type DeploymentInput struct {
	ID            string         `json:"id"`
	Kind          DeploymentKind `json:"kind"` // empty: deploy
	Model         string         `json:"model"`
	Policy        string         `json:"policy"`
	Targets       []string       `json:"targets"` // asset ids
	BinaryHash    string         `json:"binary_hash"`
	ContainerHash string         `json:"container_hash"`
	ConfigHash    string         `json:"config_hash"`
	Environment   Environment    `json:"environment"`
	Replaces      string         `json:"replaces,omitempty"`
}

// ReasonCode names why the gate refused a deployment.
type ReasonCode string

// Gate refusal reasons, in the order the gate checks them.
const (
	ReasonAttestationMissing  ReasonCode = "attestation_missing"   // a required role has not signed off
	ReasonAttestationRejected ReasonCode = "attestation_rejected"  // a required role's sign-off in force is a reject
	ReasonMetricMissing       ReasonCode = "metric_missing"        // no evaluation has a policy metric
	ReasonMetricThreshold     ReasonCode = "metric_threshold"      // a metric misses its threshold
	ReasonDatasetUnchecked    ReasonCode = "dataset_unchecked"     // a training dataset has no quality check
	ReasonDatasetCheckFailed  ReasonCode = "dataset_check_failed"  // a training dataset's check in force failed
	ReasonTargetQuarantined   ReasonCode = "target_quarantined"    // a target asset is quarantined
	ReasonTargetRetired       ReasonCode = "target_retired"        // a target asset is retired
	ReasonTrainingEvidence    ReasonCode = "training_evidence"     // training hardware has refused evidence within the run
	ReasonTrainingQuarantined ReasonCode = "training_quarantined"  // a training asset is quarantined now
	ReasonHardwareClass       ReasonCode = "hardware_class"        // the hardware class is not one the policy allows
	ReasonDriverRange         ReasonCode = "driver_range"          // a target's driver is unknown or outside the policy's range
	ReasonRevalidation        ReasonCode = "revalidation_required" // a remediation asked for a new sign-off after it
)

// Reason is one refusal reason with what it is about.
type Reason struct {
	Code   ReasonCode `json:"code"`
	Detail string     `json:"detail"`
}

// Deployment is a recorded gate decision: allowed, or refused with reasons.
type Deployment struct {
	DeploymentInput
	ModelHash     string   `json:"model_hash"` // the model's artifact hash
	PolicyVersion uint64   `json:"policy_version"`
	Allowed       bool     `json:"allowed"`
	Reasons       []Reason `json:"reasons,omitempty"`
	Stamp         Stamp    `json:"stamp"`
	// Paused is set when an approved remediation paused the deployment: it
	// is no longer in force anywhere.
	Paused *Pause `json:"paused,omitempty"`
	// Remediation is the remediation that recorded this rollback (allowed
	// by its approvals, not by the gate).
	Remediation string `json:"remediation,omitempty"`
}

// Pause is how a deployment was paused: by which remediation, executed when
// and by whom.
type Pause struct {
	Remediation string `json:"remediation"`
	Stamp       Stamp  `json:"stamp"`
}

// Lineage is where a model came from: its datasets and all their ancestors,
// and the hardware of its training run.
type Lineage struct {
	Model    Model           `json:"model"`
	Datasets []Dataset       `json:"datasets"` // the model's datasets and their ancestors, by id
	Hardware []HardwareTrace `json:"hardware"` // in the training run's order
}

// HardwareTrace is one asset of a training run with its ledger record and the
// evidence recorded for it within the run (by revision or time, see
// ModelsExposedTo).
type HardwareTrace struct {
	Use      HardwareUse `json:"use"`
	Asset    Asset       `json:"asset"`
	Evidence []Evidence  `json:"evidence,omitempty"`
}

// Exposure is a model that used an asset while the asset had health evidence.
type Exposure struct {
	Model      string     `json:"model"`
	Via        string     `json:"via"`                  // "training" or "deployment"
	Deployment string     `json:"deployment,omitempty"` // for via=deployment
	Evidence   []Evidence `json:"evidence"`
}

package core

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Remediation stops: twinchain does not command agents to stop a model. An
// operator stops it; the GPU's agent then reports, in a gateway-signed
// workloads message, that it no longer runs there, and that message is
// recorded on the remediation as the stop's evidence.

// RemediationStopInput is the input to RecordRemediationStop.
type RemediationStopInput struct {
	Remediation string `json:"remediation"`
	Asset       string `json:"asset"` // a GPU a paused deployment of the remediation targets
	// Envelope is the gateway-signed workloads message, exactly as the
	// gateway sent it, that lists Asset without the paused model.
	Envelope []byte `json:"envelope"`
}

// RemediationStop records that a paused model no longer runs on a GPU: the
// gateway-signed workloads message that shows it, and the gateway key it
// verified under when recorded, so a copy of the record can be checked
// offline (CheckRemediationStop).
type RemediationStop struct {
	Asset string `json:"asset"`
	// Deployments are the remediation's paused deployments targeting
	// Asset; ModelHash is their model's artifact hash (lower-case hex).
	Deployments  []string  `json:"deployments"`
	ModelHash    string    `json:"model_hash"`
	Gateway      string    `json:"gateway"`
	Seq          uint64    `json:"seq"`
	EventTime    time.Time `json:"event_time"`
	Envelope     []byte    `json:"envelope"`
	EnvelopeHash string    `json:"envelope_hash"`
	GatewayKey   string    `json:"gateway_key"` // hex Ed25519 public key
	KeyRole      Role      `json:"key_role"`    // who put the key on the ledger
	Stamp        Stamp     `json:"stamp"`
}

// workloadsBody holds the parts of a workloads body a stop looks at.
type workloadsBody struct {
	GPUs []struct {
		Asset     string `json:"asset"`
		Processes []struct {
			PID      uint32 `json:"pid"`
			Model    string `json:"model"`
			Artifact string `json:"artifact"`
		} `json:"processes"`
	} `json:"gpus"`
}

// showsStopped checks that a workloads envelope lists asset and that no
// process on it serves the model with artifact hash modelHash, nor a
// configured model whose artifact could not be read (which could be it).
func showsStopped(e *Envelope, asset, modelHash string) error {
	if e.Kind != "workloads" {
		return fmt.Errorf("a stop needs a workloads envelope, got %s: %w", e.Kind, ErrInvalid)
	}
	var body workloadsBody
	if err := json.Unmarshal(e.Body, &body); err != nil {
		return fmt.Errorf("workloads %s/%d body: %v: %w", e.Gateway, e.Seq, err, ErrInvalid)
	}
	listed := false
	for _, g := range body.GPUs {
		if g.Asset != asset {
			continue
		}
		listed = true
		for _, p := range g.Processes {
			art, _ := strings.CutPrefix(p.Artifact, "sha256:")
			switch {
			case art == modelHash:
				return fmt.Errorf("workloads %s/%d shows pid %d still serving %s on %s: %w", e.Gateway, e.Seq, p.PID, p.Artifact, asset, ErrInvalid)
			case p.Model != "" && p.Artifact == "":
				return fmt.Errorf("workloads %s/%d shows pid %d serving model %s with an unread artifact on %s (it may be the paused one): %w",
					e.Gateway, e.Seq, p.PID, p.Model, asset, ErrInvalid)
			}
		}
	}
	if !listed {
		return fmt.Errorf("workloads %s/%d does not list %s: %w", e.Gateway, e.Seq, asset, ErrInvalid)
	}
	return nil
}

// CheckRemediationStop checks a recorded stop on its own, as an offline
// verifier does: the envelope hashes to EnvelopeHash, is the gateway's
// message Gateway/Seq, verifies under GatewayKey, and shows Asset without
// the model ModelHash.
func CheckRemediationStop(s *RemediationStop) error {
	sum := sha256.Sum256(s.Envelope)
	if h := hex.EncodeToString(sum[:]); h != s.EnvelopeHash {
		return fmt.Errorf("stop on %s: envelope hashes to %s, not %s: %w", s.Asset, h, s.EnvelopeHash, ErrInvalid)
	}
	env, err := ParseEnvelope(s.Envelope)
	if err != nil {
		return fmt.Errorf("stop on %s: %w", s.Asset, err)
	}
	if env.Gateway != s.Gateway || env.Seq != s.Seq || !env.Time.Equal(s.EventTime) {
		return fmt.Errorf("stop on %s names %s/%d at %s, its envelope is %s/%d at %s: %w", s.Asset, s.Gateway, s.Seq,
			s.EventTime.Format(time.RFC3339Nano), env.Gateway, env.Seq, env.TS, ErrInvalid)
	}
	pub, err := hex.DecodeString(s.GatewayKey)
	if err != nil {
		return fmt.Errorf("stop on %s: gateway key: %v: %w", s.Asset, err, ErrInvalid)
	}
	if err := env.Verify(ed25519.PublicKey(pub)); err != nil {
		return err
	}
	return showsStopped(&env, s.Asset, s.ModelHash)
}

// pausedOn lists the deployments r paused (pause and rollback steps) that
// target asset, and their model hash.
func pausedOn(st State, r *Remediation, asset string) ([]string, string, error) {
	var ids []string
	hash := ""
	for _, s := range r.Steps {
		if s.Action != ActionPause && s.Action != ActionRollback {
			continue
		}
		var d Deployment
		if err := mustLoad(st, pfxDeployment+s.Deployment, "deployment", s.Deployment, &d); err != nil {
			return nil, "", err
		}
		if slices.Contains(d.Targets, asset) {
			ids, hash = append(ids, d.ID), d.ModelHash
		}
	}
	return ids, hash, nil
}

// RecordRemediationStop records, on an executed remediation, that the
// model it paused no longer runs on one GPU a paused deployment targets.
// Roles: service, security.
//
// The core verifies the workloads envelope as it verifies evidence (the
// gateway's key on the ledger, the signature) and checks that it lists the
// GPU with no process serving the model's artifact (nor a configured model
// whose artifact the agent could not read), at a time not before the
// execution. A GPU's stop is recorded once: a later call for the same GPU
// returns the remediation as it is.
func RecordRemediationStop(tx *Tx, in RemediationStopInput) (Remediation, error) {
	if err := begin(tx, "record remediation stop", rolesEvidence); err != nil {
		return Remediation{}, err
	}
	if err := checkID("asset", in.Asset); err != nil {
		return Remediation{}, err
	}
	var r Remediation
	if err := mustLoad(tx.State, pfxRemediation+in.Remediation, "remediation", in.Remediation, &r); err != nil {
		return Remediation{}, err
	}
	if r.State != RemediationExecuted || r.Executed == nil {
		return Remediation{}, fmt.Errorf("remediation %s is %s, not executed: %w", r.ID, r.State, ErrConflict)
	}
	deps, hash, err := pausedOn(tx.State, &r, in.Asset)
	if err != nil {
		return Remediation{}, err
	}
	if len(deps) == 0 {
		return Remediation{}, fmt.Errorf("remediation %s paused no deployment on %s: %w", r.ID, in.Asset, ErrInvalid)
	}
	if slices.ContainsFunc(r.Stops, func(s RemediationStop) bool { return s.Asset == in.Asset }) {
		return r, nil
	}
	env, gw, err := verifiedEnvelope(tx, in.Envelope, "remediation stop")
	if err != nil {
		return Remediation{}, err
	}
	if err := showsStopped(&env, in.Asset, hash); err != nil {
		return Remediation{}, err
	}
	if env.Time.Before(r.Executed.Time) {
		return Remediation{}, fmt.Errorf("workloads %s/%d at %s is older than the execution of %s at %s: %w", env.Gateway, env.Seq,
			env.TS, r.ID, r.Executed.Time.Format(time.RFC3339), ErrInvalid)
	}
	sum := sha256.Sum256(in.Envelope)
	r.Stops = append(r.Stops, RemediationStop{Asset: in.Asset, Deployments: deps, ModelHash: hash, Gateway: env.Gateway, Seq: env.Seq,
		EventTime: env.Time.UTC(), Envelope: in.Envelope, EnvelopeHash: hex.EncodeToString(sum[:]), GatewayKey: gw.PublicKey,
		KeyRole: gw.keyRole(), Stamp: tx.stamp()})
	slices.SortFunc(r.Stops, func(a, b RemediationStop) int { return strings.Compare(a.Asset, b.Asset) })
	return r, store(tx.State, pfxRemediation+r.ID, r)
}

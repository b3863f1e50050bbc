package core

import (
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
)

// Valid reports whether k is a known evidence kind.
func (k EvidenceKind) Valid() bool {
	switch k {
	case EvidenceSwap, EvidenceFirmware, EvidenceQuarantine, EvidenceXID, EvidenceECCDBE, EvidenceRowRemap, EvidenceGateway, EvidenceAlert:
		return true
	}
	return false
}

// checkEvidenceBody checks that the envelope shows what the evidence kind
// claims about asset.
func checkEvidenceBody(kind EvidenceKind, asset string, e *Envelope) error {
	body, err := decodeEnvelopeBody(e.Body)
	if err != nil {
		return fmt.Errorf("envelope %s body: %v: %w", e.Kind, err, ErrInvalid)
	}
	want := map[EvidenceKind]string{EvidenceSwap: "firmware", EvidenceFirmware: "firmware", EvidenceXID: "telemetry",
		EvidenceECCDBE: "telemetry", EvidenceRowRemap: "telemetry", EvidenceGateway: envelopeStatusKind}[kind]
	if want != "" && e.Kind != want {
		return fmt.Errorf("%s evidence needs a %s envelope, got %s: %w", kind, want, e.Kind, ErrInvalid)
	}
	switch {
	case e.Kind == envelopeStatusKind || kind == EvidenceGateway:
		if asset != e.Gateway {
			return fmt.Errorf("status envelope of %s is no evidence about %s: %w", e.Gateway, asset, ErrInvalid)
		}
	case e.Kind == "rfid":
		// Tag reads name tags, not asset ids; the ledger cannot map them, so
		// the evidence only proves what the gateway read.
	case !body.names(asset):
		return fmt.Errorf("%s envelope %s/%d does not name asset %s: %w", e.Kind, e.Gateway, e.Seq, asset, ErrInvalid)
	}
	shows := func(f func(i int) bool) error {
		for i, g := range body.GPUs {
			if g.Asset == asset && f(i) {
				return nil
			}
		}
		return fmt.Errorf("telemetry %s/%d shows no %s on %s: %w", e.Gateway, e.Seq, kind, asset, ErrInvalid)
	}
	switch kind {
	case EvidenceXID:
		return shows(func(i int) bool { return body.GPUs[i].XIDCount > 0 || body.GPUs[i].LastXID != 0 })
	case EvidenceECCDBE:
		return shows(func(i int) bool { return body.GPUs[i].ECCDoubleBit > 0 })
	case EvidenceRowRemap:
		return shows(func(i int) bool { return body.GPUs[i].RowRemapFailure })
	}
	return nil
}

// RecordEvidence records a gateway-signed envelope as evidence about an
// asset. Roles: service, security.
//
// The core verifies the envelope's signature itself, against the public key
// of the gateway registered on the ledger (a registered, unretired asset of
// kind gateway), and checks that the body shows what Kind claims: the asset
// is named in it, and for xid, ecc_dbe and row_remap the asset's telemetry
// sample has that fault. So the service alone cannot invent hardware
// evidence. Recording the same envelope for the same asset and kind again
// returns the stored record; different bytes under the same gateway sequence
// number are a conflict.
func RecordEvidence(tx *Tx, in EvidenceInput) (Evidence, error) {
	if err := begin(tx, "record evidence", rolesEvidence); err != nil {
		return Evidence{}, err
	}
	if err := checkID("asset", in.Asset); err != nil {
		return Evidence{}, err
	}
	if !in.Kind.Valid() {
		return Evidence{}, fmt.Errorf("evidence kind %q: %w", in.Kind, ErrInvalid)
	}
	if err := checkText("note", in.Note, 1024, false); err != nil {
		return Evidence{}, err
	}
	var asset Asset
	if err := mustLoad(tx.State, pfxAsset+in.Asset, "asset", in.Asset, &asset); err != nil {
		return Evidence{}, err
	}
	env, gw, err := verifiedEnvelope(tx, in.Envelope, "evidence")
	if err != nil {
		return Evidence{}, err
	}
	if err := checkEvidenceBody(in.Kind, in.Asset, &env); err != nil {
		return Evidence{}, err
	}
	sum := sha256.Sum256(in.Envelope)
	ev := Evidence{Asset: in.Asset, Kind: in.Kind, Gateway: env.Gateway, Seq: env.Seq, EnvelopeKind: env.Kind,
		EventTime: env.Time.UTC(), EventID: in.EventID, Revision: in.Revision, Envelope: in.Envelope,
		EnvelopeHash: hex.EncodeToString(sum[:]), KeyRole: gw.keyRole(), Note: in.Note}
	key := pfxEvidence + in.Asset + "/" + env.Gateway + "/" + pad(env.Seq) + "/" + string(in.Kind)
	var old Evidence
	found, err := load(tx.State, key, &old)
	if err != nil {
		return Evidence{}, err
	}
	if found {
		if old.EnvelopeHash == ev.EnvelopeHash {
			return old, nil
		}
		return Evidence{}, fmt.Errorf("gateway %s sequence %d already recorded with other bytes: %w", env.Gateway, env.Seq, ErrConflict)
	}
	ev.Stamp = tx.stamp()
	return ev, store(tx.State, key, ev)
}

// verifiedEnvelope parses a gateway-signed envelope and verifies its
// signature against the key of the gateway it names, as registered on the
// ledger (a registered, unretired asset of kind gateway with a key, allowed
// by the gateway key policy); what names the record it is for.
func verifiedEnvelope(tx *Tx, raw []byte, what string) (Envelope, Asset, error) {
	env, err := ParseEnvelope(raw)
	if err != nil {
		return env, Asset{}, err
	}
	var gw Asset
	if err := mustLoad(tx.State, pfxAsset+env.Gateway, "gateway", env.Gateway, &gw); err != nil {
		return env, gw, err
	}
	if gw.Kind != AssetKindGateway || gw.PublicKey == "" {
		return env, gw, fmt.Errorf("asset %q is not a gateway with a key: %w", env.Gateway, ErrInvalid)
	}
	if err := checkGatewayKeyPolicy(tx, gw.keyRole(), what+" signed by "+env.Gateway); err != nil {
		return env, gw, err
	}
	if gw.Status == StatusRetired {
		return env, gw, fmt.Errorf("gateway %q is retired: %w", env.Gateway, ErrConflict)
	}
	pub, err := hex.DecodeString(gw.PublicKey)
	if err != nil {
		return env, gw, fmt.Errorf("gateway %q key: %v: %w", env.Gateway, err, ErrInvalid)
	}
	return env, gw, env.Verify(ed25519.PublicKey(pub))
}

// evidenceOf lists an asset's evidence by event time, then gateway,
// sequence and kind.
func evidenceOf(st State, asset string) ([]Evidence, error) {
	ev, err := scan[Evidence](st, pfxEvidence+asset+"/")
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(ev, func(a, b Evidence) int {
		return cmp.Or(a.EventTime.Compare(b.EventTime), cmp.Compare(a.Gateway, b.Gateway),
			cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.Kind, b.Kind))
	})
	return ev, nil
}

// ListEvidence returns an asset's evidence by event time. Any role.
func ListEvidence(tx *Tx, asset string) ([]Evidence, error) {
	if err := beginRead(tx); err != nil {
		return nil, err
	}
	if err := checkID("asset", asset); err != nil {
		return nil, err
	}
	return evidenceOf(tx.State, asset)
}

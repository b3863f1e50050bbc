package core

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Private dataset metadata. A dataset's sensitive metadata (where the data
// came from in full, the consent records, the licensing terms) belongs to
// the organisation that registered the dataset and is kept in that
// organisation's private data collection (PrivateCollection): on Fabric a
// collection only its peers store and read, whose hash every peer keeps on
// the channel; on the embedded ledger a store beside the blocks, which
// hold only the hash. The metadata never travels in the transaction: it is
// transient data (Tx.Transient[TransientPrivate]). The dataset record
// carries its hash (Dataset.Private), so a partner sees that the record
// exists and checks a copy the owner disclosed (VerifyDatasetPrivate)
// without reading anything else.

// TransientPrivate is the transient data key that carries private metadata.
const TransientPrivate = "private"

// PrivateCollection is the private data collection of an organisation (its
// MSP id): network.sh defines one per organisation by this name.
func PrivateCollection(org string) string { return org + "Private" }

// pfxDatasetPrivate is the key of a dataset's metadata in the collection:
// the dataset record's own key, so a store can pair the two (the embedded
// ledger's verify checks the value against dataset.private.hash).
const pfxDatasetPrivate = pfxDataset

// PrivateState is implemented by a State that keeps private data apart
// from the world state: Fabric's private data collections, the embedded
// ledger's private store.
type PrivateState interface {
	// GetPrivate returns the value at key in collection, or nil when absent.
	GetPrivate(collection, key string) ([]byte, error)
	// PutPrivate stores value at key in collection.
	PutPrivate(collection, key string, value []byte) error
}

// ChannelHashes is implemented by a State whose channel keeps the hash of
// every private value (Fabric's GetPrivateDataHash, readable by every
// organisation).
type ChannelHashes interface {
	PrivateHash(collection, key string) ([]byte, error)
}

// DatasetMeta is a dataset's sensitive metadata.
type DatasetMeta struct {
	Sources   []string `json:"sources,omitempty"`   // where the data came from, in full (suppliers, contracts, sites)
	Consent   string   `json:"consent,omitempty"`   // the consent records the data was collected under
	Licensing string   `json:"licensing,omitempty"` // licence agreements and their terms
	Notes     string   `json:"notes,omitempty"`
}

// PrivateRef is the public trace of private metadata: whose collection
// holds it and the hex SHA-256 of its bytes.
type PrivateRef struct {
	Org        string `json:"org"`
	Collection string `json:"collection"`
	Hash       string `json:"hash"`
	Stamp      Stamp  `json:"stamp"`
}

// DatasetPrivateInput is the input to PutDatasetPrivate; the metadata
// itself (DatasetMeta as JSON) is the transient data TransientPrivate.
type DatasetPrivateInput struct {
	Dataset string `json:"dataset"`
}

// PrivateRecord is a dataset's private metadata as its owner reads it:
// Data is the exact bytes the hash is over.
type PrivateRecord struct {
	Dataset string          `json:"dataset"`
	Ref     PrivateRef      `json:"ref"`
	Data    json.RawMessage `json:"data"`
}

// Disclosure is the input to VerifyDatasetPrivate: a copy of a dataset's
// private metadata as its owner disclosed it (PrivateRecord.Data).
type Disclosure struct {
	Dataset string          `json:"dataset"`
	Data    json.RawMessage `json:"data"`
}

// DisclosureCheck is what VerifyDatasetPrivate found. LedgerHash is the
// channel's hash of the private value where the ledger keeps one (Fabric),
// else the dataset record's; Match says the disclosed copy hashes to it.
type DisclosureCheck struct {
	Dataset       string `json:"dataset"`
	Org           string `json:"org"`
	Collection    string `json:"collection"`
	RecordHash    string `json:"record_hash"`
	ChannelHash   string `json:"channel_hash,omitempty"`
	DisclosedHash string `json:"disclosed_hash"`
	Match         bool   `json:"match"`
}

var rolesPrivateWrite = []Role{RoleAdmin, RoleMLEngineer, RoleMLLead, RoleCompliance}

func checkMeta(m *DatasetMeta) error {
	if err := checkLen("private source", len(m.Sources)); err != nil {
		return err
	}
	for _, s := range m.Sources {
		if err := checkText("private source", s, 1024, true); err != nil {
			return err
		}
	}
	for what, s := range map[string]string{"consent": m.Consent, "licensing": m.Licensing, "notes": m.Notes} {
		if err := checkText(what, s, 16384, false); err != nil {
			return err
		}
	}
	if len(m.Sources) == 0 && m.Consent == "" && m.Licensing == "" && m.Notes == "" {
		return fmt.Errorf("private metadata is empty: %w", ErrInvalid)
	}
	return nil
}

func privateState(tx *Tx) (PrivateState, error) {
	ps, ok := tx.State.(PrivateState)
	if !ok {
		return nil, fmt.Errorf("this ledger keeps no private data: %w", ErrInvalid)
	}
	return ps, nil
}

// PutDatasetPrivate keeps a dataset's sensitive metadata (the transient
// data TransientPrivate, DatasetMeta as JSON) in the private collection of
// the organisation that registered the dataset, and its hash in the
// dataset record. Roles: admin, ml_engineer, ml_lead, compliance of that
// organisation. Putting it again replaces it.
func PutDatasetPrivate(tx *Tx, in DatasetPrivateInput) (Dataset, error) {
	if err := begin(tx, "put private dataset metadata", rolesPrivateWrite); err != nil {
		return Dataset{}, err
	}
	if err := checkID("dataset", in.Dataset); err != nil {
		return Dataset{}, err
	}
	raw, ok := tx.Transient[TransientPrivate]
	if !ok {
		return Dataset{}, fmt.Errorf("private metadata travels as transient data %q, and there is none: %w", TransientPrivate, ErrInvalid)
	}
	var m DatasetMeta
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || dec.More() {
		return Dataset{}, fmt.Errorf("private metadata: not one DatasetMeta object (%v): %w", err, ErrInvalid)
	}
	if err := checkMeta(&m); err != nil {
		return Dataset{}, err
	}
	var d Dataset
	if err := mustLoad(tx.State, pfxDataset+in.Dataset, "dataset", in.Dataset, &d); err != nil {
		return Dataset{}, err
	}
	if d.Registered.MSP != tx.Caller.MSP {
		return Dataset{}, fmt.Errorf("dataset %s belongs to %s, not the caller's %s: %w", d.ID, d.Registered.MSP, tx.Caller.MSP, ErrForbidden)
	}
	ps, err := privateState(tx)
	if err != nil {
		return Dataset{}, err
	}
	data, _ := json.Marshal(m) // canonical: the struct's field order, compact
	sum := sha256.Sum256(data)
	coll := PrivateCollection(tx.Caller.MSP)
	if err := ps.PutPrivate(coll, pfxDatasetPrivate+d.ID, data); err != nil {
		return Dataset{}, fmt.Errorf("put private metadata of %s: %w", d.ID, err)
	}
	d.Private = &PrivateRef{Org: tx.Caller.MSP, Collection: coll, Hash: hex.EncodeToString(sum[:]), Stamp: tx.stamp()}
	return d, store(tx.State, pfxDataset+d.ID, d)
}

// GetDatasetPrivate reads a dataset's private metadata. Any role of the
// owning organisation; another organisation sees only Dataset.Private.
func GetDatasetPrivate(tx *Tx, id string) (PrivateRecord, error) {
	d, err := GetDataset(tx, id)
	if err != nil {
		return PrivateRecord{}, err
	}
	if d.Private == nil {
		return PrivateRecord{}, fmt.Errorf("dataset %s has no private metadata: %w", id, ErrNotFound)
	}
	if d.Private.Org != tx.Caller.MSP {
		return PrivateRecord{}, fmt.Errorf("dataset %s's private metadata belongs to %s, not the caller's %s (ask it for a disclosed copy): %w", id, d.Private.Org, tx.Caller.MSP, ErrForbidden)
	}
	ps, err := privateState(tx)
	if err != nil {
		return PrivateRecord{}, err
	}
	data, err := ps.GetPrivate(d.Private.Collection, pfxDatasetPrivate+id)
	if err != nil {
		return PrivateRecord{}, fmt.Errorf("private metadata of %s: %w", id, err)
	}
	if data == nil {
		return PrivateRecord{}, fmt.Errorf("private metadata of %s is not held here (hash %s): %w", id, d.Private.Hash, ErrNotFound)
	}
	return PrivateRecord{Dataset: id, Ref: *d.Private, Data: data}, nil
}

// VerifyDatasetPrivate checks a disclosed copy of a dataset's private
// metadata against the ledger's hash without reading the private value.
// Any role of any organisation. The copy must be the bytes the owner read
// (PrivateRecord.Data); whitespace outside strings does not count.
func VerifyDatasetPrivate(tx *Tx, in Disclosure) (DisclosureCheck, error) {
	d, err := GetDataset(tx, in.Dataset)
	if err != nil {
		return DisclosureCheck{}, err
	}
	if d.Private == nil {
		return DisclosureCheck{}, fmt.Errorf("dataset %s has no private metadata: %w", in.Dataset, ErrNotFound)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, in.Data); err != nil {
		return DisclosureCheck{}, fmt.Errorf("disclosed copy is not JSON: %v: %w", err, ErrInvalid)
	}
	sum := sha256.Sum256(compact.Bytes())
	out := DisclosureCheck{Dataset: d.ID, Org: d.Private.Org, Collection: d.Private.Collection, RecordHash: d.Private.Hash,
		DisclosedHash: hex.EncodeToString(sum[:])}
	want := out.RecordHash
	if ch, ok := tx.State.(ChannelHashes); ok {
		h, err := ch.PrivateHash(d.Private.Collection, pfxDatasetPrivate+d.ID)
		if err != nil {
			return DisclosureCheck{}, fmt.Errorf("channel hash of %s's private metadata: %w", d.ID, err)
		}
		out.ChannelHash = hex.EncodeToString(h)
		want = out.ChannelHash
	}
	out.Match = out.DisclosedHash == want && out.RecordHash == want
	return out, nil
}

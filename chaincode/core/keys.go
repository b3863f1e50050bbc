package core

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The world state's key layout. Every key starts with a prefix naming its
// record type; ids cannot contain '/', so keys are unambiguous. Numbers are
// zero-padded to 20 digits so byte order is numeric order.
const (
	pfxAsset         = "asset/"     // asset/<id> -> Asset
	pfxAssetChange   = "assetchg/"  // assetchg/<id>/<rev> -> AssetChange
	pfxEvidence      = "evidence/"  // evidence/<asset>/<gateway>/<seq>/<kind> -> Evidence
	pfxAnchor        = "anchor/"    // anchor/<seq> -> Anchor
	pfxAnchorByEvent = "anchorev/"  // anchorev/<last event> -> seq
	keyAnchorHead    = "anchorhead" // -> seq of the head
	// A named anchor chain's keys (AnchorInput.Chain) have prefixes of
	// their own, which no range over the default chain's keys reaches.
	pfxChainAnchor        = "anchorc/"     // anchorc/<chain>/<seq> -> Anchor
	pfxChainAnchorByEvent = "anchorcev/"   // anchorcev/<chain>/<last event> -> seq
	pfxChainAnchorHead    = "anchorchead/" // anchorchead/<chain> -> seq of the head
	pfxDataset            = "dataset/"     // dataset/<id> -> Dataset
	pfxModel              = "model/"       // model/<id> -> Model
	pfxModelByAsset       = "modelasset/"  // modelasset/<asset>/<model> -> "" (training index)
	pfxAttestation        = "attest/"      // attest/<kind>/<subject>/<role>/<n> -> Attestation
	pfxPolicy             = "policy/"      // policy/<id> -> Policy
	pfxDeployment         = "deploy/"      // deploy/<id> -> Deployment
	pfxDeployByAsset      = "deployasset/" // deployasset/<asset>/<time ns>/<id> -> "" (allowed deployments)
	pfxRemediation        = "remediation/" // remediation/<id> -> Remediation
)

func pad(n uint64) string { return fmt.Sprintf("%020d", n) }

// AnchorKey is the world-state key of anchor seq of the chain: an offline
// verifier finds the anchor's bytes under it in the block that wrote it.
// The default chain "" keeps its first key layout (anchor/<seq>).
func AnchorKey(chain string, seq uint64) string {
	if chain == "" {
		return pfxAnchor + pad(seq)
	}
	return pfxChainAnchor + chain + "/" + pad(seq)
}

// anchorEventPrefix is the prefix of the chain's last-event index keys.
func anchorEventPrefix(chain string) string {
	if chain == "" {
		return pfxAnchorByEvent
	}
	return pfxChainAnchorByEvent + chain + "/"
}

func anchorHeadKey(chain string) string {
	if chain == "" {
		return keyAnchorHead
	}
	return pfxChainAnchorHead + chain
}

func checkChain(chain string) error {
	if chain != "" && !ValidID(chain) {
		return fmt.Errorf("anchor chain %q: %w", chain, ErrInvalid)
	}
	return nil
}

// prefixEnd is the exclusive upper bound of the keys starting with prefix.
// The core's keys are ASCII, so the largest rune bounds them.
func prefixEnd(prefix string) string { return prefix + string(utf8.MaxRune) }

// ValidID reports whether s may be a record id: 1 to 128 characters from
// [A-Za-z0-9._:-], starting with a letter or digit.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-' || c == ':') && i > 0:
		default:
			return false
		}
	}
	return true
}

func checkID(what, s string) error {
	if !ValidID(s) {
		return fmt.Errorf("%s id %q: %w", what, s, ErrInvalid)
	}
	return nil
}

// ValidHash reports whether s is a lowercase hex SHA-256 (64 characters).
func ValidHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func checkHash(what, s string) error {
	if !ValidHash(s) {
		return fmt.Errorf("%s %q is not a lowercase hex sha-256: %w", what, s, ErrInvalid)
	}
	return nil
}

// checkText bounds a free-text field: at most max bytes of valid UTF-8.
func checkText(what, s string, max int, required bool) error {
	switch {
	case required && s == "":
		return fmt.Errorf("%s is required: %w", what, ErrInvalid)
	case len(s) > max:
		return fmt.Errorf("%s longer than %d bytes: %w", what, max, ErrInvalid)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not utf-8: %w", what, ErrInvalid)
	}
	return nil
}

// load reads the JSON record at key into v. found is false when absent.
func load(st State, key string, v any) (found bool, err error) {
	b, err := st.Get(key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

// mustLoad is load for a record that has to exist.
func mustLoad(st State, key, what, id string, v any) error {
	found, err := load(st, key, v)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
	}
	return nil
}

// store writes v as JSON at key. encoding/json writes struct fields in
// declaration order and the records hold no maps, so the bytes are
// deterministic.
func store(st State, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := st.Put(key, b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// scan decodes every record under prefix, in key order.
func scan[T any](st State, prefix string) ([]T, error) {
	out := []T{} // an empty list encodes as [], not null
	var derr error
	err := st.Range(prefix, prefixEnd(prefix), func(key string, value []byte) bool {
		var v T
		if err := json.Unmarshal(value, &v); err != nil {
			derr = fmt.Errorf("decode %s: %w", key, err)
			return false
		}
		out = append(out, v)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("range %s: %w", prefix, err)
	}
	return out, derr
}

// getRecord reads one record by id for any valid caller.
func getRecord[T any](tx *Tx, what, prefix, id string) (T, error) {
	var v T
	if err := beginRead(tx); err != nil {
		return v, err
	}
	if err := checkID(what, id); err != nil {
		return v, err
	}
	return v, mustLoad(tx.State, prefix+id, what, id, &v)
}

// loadIndexed follows an index whose values are record ids: it loads the
// record prefix+id for each, in index order.
func loadIndexed[T any](st State, index, prefix, what string) ([]T, error) {
	ids, err := scan[string](st, index)
	if err != nil {
		return nil, err
	}
	out := make([]T, len(ids))
	for i, id := range ids {
		if err := mustLoad(st, prefix+id, what, id, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scanKeys lists the keys under prefix with the prefix cut off, in order.
func scanKeys(st State, prefix string) ([]string, error) {
	var out []string
	err := st.Range(prefix, prefixEnd(prefix), func(key string, _ []byte) bool {
		out = append(out, key[len(prefix):])
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("range %s: %w", prefix, err)
	}
	return out, nil
}

func parseUint(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }

package core

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
)

const anchorDomain = "twinchain-anchor-v1"

// AnchorHash is the hex SHA-256 that chains anchors: a domain string and
// every field but Hash and Stamp, joined by NUL bytes, times as Unix
// nanoseconds, the chain name last and only when it is not the default ""
// (so the default chain's hashes are what they always were). An offline
// verifier recomputes it from a proof bundle.
func AnchorHash(a *Anchor) string {
	b := make([]byte, 0, 256)
	b = append(b, anchorDomain...)
	b = strconv.AppendUint(append(b, 0), a.Seq, 10)
	b = append(append(b, 0), a.Root...)
	for _, n := range []uint64{a.FirstEvent, a.LastEvent} {
		b = strconv.AppendUint(append(b, 0), n, 10)
	}
	for _, t := range []int64{a.FirstTime.UnixNano(), a.LastTime.UnixNano()} {
		b = strconv.AppendInt(append(b, 0), t, 10)
	}
	for _, n := range []uint64{a.Size, a.TreeSize} {
		b = strconv.AppendUint(append(b, 0), n, 10)
	}
	b = append(append(b, 0), a.TreeRoot...)
	b = append(append(b, 0), a.Prev...)
	if a.Chain != "" {
		b = append(append(b, 0), a.Chain...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func checkAnchor(in *AnchorInput) error {
	if err := checkHash("anchor root", in.Root); err != nil {
		return err
	}
	switch {
	case in.FirstEvent == 0 || in.LastEvent < in.FirstEvent:
		return fmt.Errorf("anchor event range [%d, %d]: %w", in.FirstEvent, in.LastEvent, ErrInvalid)
	case in.Size != in.LastEvent-in.FirstEvent+1:
		return fmt.Errorf("anchor size %d for events [%d, %d]: %w", in.Size, in.FirstEvent, in.LastEvent, ErrInvalid)
	case in.FirstTime.IsZero() || in.LastTime.Before(in.FirstTime):
		return fmt.Errorf("anchor time range [%s, %s]: %w", in.FirstTime, in.LastTime, ErrInvalid)
	case (in.TreeSize == 0) != (in.TreeRoot == ""):
		return fmt.Errorf("anchor tree size and tree root go together: %w", ErrInvalid)
	case in.TreeSize != 0 && in.TreeSize < in.Size:
		return fmt.Errorf("anchor tree size %d below batch size %d: %w", in.TreeSize, in.Size, ErrInvalid)
	}
	if err := checkChain(in.Chain); err != nil {
		return err
	}
	if in.TreeRoot != "" {
		if err := checkHash("anchor tree root", in.TreeRoot); err != nil {
			return err
		}
	}
	if in.Prev != "" {
		return checkHash("anchor prev", in.Prev)
	}
	return nil
}

// sameAnchor reports whether a stored anchor is the one in.
func sameAnchor(a *Anchor, in *AnchorInput) bool {
	return a.Root == in.Root && a.FirstEvent == in.FirstEvent && a.LastEvent == in.LastEvent &&
		a.FirstTime.Equal(in.FirstTime) && a.LastTime.Equal(in.LastTime) && a.Size == in.Size &&
		a.TreeSize == in.TreeSize && a.TreeRoot == in.TreeRoot && a.Chain == in.Chain && (in.Prev == "" || in.Prev == a.Prev)
}

// SubmitAnchor appends a state anchor to its chain (in.Chain). Role: service.
//
// The batch must start right after the head's last event (no overlap, no
// gap; the first anchor may start anywhere). Submitting an anchor already on
// the chain returns it and writes nothing, so a retry is harmless; a
// different anchor for a range already covered is a conflict.
func SubmitAnchor(tx *Tx, in AnchorInput) (Anchor, error) {
	out, err := SubmitAnchors(tx, AnchorBatch{Anchors: []AnchorInput{in}})
	if err != nil {
		return Anchor{}, err
	}
	return out[0], nil
}

// MaxAnchorsPerCall bounds SubmitAnchors.
const MaxAnchorsPerCall = 1000

// AnchorBatch is SubmitAnchors' argument: consecutive anchors, oldest first.
type AnchorBatch struct {
	Anchors []AnchorInput `json:"anchors"`
}

// SubmitAnchors appends consecutive anchors in one transaction, each by
// SubmitAnchor's rules, so that a backend with a slow commit (Fabric: one
// block) carries many batches at once. Anchors already on the chain are
// returned as they are (a retry is harmless); the call writes all the new
// ones or nothing. All of them belong to one chain. Role: service.
func SubmitAnchors(tx *Tx, in AnchorBatch) ([]Anchor, error) {
	if err := begin(tx, "submit anchor", rolesAnchor); err != nil {
		return nil, err
	}
	if len(in.Anchors) == 0 || len(in.Anchors) > MaxAnchorsPerCall {
		return nil, fmt.Errorf("%d anchors in one call (1 to %d): %w", len(in.Anchors), MaxAnchorsPerCall, ErrInvalid)
	}
	chain := in.Anchors[0].Chain
	for i := range in.Anchors {
		if in.Anchors[i].Chain != chain {
			return nil, fmt.Errorf("anchors of chains %q and %q in one call: %w", chain, in.Anchors[i].Chain, ErrInvalid)
		}
	}
	if err := checkChain(chain); err != nil {
		return nil, err
	}
	// The state shows no write of this call: the chain's head is carried
	// along in memory.
	head, hasHead, err := anchorHead(tx.State, chain)
	if err != nil {
		return nil, err
	}
	out := make([]Anchor, 0, len(in.Anchors))
	var wrote bool
	for i := range in.Anchors {
		a, fresh, err := nextAnchor(tx, in.Anchors[i], &head, hasHead, wrote)
		if err != nil {
			return nil, err
		}
		if fresh {
			head, hasHead, wrote = a, true, true
		}
		out = append(out, a)
	}
	if wrote {
		return out, store(tx.State, anchorHeadKey(chain), head.Seq)
	}
	return out, nil
}

// nextAnchor checks in against the chain's head and writes it, or returns
// the committed anchor it repeats (fresh false). After a fresh anchor in
// the same call, repeats are refused: the chain only grows at its head.
func nextAnchor(tx *Tx, in AnchorInput, head *Anchor, hasHead, wrote bool) (Anchor, bool, error) {
	if err := checkAnchor(&in); err != nil {
		return Anchor{}, false, err
	}
	in.FirstTime, in.LastTime = in.FirstTime.UTC(), in.LastTime.UTC()
	if !wrote {
		if old, found, err := anchorEndingAt(tx.State, in.Chain, in.LastEvent); err != nil {
			return Anchor{}, false, err
		} else if found {
			if sameAnchor(&old, &in) {
				return old, false, nil
			}
			return Anchor{}, false, fmt.Errorf("anchor %d already covers events [%d, %d] differently: %w", old.Seq, old.FirstEvent, old.LastEvent, ErrConflict)
		}
	}
	a := Anchor{Seq: 1, AnchorInput: in}
	a.Prev = ""
	if hasHead {
		switch {
		case in.FirstEvent <= head.LastEvent:
			return Anchor{}, false, fmt.Errorf("events [%d, %d] overlap anchor %d up to event %d: %w", in.FirstEvent, in.LastEvent, head.Seq, head.LastEvent, ErrConflict)
		case in.FirstEvent != head.LastEvent+1:
			return Anchor{}, false, fmt.Errorf("events [%d, %d] leave a gap after anchor %d ending at event %d: %w", in.FirstEvent, in.LastEvent, head.Seq, head.LastEvent, ErrConflict)
		}
		a.Seq, a.Prev = head.Seq+1, head.Hash
	}
	if in.Prev != "" && in.Prev != a.Prev {
		return Anchor{}, false, fmt.Errorf("anchor prev %s is not the head %q: %w", in.Prev, a.Prev, ErrConflict)
	}
	a.Hash = AnchorHash(&a)
	a.Stamp = tx.stamp()
	if err := store(tx.State, AnchorKey(a.Chain, a.Seq), a); err != nil {
		return Anchor{}, false, err
	}
	if err := store(tx.State, anchorEventPrefix(a.Chain)+pad(a.LastEvent), a.Seq); err != nil {
		return Anchor{}, false, err
	}
	return a, true, nil
}

func anchorBySeq(st State, chain string, seq uint64) (Anchor, error) {
	var a Anchor
	what := "anchor"
	if chain != "" {
		what = "anchor of chain " + chain
	}
	return a, mustLoad(st, AnchorKey(chain, seq), what, strconv.FormatUint(seq, 10), &a)
}

func anchorHead(st State, chain string) (Anchor, bool, error) {
	var seq uint64
	found, err := load(st, anchorHeadKey(chain), &seq)
	if err != nil || !found {
		return Anchor{}, false, err
	}
	a, err := anchorBySeq(st, chain, seq)
	return a, err == nil, err
}

func anchorEndingAt(st State, chain string, last uint64) (Anchor, bool, error) {
	var seq uint64
	found, err := load(st, anchorEventPrefix(chain)+pad(last), &seq)
	if err != nil || !found {
		return Anchor{}, false, err
	}
	a, err := anchorBySeq(st, chain, seq)
	return a, err == nil, err
}

// AnchorHead returns the newest anchor of the chain ("" the default), or
// ErrNotFound before its first. Any role.
func AnchorHead(tx *Tx, chain string) (Anchor, error) {
	if err := beginRead(tx); err != nil {
		return Anchor{}, err
	}
	if err := checkChain(chain); err != nil {
		return Anchor{}, err
	}
	a, found, err := anchorHead(tx.State, chain)
	if err == nil && !found {
		err = fmt.Errorf("anchor head of chain %q: %w", chain, ErrNotFound)
	}
	return a, err
}

// GetAnchor returns the chain's anchor with sequence number seq. Any role.
func GetAnchor(tx *Tx, chain string, seq uint64) (Anchor, error) {
	if err := beginRead(tx); err != nil {
		return Anchor{}, err
	}
	if err := checkChain(chain); err != nil {
		return Anchor{}, err
	}
	return anchorBySeq(tx.State, chain, seq)
}

// AnchorForEvent returns the chain's anchor whose range covers the event
// id, or ErrNotFound if none covers it yet. Event ids are the chain's own
// (each chain anchors its own event tree). Any role.
func AnchorForEvent(tx *Tx, chain string, eventID uint64) (Anchor, error) {
	if err := beginRead(tx); err != nil {
		return Anchor{}, err
	}
	if err := checkChain(chain); err != nil {
		return Anchor{}, err
	}
	var key string
	var derr error
	var seq uint64
	pfx := anchorEventPrefix(chain)
	err := tx.State.Range(pfx+pad(eventID), prefixEnd(pfx), func(k string, v []byte) bool {
		key = k
		seq, derr = parseUint(string(v))
		return false
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return Anchor{}, fmt.Errorf("anchor for event %d: %w", eventID, err)
	}
	if key == "" {
		return Anchor{}, fmt.Errorf("no anchor covers event %d: %w", eventID, ErrNotFound)
	}
	a, err := anchorBySeq(tx.State, chain, seq)
	if err != nil {
		return Anchor{}, err
	}
	if a.FirstEvent > eventID {
		return Anchor{}, fmt.Errorf("no anchor covers event %d: %w", eventID, ErrNotFound)
	}
	return a, nil
}

package core

import (
	"strings"
	"testing"
	"time"
)

func anchorIn(first, last uint64, root string) AnchorInput {
	return AnchorInput{Root: hashOf(root), FirstEvent: first, LastEvent: last,
		FirstTime: t0.Add(time.Duration(first) * time.Second), LastTime: t0.Add(time.Duration(last) * time.Second), Size: last - first + 1}
}

func submit(l *ledger, in AnchorInput) (Anchor, error) {
	return do(l, RoleService, func(tx *Tx) (Anchor, error) { return SubmitAnchor(tx, in) })
}

func TestAnchorChain(t *testing.T) {
	l := newLedger(t)
	_, err := do(l, RoleAuditor, func(tx *Tx) (Anchor, error) { return AnchorHead(tx, "") })
	wantErr(t, "AnchorHead(empty)", err, ErrNotFound)

	a1, err := submit(l, anchorIn(1, 10, "b1"))
	wantErr(t, "SubmitAnchor(first)", err, nil)
	if a1.Seq != 1 || a1.Prev != "" || a1.Hash != AnchorHash(&a1) || a1.Stamp.By != "u-service" {
		t.Errorf("first anchor = %+v, want seq 1, no prev, hash AnchorHash", a1)
	}
	a2, err := submit(l, anchorIn(11, 20, "b2"))
	wantErr(t, "SubmitAnchor(second)", err, nil)
	if a2.Seq != 2 || a2.Prev != a1.Hash || a2.Hash != AnchorHash(&a2) {
		t.Errorf("second anchor = %+v, want seq 2 chained to %s", a2, a1.Hash)
	}
	withPrev := anchorIn(21, 25, "b3")
	withPrev.Prev = a2.Hash
	a3, err := submit(l, withPrev)
	wantErr(t, "SubmitAnchor(with the right prev)", err, nil)

	// Resubmitting any anchor already on the chain is harmless: the stored
	// one comes back and nothing is written.
	before := l.st.dump()
	for _, in := range []AnchorInput{anchorIn(1, 10, "b1"), anchorIn(11, 20, "b2"), withPrev} {
		got, err := submit(l, in)
		wantErr(t, "SubmitAnchor(again)", err, nil)
		if got.Hash != AnchorHash(&got) || got.LastEvent != in.LastEvent || got.Stamp.TxID == "" {
			t.Errorf("SubmitAnchor(again %d-%d) = %+v", in.FirstEvent, in.LastEvent, got)
		}
	}
	if l.st.dump() != before {
		t.Errorf("resubmitting anchors changed the state")
	}
	head := must(l, RoleAuditor, func(tx *Tx) (Anchor, error) { return AnchorHead(tx, "") })
	if head.Seq != 3 || head.Hash != a3.Hash {
		t.Errorf("AnchorHead = %d %s, want 3 %s", head.Seq, head.Hash, a3.Hash)
	}

	for _, tt := range []struct {
		event uint64
		seq   uint64
		want  error
	}{{1, 1, nil}, {10, 1, nil}, {11, 2, nil}, {15, 2, nil}, {25, 3, nil}, {26, 0, ErrNotFound}, {0, 0, ErrNotFound}} {
		got, err := do(l, RoleAuditor, func(tx *Tx) (Anchor, error) { return AnchorForEvent(tx, "", tt.event) })
		wantErr(t, "AnchorForEvent", err, tt.want)
		if err == nil && got.Seq != tt.seq {
			t.Errorf("AnchorForEvent(%d) = anchor %d, want %d", tt.event, got.Seq, tt.seq)
		}
	}
	got := must(l, RoleAuditor, func(tx *Tx) (Anchor, error) { return GetAnchor(tx, "", 2) })
	if got.Hash != a2.Hash {
		t.Errorf("GetAnchor(2) = %s, want %s", got.Hash, a2.Hash)
	}
	_, err = do(l, RoleAuditor, func(tx *Tx) (Anchor, error) { return GetAnchor(tx, "", 9) })
	wantErr(t, "GetAnchor(9)", err, ErrNotFound)
}

func TestAnchorRefusals(t *testing.T) {
	stale := anchorIn(26, 30, "x")
	stale.Prev = hashOf("not the head")
	tests := []struct {
		name string
		in   AnchorInput
		want error
	}{
		{"same range, other root", anchorIn(11, 20, "other"), ErrConflict},
		{"same end, other start", anchorIn(12, 20, "b2"), ErrConflict},
		{"overlaps the head", anchorIn(18, 30, "x"), ErrConflict},
		{"inside an old anchor", anchorIn(3, 5, "x"), ErrConflict},
		{"gap after the head", anchorIn(22, 30, "x"), ErrConflict},
		{"prev not the head", stale, ErrConflict},
		{"bad root", func() AnchorInput { a := anchorIn(21, 30, "x"); a.Root = "00"; return a }(), ErrInvalid},
		{"first event 0", anchorIn(0, 30, "x"), ErrInvalid},
		{"last before first", func() AnchorInput { a := anchorIn(21, 30, "x"); a.LastEvent = 20; return a }(), ErrInvalid},
		{"size wrong", func() AnchorInput { a := anchorIn(21, 30, "x"); a.Size = 9; return a }(), ErrInvalid},
		{"no time", func() AnchorInput { a := anchorIn(21, 30, "x"); a.FirstTime = time.Time{}; return a }(), ErrInvalid},
		{"time backwards", func() AnchorInput { a := anchorIn(21, 30, "x"); a.LastTime = a.FirstTime.Add(-1); return a }(), ErrInvalid},
		{"tree size without root", func() AnchorInput { a := anchorIn(21, 30, "x"); a.TreeSize = 30; return a }(), ErrInvalid},
		{"tree smaller than batch", func() AnchorInput {
			a := anchorIn(21, 30, "x")
			a.TreeSize, a.TreeRoot = 5, hashOf("t")
			return a
		}(), ErrInvalid},
		{"bad tree root", func() AnchorInput { a := anchorIn(21, 30, "x"); a.TreeSize, a.TreeRoot = 30, "t"; return a }(), ErrInvalid},
		{"bad prev", func() AnchorInput { a := anchorIn(21, 30, "x"); a.Prev = "p"; return a }(), ErrInvalid},
		{"with checkpoint", func() AnchorInput {
			a := anchorIn(21, 30, "x")
			a.TreeSize, a.TreeRoot = 30, hashOf("t")
			return a
		}(), nil},
	}
	for _, tt := range tests {
		l := newLedger(t)
		for _, in := range []AnchorInput{anchorIn(1, 10, "b1"), anchorIn(11, 20, "b2")} {
			must(l, RoleService, func(tx *Tx) (Anchor, error) { return SubmitAnchor(tx, in) })
		}
		before := l.st.dump()
		_, err := submit(l, tt.in)
		wantErr(t, "SubmitAnchor("+tt.name+")", err, tt.want)
		if err != nil && l.st.dump() != before {
			t.Errorf("SubmitAnchor(%s) refused but changed the state", tt.name)
		}
	}
	l := newLedger(t)
	first := anchorIn(5, 9, "x")
	first.Prev = hashOf("imagined")
	_, err := submit(l, first)
	wantErr(t, "SubmitAnchor(first with a prev)", err, ErrConflict)
	a, err := submit(l, anchorIn(5, 9, "x"))
	wantErr(t, "SubmitAnchor(first starting at event 5)", err, nil)
	if a.Seq != 1 {
		t.Errorf("first anchor seq = %d, want 1", a.Seq)
	}
}

// TestAnchorHashCoversEveryField changes each hashed field in turn.
func TestAnchorHashCoversEveryField(t *testing.T) {
	base := Anchor{Seq: 3, AnchorInput: anchorIn(21, 30, "x"), Stamp: Stamp{By: "svc"}}
	base.TreeSize, base.TreeRoot, base.Prev = 30, hashOf("t"), hashOf("p")
	h := AnchorHash(&base)
	edits := map[string]func(a *Anchor){
		"seq":        func(a *Anchor) { a.Seq++ },
		"root":       func(a *Anchor) { a.Root = hashOf("y") },
		"first":      func(a *Anchor) { a.FirstEvent++ },
		"last":       func(a *Anchor) { a.LastEvent++ },
		"first time": func(a *Anchor) { a.FirstTime = a.FirstTime.Add(1) },
		"last time":  func(a *Anchor) { a.LastTime = a.LastTime.Add(1) },
		"size":       func(a *Anchor) { a.Size++ },
		"tree size":  func(a *Anchor) { a.TreeSize++ },
		"tree root":  func(a *Anchor) { a.TreeRoot = hashOf("u") },
		"prev":       func(a *Anchor) { a.Prev = hashOf("q") },
		"chain":      func(a *Anchor) { a.Chain = "node-2" },
	}
	for name, edit := range edits {
		a := base
		edit(&a)
		if AnchorHash(&a) == h {
			t.Errorf("AnchorHash ignores %s", name)
		}
	}
	a := base
	a.Stamp.By = "other"
	if AnchorHash(&a) != h {
		t.Errorf("AnchorHash depends on the stamp")
	}
}

// TestNamedAnchorChains interleaves two named chains and the default one:
// each counts and links on its own, and the default chain's keys and
// hashes are the ones it always had.
func TestNamedAnchorChains(t *testing.T) {
	l := newLedger(t)
	on := func(chain string, first, last uint64, root string) AnchorInput {
		in := anchorIn(first, last, root)
		in.Chain = chain
		return in
	}
	d1, err := submit(l, anchorIn(1, 10, "d1"))
	wantErr(t, "SubmitAnchor(default 1)", err, nil)
	a1, err := submit(l, on("node-1", 1, 5, "a1"))
	wantErr(t, "SubmitAnchor(node-1 1)", err, nil)
	b1, err := submit(l, on("node-2", 1, 7, "b1"))
	wantErr(t, "SubmitAnchor(node-2 1)", err, nil)
	a2, err := submit(l, on("node-1", 6, 9, "a2"))
	wantErr(t, "SubmitAnchor(node-1 2)", err, nil)
	d2, err := submit(l, anchorIn(11, 12, "d2"))
	wantErr(t, "SubmitAnchor(default 2)", err, nil)
	for _, c := range []struct {
		name      string
		got, prev Anchor
		seq       uint64
	}{{"node-1 2", a2, a1, 2}, {"node-2 1", b1, Anchor{}, 1}, {"default 2", d2, d1, 2}} {
		if c.got.Seq != c.seq || c.got.Prev != c.prev.Hash || c.got.Hash != AnchorHash(&c.got) {
			t.Errorf("%s = seq %d prev %q, want seq %d prev %q", c.name, c.got.Seq, c.got.Prev, c.seq, c.prev.Hash)
		}
	}
	if a1.Hash == AnchorHash(&Anchor{Seq: 1, AnchorInput: anchorIn(1, 5, "a1")}) {
		t.Errorf("a named chain's anchor hashes like the default chain's")
	}
	if got := l.st.dump(); !strings.Contains(got, AnchorKey("", 2)+"=") || !strings.Contains(got, AnchorKey("node-1", 2)+"=") ||
		!strings.Contains(got, "anchorhead=2") || !strings.Contains(got, "anchorchead/node-2=1") {
		t.Errorf("state = %s, want anchor/<seq>, anchorc/node-1/<seq> and both heads", got)
	}
	if AnchorKey("", 2) != "anchor/00000000000000000002" || AnchorKey("node-1", 2) != "anchorc/node-1/00000000000000000002" {
		t.Errorf("AnchorKey = %s, %s", AnchorKey("", 2), AnchorKey("node-1", 2))
	}
	for _, tt := range []struct {
		chain string
		event uint64
		seq   uint64
		want  error
	}{{"node-1", 5, 1, nil}, {"node-1", 8, 2, nil}, {"node-1", 10, 0, ErrNotFound}, {"node-2", 7, 1, nil}, {"node-2", 8, 0, ErrNotFound},
		{"", 12, 2, nil}, {"", 13, 0, ErrNotFound}, {"node-3", 1, 0, ErrNotFound}, {"bad/chain", 1, 0, ErrInvalid}} {
		got, err := do(l, RoleAuditor, func(tx *Tx) (Anchor, error) { return AnchorForEvent(tx, tt.chain, tt.event) })
		wantErr(t, "AnchorForEvent("+tt.chain+")", err, tt.want)
		if err == nil && (got.Seq != tt.seq || got.Chain != tt.chain) {
			t.Errorf("AnchorForEvent(%q, %d) = anchor %d of %q, want %d", tt.chain, tt.event, got.Seq, got.Chain, tt.seq)
		}
	}
	head := must(l, RoleAuditor, func(tx *Tx) (Anchor, error) { return AnchorHead(tx, "node-1") })
	if head.Hash != a2.Hash {
		t.Errorf("AnchorHead(node-1) = seq %d, want 2", head.Seq)
	}
	// A repeat on its own chain is harmless; the same range on another
	// chain is that chain's business; mixed chains in one call are refused.
	if again, err := submit(l, on("node-1", 6, 9, "a2")); err != nil || again.Hash != a2.Hash {
		t.Errorf("SubmitAnchor(node-1 again) = %s, %v, want anchor 2 unchanged", again.Hash, err)
	}
	_, err = submit(l, on("node-1", 6, 9, "other"))
	wantErr(t, "SubmitAnchor(node-1, same range, other root)", err, ErrConflict)
	_, err = submit(l, on("bad chain", 1, 2, "x"))
	wantErr(t, "SubmitAnchor(bad chain name)", err, ErrInvalid)
	_, err = do(l, RoleService, func(tx *Tx) ([]Anchor, error) {
		return SubmitAnchors(tx, AnchorBatch{Anchors: []AnchorInput{on("node-1", 10, 11, "a3"), on("node-2", 8, 9, "b2")}})
	})
	wantErr(t, "SubmitAnchors(two chains)", err, ErrInvalid)
}

package proofbundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/twin"
)

var serviceKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))

type env struct {
	tree *eventtree.Tree
	led  *ledger.Client
	fl   *fileledger.Ledger
	x    *Exporter
}

func event(id uint64) twin.Event {
	t := time.Date(2026, 11, 25, 16, 0, 0, int(id), time.UTC)
	return twin.Event{ID: id, Asset: fmt.Sprintf("srv-s1-001.gpu%d", id%8), Revision: id/8 + 1, Type: twin.EventHealthChanged,
		Time: t, Recorded: t.Add(time.Millisecond), Source: twin.Source{Gateway: "gw-srv-s1-001", Seq: id},
		Changes: []twin.Change{{Field: "health.xid_count", Old: "0", New: "1"}}}
}

// anchorBatch appends events [first, last] to the tree, checkpoints the tree
// and anchors the batch, as the anchor package does.
func (e *env) anchorBatch(t *testing.T, first, last uint64) {
	t.Helper()
	anchorEvents(t, e.tree, serviceKey, e.led, first, last)
}

// anchorEvents appends events [first, last] to tree, checkpoints it under
// key and anchors the batch on led (on led's chain).
func anchorEvents(t *testing.T, tree *eventtree.Tree, key ed25519.PrivateKey, led *ledger.Client, first, last uint64) {
	t.Helper()
	var leaves [][]byte
	for id := first; id <= last; id++ {
		b, _ := json.Marshal(event(id))
		leaves = append(leaves, b)
	}
	if _, err := tree.Append(leaves...); err != nil {
		t.Fatal(err)
	}
	root, size, _ := tree.Root()
	if err := tree.AddCheckpoint(eventtree.SignCheckpoint(key, "twinchain/events", size, root, time.Unix(int64(size), 0))); err != nil {
		t.Fatal(err)
	}
	batchRoot, err := tree.RootOfRange(first-1, last)
	if err != nil {
		t.Fatal(err)
	}
	_, err = led.SubmitAnchor(ledgertest.As(core.RoleService), core.AnchorInput{Root: hex.EncodeToString(batchRoot),
		FirstEvent: first, LastEvent: last, Size: last - first + 1, FirstTime: event(first).Time, LastTime: event(last).Time,
		TreeSize: size, TreeRoot: hex.EncodeToString(root)})
	if err != nil {
		t.Fatal(err)
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tree, err := eventtree.Open(t.TempDir(), eventtree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	led, fl, err := fileledger.OpenLedger(fileledger.Options{Dir: t.TempDir(), Key: serviceKey, Org: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	e := &env{tree: tree, led: led, fl: fl}
	e.x = &Exporter{Tree: tree, Anchors: anchorsAs{led}, Blocks: fl, Key: serviceKey.Public().(ed25519.PublicKey)}
	return e
}

type anchorsAs struct{ l ledger.Ledger }

func (a anchorsAs) AnchorForEvent(ctx context.Context, id uint64) (core.Anchor, error) {
	return a.l.AnchorForEvent(ledger.WithCaller(ctx, core.Caller{ID: "exporter", Role: core.RoleAuditor}), id)
}

func TestEventBundles(t *testing.T) {
	e := newEnv(t)
	e.anchorBatch(t, 1, 10)
	e.anchorBatch(t, 11, 20)
	e.anchorBatch(t, 21, 21)
	ctx := context.Background()
	for _, id := range []uint64{1, 5, 10, 11, 17, 20, 21} {
		b, err := e.x.Event(ctx, id)
		if err != nil {
			t.Fatalf("Event(%d): %v", id, err)
		}
		// Through JSON, as a file would travel.
		data, _ := json.Marshal(b)
		r := VerifyJSON(data, serviceKey.Public().(ed25519.PublicKey))
		if !r.OK() {
			var sb strings.Builder
			r.Write(&sb)
			t.Errorf("VerifyJSON(bundle of event %d) failed:\n%s", id, sb.String())
		}
		if id < 11 && len(b.Event.AnchorConsistency) == 0 {
			t.Errorf("bundle of event %d has no anchor consistency proof, want one (anchor tree 10, checkpoint 21)", id)
		}
	}
	// Events in the tree but not anchored, and events not in the tree.
	e.tree.Append([]byte(`{"id":22}`))
	if _, err := e.x.Event(ctx, 22); !errors.Is(err, ErrPending) {
		t.Errorf("Event(22, not anchored) = %v, want ErrPending", err)
	}
	if _, err := e.x.Event(ctx, 99); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Event(99) = %v, want ErrNotFound", err)
	}
}

func TestEventBundleTamper(t *testing.T) {
	e := newEnv(t)
	e.anchorBatch(t, 1, 10)
	e.anchorBatch(t, 11, 20)
	good, err := e.x.Event(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	pub := serviceKey.Public().(ed25519.PublicKey)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{6}, 32))
	flip := func(h []byte) []byte { h = bytes.Clone(h); h[len(h)-1] ^= 1; return h }
	for _, tc := range []struct {
		name    string
		mod     func(b *Bundle)
		trusted ed25519.PublicKey
		fails   []string // the checks that must fail
	}{
		{"leaf changed", func(b *Bundle) {
			b.Event.Leaf = bytes.Replace(b.Event.Leaf, []byte(`"new":"1"`), []byte(`"new":"2"`), 1)
		}, pub, []string{"tree inclusion", "batch inclusion"}},
		{"event id", func(b *Bundle) { b.Event.EventID = 8 }, pub, []string{"event record"}},
		{"inclusion hash", func(b *Bundle) { b.Event.Inclusion[1] = flip(b.Event.Inclusion[1]) }, pub, []string{"tree inclusion"}},
		{"batch hash", func(b *Bundle) { b.Event.BatchInclusion[0] = flip(b.Event.BatchInclusion[0]) }, pub, []string{"batch inclusion"}},
		// Leaf 6's audit path is the same in trees of 19 and 20 leaves; the
		// signature binds the size.
		{"checkpoint size", func(b *Bundle) { b.Event.Checkpoint.Size = 19 }, pub, []string{"checkpoint signature"}},
		{"checkpoint root", func(b *Bundle) { b.Event.Checkpoint.Root = flip(b.Event.Checkpoint.Root) }, pub, []string{"checkpoint signature", "tree inclusion"}},
		{"anchor root", func(b *Bundle) {
			b.Event.Anchor = bytes.Replace(b.Event.Anchor, []byte(`"root":"`), []byte(`"root":"0`), 1)
		}, pub, []string{"anchor", "ledger block"}},
		{"block signature", func(b *Bundle) { b.Event.Block.Sig = flip(b.Event.Block.Sig) }, pub, []string{"ledger block"}},
		{"untrusted key", func(b *Bundle) {}, other.Public().(ed25519.PublicKey), []string{"service key"}},
		{"resigned by another key", func(b *Bundle) {
			c := &b.Event.Checkpoint
			*c = eventtree.SignCheckpoint(other, c.Origin, c.Size, c.Root, c.Time)
		}, pub, []string{"checkpoint signature"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, _ := json.Marshal(good)
			b, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			tc.mod(b)
			r := Verify(b, tc.trusted)
			if r.OK() {
				t.Fatalf("Verify(%s) passed, want failures in %v", tc.name, tc.fails)
			}
			failed := map[string]bool{}
			for _, c := range r.Failed() {
				failed[c.Name] = true
			}
			for _, f := range tc.fails {
				if !failed[f] {
					var sb strings.Builder
					r.Write(&sb)
					t.Errorf("Verify(%s): check %q passed, want it failed:\n%s", tc.name, f, sb.String())
				}
			}
		})
	}
	if r := VerifyJSON([]byte(`{"version":1,`), nil); r.OK() || r.Checks[0].Name != "parse" {
		t.Errorf("VerifyJSON(truncated) = %+v, want a failed parse check", r.Checks)
	}
}

func TestRecordBundles(t *testing.T) {
	e := newEnv(t)
	eng := ledgertest.As(core.RoleMLEngineer)
	consent := core.Consent{PolicyRef: "p", Licence: "CC0-1.0", UseScope: []string{"training"}, RetentionDays: 30}
	if _, err := e.led.RegisterDataset(eng, core.DatasetInput{ID: "ds-1", ContentHash: ledgertest.Hash("d"), Sources: []core.Source{{Kind: core.SourceSystem, Ref: "s3://x"}}, Consent: consent}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.led.AddQualityChecks(eng, core.QualityChecksInput{Dataset: "ds-1", Checks: []core.QualityCheckInput{{Name: "nulls", Value: 0, Threshold: 0.01, Compare: core.AtMost}}}); err != nil {
		t.Fatal(err)
	}
	b, err := e.x.Record(context.Background(), "dataset", "ds-1")
	if err != nil {
		t.Fatal(err)
	}
	// The bundle holds the current record, with its quality check.
	var ds core.Dataset
	if err := json.Unmarshal(b.Record.Value, &ds); err != nil || len(ds.Checks) != 1 {
		t.Errorf("record bundle value = %s, want ds-1 with its check", b.Record.Value)
	}
	pub := serviceKey.Public().(ed25519.PublicKey)
	if r := Verify(b, pub); !r.OK() {
		t.Errorf("Verify(dataset bundle) = %+v", r.Failed())
	}
	b.Record.Value = bytes.Replace(b.Record.Value, []byte(`"nulls"`), []byte(`"nuls"`), 1)
	if r := Verify(b, pub); r.OK() {
		t.Errorf("Verify(edited dataset value) passed, want a failure")
	}
	if _, err := e.x.Record(context.Background(), "dataset", "ds-none"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Record(dataset, missing) = %v, want ErrNotFound", err)
	}
	if _, err := e.x.Record(context.Background(), "alien", "x"); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("Record(alien type) = %v, want ErrInvalid", err)
	}
}

func FuzzVerifyJSON(f *testing.F) {
	f.Add([]byte(`{"version":1,"kind":"event","event":{"event_id":1}}`))
	f.Add([]byte(`{"version":1,"kind":"record","record":{"type":"dataset"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := VerifyJSON(data, nil)
		if r.OK() {
			t.Errorf("VerifyJSON(%q) passed with no valid signature", data)
		}
	})
}

// TestRecordKeys checks RecordKey against the core's key layout through a
// real ledger: a bundle exists for each record type.
func TestRecordKeys(t *testing.T) {
	e := newEnv(t)
	for _, r := range ledgertest.Records(t, e.led) {
		b, err := e.x.Record(context.Background(), r[0], r[1])
		if err != nil {
			t.Errorf("Record(%s, %s): %v", r[0], r[1], err)
			continue
		}
		raw, _ := json.Marshal(b)
		if rep := VerifyJSON(raw, serviceKey.Public().(ed25519.PublicKey)); !rep.Verified() || !strings.Contains(string(b.Record.Value), r[1]) {
			t.Errorf("Record(%s, %s) = %s, verified %v", r[0], r[1], b.Record.Value, rep.OK())
		}
	}
}

// TestAlertBundle uses the alert store's own record type, so a change of its
// JSON shape breaks this test rather than alert proofs in the field.
func TestAlertBundle(t *testing.T) {
	e := newEnv(t)
	e.anchorBatch(t, 1, 10)
	a := alert.Alert{ID: "AL-1", Type: "substitution", Asset: "srv-s1-001.gpu3", State: alert.Open, Severity: detect.Critical,
		Evidence: []alert.EvidenceRecord{
			{Summary: "uuid changed", Evidence: detect.Evidence{Events: []twin.Event{event(3), event(7)}}},
			{Summary: "again", Evidence: detect.Evidence{Events: []twin.Event{event(7)}}},
		}}
	raw, _ := json.Marshal(a)
	b, err := e.x.Alert(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Alert.Events) != 2 {
		t.Fatalf("alert bundle proves %d events, want 2 (3 and 7, once each)", len(b.Alert.Events))
	}
	pub := serviceKey.Public().(ed25519.PublicKey)
	data, _ := json.Marshal(b)
	// Its evidence verifies; its lifecycle was not recorded on the event
	// log (a record from before alerts were anchored): said so.
	if f := VerifyJSON(data, pub).Failed(); len(f) != 1 || f[0].Name != "alert lifecycle" {
		t.Errorf("VerifyJSON(alert bundle without lifecycle) failed checks = %+v, want only alert lifecycle", f)
	}
	// The alert's copy of an event changed: caught.
	a.Evidence[0].Evidence.Events[0].Note = "edited"
	b.Alert.Alert, _ = json.Marshal(a)
	r := Verify(b, pub)
	if r.OK() || r.Failed()[0].Name != "alert event 3" {
		t.Errorf("Verify(alert with an edited event) failed checks = %+v, want alert event 3", r.Failed())
	}
	// Unanchored evidence: pending.
	a.Evidence[0].Evidence.Events = []twin.Event{event(11)}
	raw, _ = json.Marshal(a)
	e.tree.Append([]byte(`{"id":11}`))
	if _, err := e.x.Alert(context.Background(), raw); !errors.Is(err, ErrPending) {
		t.Errorf("Alert(unanchored evidence) = %v, want ErrPending", err)
	}
	if _, err := e.x.Alert(context.Background(), []byte(`{"id":"AL-2","evidence":[]}`)); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Alert(no events) = %v, want ErrNotFound", err)
	}
}

// A bundle verifies by its content, not its whitespace or escapes: pretty-
// printed (json.Indent), with CRLF and tabs, or with the escapes undone
// as jq writes them, it still holds; an edit in the pretty-printed text
// still fails. On main the indented copies failed "ledger block".
func TestPrettyPrintedBundles(t *testing.T) {
	e := newEnv(t)
	e.anchorBatch(t, 1, 10)
	eng := ledgertest.As(core.RoleMLEngineer)
	consent := core.Consent{PolicyRef: "p <&> q", Licence: "CC0-1.0", UseScope: []string{"training"}, RetentionDays: 30}
	if _, err := e.led.RegisterDataset(eng, core.DatasetInput{ID: "ds-1", ContentHash: ledgertest.Hash("d"), Sources: []core.Source{{Kind: core.SourceSystem, Ref: "s3://x?a=1&b=<2>"}}, Consent: consent}); err != nil {
		t.Fatal(err)
	}
	ev, err := e.x.Event(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.x.Record(context.Background(), "dataset", "ds-1")
	if err != nil {
		t.Fatal(err)
	}
	pub := serviceKey.Public().(ed25519.PublicKey)
	for name, b := range map[string]*Bundle{"event": ev, "record": rec} {
		compact, _ := json.Marshal(b)
		if !bytes.Contains(compact, []byte(`\u0026`)) && name == "record" {
			t.Fatalf("record bundle has no escaped '&' to undo: %s", compact)
		}
		var indented bytes.Buffer
		if err := json.Indent(&indented, compact, "", "  "); err != nil {
			t.Fatal(err)
		}
		var tabs bytes.Buffer
		_ = json.Indent(&tabs, compact, "\r\n", "\t")
		jq := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(indented.String())
		for form, data := range map[string][]byte{"compact": compact, "indented": indented.Bytes(), "tabs and CRLF": tabs.Bytes(), "jq escapes": []byte(jq)} {
			if r := VerifyJSON(data, pub); !r.OK() {
				var sb strings.Builder
				r.Write(&sb)
				t.Errorf("%s bundle, %s: not verified:\n%s", name, form, sb.String())
			}
		}
		// An edit inside a signed value still fails once pretty-printed.
		edited := strings.Replace(indented.String(), `"training"`, `"marketing"`, 1)
		if name == "event" {
			edited = strings.Replace(indented.String(), `"first_event": 1`, `"first_event": 2`, 1)
		}
		if edited == indented.String() {
			t.Fatalf("%s bundle: the edit changed nothing", name)
		}
		if r := VerifyJSON([]byte(edited), pub); r.OK() {
			t.Errorf("%s bundle edited after pretty-printing verified, want a failure", name)
		}
	}
	if _, err := Canonical([]byte(`{"a":1} {"b":2}`)); err == nil {
		t.Errorf("Canonical(two values) = nil error")
	}
}

// TestRemediationStopBundle: a remediation's record bundle proves its stop
// (the GPU's signed workloads report); a stop edited in the bundle fails
// both the block check and the stop's own check.
func TestRemediationStopBundle(t *testing.T) {
	e := newEnv(t)
	ledgertest.Records(t, e.led)
	b, err := e.x.Record(context.Background(), "remediation", "rec-rem")
	if err != nil {
		t.Fatal(err)
	}
	pub := serviceKey.Public().(ed25519.PublicKey)
	rep := Verify(b, pub)
	stopOK := slices.ContainsFunc(rep.Checks, func(c Check) bool { return c.Name == "remediation stop rec-srv.gpu1" && c.OK })
	if !rep.Verified() || !stopOK {
		t.Fatalf("Verify(remediation bundle) = verified %v, stop check passed %v: %+v", rep.Verified(), stopOK, rep.Checks)
	}
	var rem core.Remediation
	if err := json.Unmarshal(b.Record.Value, &rem); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(s *core.RemediationStop){
		"asset": func(s *core.RemediationStop) { s.Asset = "rec-srv.gpu0" },
		"envelope": func(s *core.RemediationStop) {
			s.Envelope = ledgertest.StopEnvelope(t, s.Gateway, s.Seq, s.EventTime, "rec-srv", s.Asset, s.ModelHash)
		},
	} {
		c := rem
		c.Stops = slices.Clone(rem.Stops)
		edit(&c.Stops[0])
		eb := *b
		rp := *b.Record
		rp.Value, _ = json.Marshal(c)
		eb.Record = &rp
		var failed []string
		for _, f := range Verify(&eb, pub).Failed() {
			failed = append(failed, f.Name)
		}
		if !slices.Contains(failed, "ledger block") || !slices.ContainsFunc(failed, func(n string) bool { return strings.HasPrefix(n, "remediation stop ") }) {
			t.Errorf("Verify(stop %s edited) failed %v, want the ledger block and the stop", name, failed)
		}
	}
}

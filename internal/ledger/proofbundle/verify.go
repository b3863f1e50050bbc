package proofbundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/protobuf/proto"

	"twinchain/chaincode/core"
	"twinchain/internal/detect/alert"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/twin"
)

// Check is one step of a verification. Unproven marks a value the
// bundle shows but does not prove (OK is true: nothing contradicts it).
type Check struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Unproven bool   `json:"unproven,omitempty"`
	Detail   string `json:"detail"`
}

// Report is every check Verify made, in order.
type Report struct {
	Subject string  `json:"subject"`
	Checks  []Check `json:"checks"`
	// Key is the service key the signatures were checked against, and
	// KeyTrusted whether the caller pinned it. A bundle that checks under
	// its own key only shows it is consistent: anyone can make such a
	// bundle with a key of their own.
	Key        eventtree.Hash `json:"key"`
	KeyTrusted bool           `json:"key_trusted"`
}

// Verified reports whether every check passed under a pinned key.
func (r *Report) Verified() bool { return r.OK() && r.KeyTrusted }

// OK reports whether every check passed (consistent; see Verified).
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

// Failed lists the failed checks.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Unproven lists the checks of values the bundle shows but does not prove.
func (r *Report) Unproven() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.OK && c.Unproven {
			out = append(out, c)
		}
	}
	return out
}

// Write prints the report, one line per check: ok, FAIL, or n/p for a
// value shown but not proven.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "%s\n", r.Subject)
	for _, c := range r.Checks {
		mark := "ok  "
		switch {
		case !c.OK:
			mark = "FAIL"
		case c.Unproven:
			mark = "n/p "
		}
		fmt.Fprintf(w, "  %s %-22s %s\n", mark, c.Name, c.Detail)
	}
	switch {
	case !r.OK():
		fmt.Fprintf(w, "NOT VERIFIED: %d check(s) failed\n", len(r.Failed()))
	case r.KeyTrusted && len(r.Unproven()) > 0:
		fmt.Fprintf(w, "VERIFIED, except %d value(s) marked n/p: shown, but not proven by this bundle\n", len(r.Unproven()))
	case r.KeyTrusted:
		fmt.Fprintln(w, "VERIFIED")
	default:
		fmt.Fprintf(w, "CONSISTENT, BUT THE KEY IS NOT TRUSTED: it checks under key %s, which was not pinned; anyone can sign a bundle with a key of their own. Pass the service's key (-key HEX) to verify.\n", r.Key)
	}
}

// unproven records a value shown but not proven.
func (r *Report) unproven(name, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Unproven: true, Detail: detail})
}

func (r *Report) add(name string, err error, okDetail string) bool {
	if err != nil {
		r.Checks = append(r.Checks, Check{Name: name, Detail: err.Error()})
		return false
	}
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Detail: okDetail})
	return true
}

// Verify checks a bundle offline. With a trusted key, the bundle's service
// key must be it; without one, the bundle's own key is used and the report
// says so. A bundle whose ledger blocks another key signs (LedgerKey) is
// trusted only through VerifyKeys.
func Verify(b *Bundle, trusted ed25519.PublicKey) *Report { return VerifyKeys(b, trusted, nil) }

// VerifyKeys is Verify with a second pinned key, trustedLedger, for the
// ledger key of a bundle whose blocks another node's key signs
// (Bundle.LedgerKey). The report's key is trusted when the service key is
// pinned and so is the ledger key, where the bundle has one of its own.
func VerifyKeys(b *Bundle, trusted, trustedLedger ed25519.PublicKey) *Report {
	r := &Report{}
	key := ed25519.PublicKey(b.ServiceKey)
	r.KeyTrusted = pinKey(r, "service key", "service_key", "the service's key", key, trusted)
	r.Key = eventtree.Hash(key)
	blockKey := key
	if len(b.LedgerKey) > 0 && !bytes.Equal(b.LedgerKey, b.ServiceKey) {
		blockKey = ed25519.PublicKey(b.LedgerKey)
		r.KeyTrusted = pinKey(r, "ledger key", "ledger_key", "the ledger node's key", blockKey, trustedLedger) && r.KeyTrusted
	}
	switch {
	case b.Kind == KindEvent && b.Event != nil:
		verifyEvent(r, b.Event, key, blockKey)
	case b.Kind == KindRecord && b.Record != nil:
		verifyRecord(r, b.Record, blockKey)
	case b.Kind == KindAlert && b.Alert != nil:
		verifyAlert(r, b.Alert, key, blockKey)
	default:
		r.Subject = "proof bundle"
		r.add("kind", fmt.Errorf("kind %q without its proof", b.Kind), "")
	}
	return r
}

// pinKey checks a bundle's key against the pinned one (nil: none pinned)
// and reports whether it is trusted.
func pinKey(r *Report, name, field, whose string, key, trusted ed25519.PublicKey) bool {
	switch {
	case len(key) != ed25519.PublicKeySize:
		r.add(name, fmt.Errorf("%s has %d bytes, want %d", field, len(key), ed25519.PublicKeySize), "")
	case trusted != nil && !bytes.Equal(trusted, key):
		r.add(name, fmt.Errorf("bundle is signed by %x, not the trusted key %x", []byte(key), []byte(trusted)), "")
	case trusted != nil:
		r.add(name, nil, fmt.Sprintf("%x (pinned)", []byte(key)))
		return true
	default:
		r.add(name, nil, fmt.Sprintf("%x (taken from the bundle, NOT TRUSTED: pass %s to pin it)", []byte(key), whose))
	}
	return false
}

var hasher = rfc6962.DefaultHasher

// verifyEvent checks an event proof: key signs its checkpoint, blockKey
// the embedded ledger block that wrote its anchor.
func verifyEvent(r *Report, p *EventProof, key, blockKey ed25519.PublicKey) {
	r.Subject = fmt.Sprintf("twin event %d", p.EventID)
	leafHash := hasher.HashLeaf(p.Leaf)
	var ev twin.Event
	err := json.Unmarshal(p.Leaf, &ev)
	if err == nil && (ev.ID != p.EventID || p.LeafIndex != p.EventID-1) {
		err = fmt.Errorf("leaf is event %d at index %d, bundle says event %d", ev.ID, p.LeafIndex, p.EventID)
	}
	if err == nil {
		r.Subject = fmt.Sprintf("twin event %d: %s %s revision %d at %s", ev.ID, ev.Asset, ev.Type, ev.Revision, ev.Time.Format("2006-01-02T15:04:05.999Z07:00"))
	}
	r.add("event record", err, fmt.Sprintf("leaf hash %x", leafHash))

	cp := &p.Checkpoint
	r.add("checkpoint signature", eventtree.VerifyCheckpoint(cp, key), fmt.Sprintf("tree size %d root %s at %s", cp.Size, cp.Root, cp.Time.Format("2006-01-02T15:04:05Z07:00")))
	r.add("tree inclusion", proof.VerifyInclusion(hasher, p.LeafIndex, cp.Size, leafHash, unhex(p.Inclusion), cp.Root),
		fmt.Sprintf("leaf %d of %d, %d proof hashes", p.LeafIndex, cp.Size, len(p.Inclusion)))

	var a core.Anchor
	if err := json.Unmarshal(p.Anchor, &a); err != nil {
		r.add("anchor", fmt.Errorf("anchor record: %w", err), "")
		return
	}
	err = nil
	switch {
	case core.AnchorHash(&a) != a.Hash:
		err = fmt.Errorf("anchor %d: hash %s does not match its fields (%s)", a.Seq, a.Hash, core.AnchorHash(&a))
	case p.EventID < a.FirstEvent || p.EventID > a.LastEvent:
		err = fmt.Errorf("anchor %d covers events %d..%d, not %d", a.Seq, a.FirstEvent, a.LastEvent, p.EventID)
	case a.Size != a.LastEvent-a.FirstEvent+1 || p.BatchIndex != p.EventID-a.FirstEvent:
		err = fmt.Errorf("anchor %d: size %d or batch index %d do not fit events %d..%d", a.Seq, a.Size, p.BatchIndex, a.FirstEvent, a.LastEvent)
	}
	r.add("anchor", err, fmt.Sprintf("anchor %d%s covers events %d..%d, prev %s", a.Seq, chainNote(a.Chain), a.FirstEvent, a.LastEvent, short(a.Prev)))
	root, rerr := eventtree.ParseHex(a.Root)
	if rerr == nil {
		rerr = proof.VerifyInclusion(hasher, p.BatchIndex, a.Size, leafHash, unhex(p.BatchInclusion), root)
	}
	r.add("batch inclusion", rerr, fmt.Sprintf("leaf %d of the %d-event batch, root %s", p.BatchIndex, a.Size, short(a.Root)))
	switch {
	case a.TreeSize == 0:
		r.add("anchor tree", fmt.Errorf("anchor %d carries no tree size and root", a.Seq), "")
	case a.TreeSize == cp.Size:
		var err error
		if a.TreeRoot != cp.Root.String() {
			err = fmt.Errorf("anchor tree root %s is not the checkpoint root %s", a.TreeRoot, cp.Root)
		}
		r.add("anchor tree", err, "anchor's tree is the checkpoint's tree")
	default:
		troot, err := eventtree.ParseHex(a.TreeRoot)
		if err == nil {
			err = proof.VerifyConsistency(hasher, a.TreeSize, cp.Size, unhex(p.AnchorConsistency), troot, cp.Root)
		}
		r.add("anchor tree", err, fmt.Sprintf("tree of %d at the anchor is a prefix of the checkpoint's %d", a.TreeSize, cp.Size))
	}
	if p.Block == nil && p.Fabric != nil {
		var err error
		if p.Fabric.TxID != a.Stamp.TxID {
			err = fmt.Errorf("the bundle's Fabric transaction %s is not the anchor's %s", p.Fabric.TxID, a.Stamp.TxID)
		}
		r.add("fabric transaction", err, fmt.Sprintf("anchor %d committed in transaction %s, block %d of channel %s (on a peer: peer channel fetch %d)",
			a.Seq, short(p.Fabric.TxID), p.Fabric.Block, p.Fabric.Channel, p.Fabric.Block))
		if len(p.FabricBlock) > 0 {
			err := CheckFabricBlock(p.FabricBlock, p.Fabric.Block, p.Fabric.TxID, p.Fabric.Chaincode, core.AnchorKey(a.Chain, a.Seq), p.Anchor)
			r.add("fabric block", err, fmt.Sprintf("block %d's data hash holds its transactions; %s, marked valid, writes anchor %d", p.Fabric.Block, short(p.Fabric.TxID), a.Seq))
			verifyEndorsements(r, p.FabricBlock, p.FabricConfig, p.Fabric.TxID)
		}
		return
	}
	if p.Block == nil {
		r.Checks = append(r.Checks, Check{Name: "ledger block", OK: true, Detail: "none in the bundle (Fabric ledger): the anchor is checked by its hash chain only"})
		return
	}
	body, err := fileledger.CheckBlock(p.Block, blockKey)
	if err == nil && !writeHolds(&body, core.AnchorKey(a.Chain, a.Seq), p.Anchor) {
		err = fmt.Errorf("block %d does not write this anchor", body.Height)
	}
	signer := "the service key"
	if !bytes.Equal(blockKey, key) {
		signer = "the ledger key"
	}
	r.add("ledger block", err, fmt.Sprintf("block %d signed by %s writes anchor %d%s", body.Height, signer, a.Seq, chainNote(a.Chain)))
}

// chainNote names an anchor's chain in a report; the default chain is
// not named.
func chainNote(chain string) string {
	if chain == "" {
		return ""
	}
	return " of chain " + chain
}

func verifyAlert(r *Report, p *AlertProof, key, blockKey ed25519.PublicKey) {
	a, events, err := parseAlert(p.Alert)
	r.Subject = fmt.Sprintf("alert %s", a.ID)
	if err == nil && len(events) == 0 && len(a.Lifecycle) == 0 {
		err = fmt.Errorf("the alert carries no twin events to prove")
	}
	r.add("alert record", err, fmt.Sprintf("%d twin events in its evidence, %d lifecycle steps", len(events), len(a.Lifecycle)))
	proven := map[uint64]twin.Event{}
	for i := range p.Events {
		ep := &p.Events[i]
		sub := &Report{}
		verifyEvent(sub, ep, key, blockKey)
		for _, c := range sub.Checks {
			c.Name = fmt.Sprintf("event %d %s", ep.EventID, c.Name)
			r.Checks = append(r.Checks, c)
		}
		var le twin.Event
		if sub.OK() && json.Unmarshal(ep.Leaf, &le) == nil {
			proven[ep.EventID] = le
		}
	}
	for _, e := range events {
		want, _ := json.Marshal(e)
		var err error
		le, ok := proven[e.ID]
		if !ok {
			err = fmt.Errorf("no valid proof in the bundle")
		} else if got, _ := json.Marshal(le); !bytes.Equal(got, want) {
			err = fmt.Errorf("the alert's copy differs from the anchored event")
		}
		r.add(fmt.Sprintf("alert event %d", e.ID), err, "the alert's evidence is the anchored event")
	}
	verifyLifecycle(r, &a, proven)
}

// verifyLifecycle checks the alert's lifecycle steps against their proven
// twin events, and every field an analyst reads against the facts the last
// step anchored: equal, proven; changed the way findings merged since can
// change it, shown as not proven; any other change, a failure.
func verifyLifecycle(r *Report, a *alert.Alert, proven map[uint64]twin.Event) {
	if len(a.Lifecycle) == 0 {
		r.add("alert lifecycle", fmt.Errorf("the alert record names no lifecycle events: its state and evidence are not anchored"), "")
		return
	}
	var lastTime time.Time
	for i := range a.Lifecycle {
		l := &a.Lifecycle[i]
		name := fmt.Sprintf("alert %s", l.Step)
		le, ok := proven[l.Event]
		var err error
		switch {
		case l.Event == 0:
			err = fmt.Errorf("not recorded on the event log: %s", l.Error)
		case !ok:
			err = fmt.Errorf("event %d: no valid proof in the bundle", l.Event)
		case le.Asset != a.Asset || le.Type != l.Step.EventType():
			err = fmt.Errorf("event %d is %s on %s, want %s on %s", l.Event, le.Type, le.Asset, l.Step.EventType(), a.Asset)
		case le.Note != alert.LifecycleNote(a.ID, a.Type, l):
			err = fmt.Errorf("event %d note %q does not match the alert record (%q)", l.Event, le.Note, alert.LifecycleNote(a.ID, a.Type, l))
		case l.Facts != nil && (l.Facts.Severity != l.Severity || l.Facts.Count != l.Count || l.Facts.EvidenceHash != l.EvidenceHash || !stepAgrees(l)):
			err = fmt.Errorf("step %d's facts do not agree with its severity, count, evidence or step", i)
		}
		r.add(name, err, fmt.Sprintf("anchored event %d: %s", l.Event, le.Note))
		lastTime = le.Time
	}
	last := &a.Lifecycle[len(a.Lifecycle)-1]
	var err error
	if st, ok := lastState(a.Lifecycle); st != a.State || !ok {
		err = fmt.Errorf("the alert is %s but its last anchored step is %s", a.State, last.Step)
	}
	switch {
	case err != nil:
		r.add("alert state", err, "")
	case a.State == alert.Resolved:
		r.add("alert state", nil, "resolved, its last anchored step: final, nothing changes it")
	default:
		r.add("alert state", nil, fmt.Sprintf("%s as of its last anchored step (event %d, %s)", a.State, last.Event, lastTime.Format(time.RFC3339)))
		r.unproven("alert state now", fmt.Sprintf("still %s after %s? A later acknowledgement or resolution is a later event on %s that this bundle does not show: ask for a new bundle", a.State, lastTime.Format(time.RFC3339), a.Asset))
	}
	err, detail := nil, fmt.Sprintf("evidence hashes to %s as anchored at step %s", last.EvidenceHash, last.Step)
	switch h := alert.EvidenceHash(a.Evidence); {
	case a.Count < last.Count || (a.Count == last.Count || a.State == alert.Resolved) && h != last.EvidenceHash:
		err = fmt.Errorf("the alert's evidence (count %d, %s) is not what was anchored at step %s (count %d, %s)", a.Count, h, last.Step, last.Count, last.EvidenceHash)
	case a.Count > last.Count:
		detail = fmt.Sprintf("%d findings merged since step %s: their twin events are proven above, the evidence hash is anchored at the next step", a.Count-last.Count, last.Step)
	}
	r.add("alert evidence", err, detail)
	verifyFacts(r, a, last)
}

// stepAgrees reports whether step l's facts hold the state it moved to
// (a state step) or a state an alert can be assigned or commented in.
func stepAgrees(l *alert.LifecycleEvent) bool {
	if st, ok := l.Step.State(); ok {
		return l.Facts.State == st
	}
	return (l.Step == alert.StepAssigned || l.Step == alert.StepCommented) && (l.Facts.State == alert.Open || l.Facts.State == alert.Acknowledged)
}

// lastState is the state the steps leave an alert in: that of the last
// state step, whose assigned and commented steps since (which change no
// state) must agree with it.
func lastState(steps []alert.LifecycleEvent) (alert.State, bool) {
	var st alert.State
	for i := range steps {
		if s, ok := steps[i].Step.State(); ok {
			st = s
		} else if steps[i].Facts != nil && steps[i].Facts.State != st {
			return st, false
		}
	}
	return st, st != ""
}

// verifyFacts compares the alert's fields with the facts its last step
// anchored.
func verifyFacts(r *Report, a *alert.Alert, last *alert.LifecycleEvent) {
	if last.Facts == nil {
		r.unproven("alert fields", "the steps were recorded before they carried the alert's fields: site, severity, summary, count, times, history, comments and response are shown, not proven")
		return
	}
	now, then := alert.FactsOf(a), last.Facts
	merging := a.State != alert.Resolved // findings still merge into it
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	var proven []string
	for _, f := range []struct {
		name     string
		now, was any
		// may says whether a change since the step is one that merges,
		// escalations or an automated response make without a step.
		may bool
	}{
		{"site", now.Site, then.Site, false},
		{"assignee", now.Assignee, then.Assignee, false},
		{"first_seen", now.FirstSeen, then.FirstSeen, false},
		{"opened", now.Opened, then.Opened, false},
		{"history", now.History, then.History, false},
		{"severity", now.Severity, then.Severity, merging && now.Severity >= then.Severity},
		{"summary", now.Summary, then.Summary, merging && now.Severity > then.Severity},
		{"count", now.Count, then.Count, merging && now.Count > then.Count},
		{"last_seen", now.LastSeen, then.LastSeen, merging && now.LastSeen.After(then.LastSeen)},
		{"response", now.Response, then.Response, merging && then.Response == ""},
		{"escalations", now.Escalations, then.Escalations, merging && now.Escalations > then.Escalations},
	} {
		a, b := js(f.now), js(f.was)
		switch {
		case a == b:
			proven = append(proven, f.name)
		case f.may:
			r.unproven("alert "+f.name, fmt.Sprintf("%s now; %s as anchored at step %s: changed since, not proven", a, b, last.Step))
		default:
			r.add("alert "+f.name, fmt.Errorf("%s is not %s, as anchored at step %s", a, b, last.Step), "")
		}
	}
	r.add("alert fields", nil, fmt.Sprintf("%s as anchored at step %s (history with who, when and comments)", strings.Join(proven, ", "), last.Step))
}

func verifyRecord(r *Report, p *RecordProof, key ed25519.PublicKey) {
	r.Subject = fmt.Sprintf("ledger %s %s", p.Type, p.ID)
	var err error
	if want := RecordKey(p.Type, p.ID); want == "" || want != p.Key {
		err = fmt.Errorf("key %q is not the key of %s %q (%q)", p.Key, p.Type, p.ID, want)
	} else if !json.Valid(p.Value) {
		err = fmt.Errorf("record value is not JSON")
	}
	r.add("record", err, p.Key)
	if err == nil && p.Type == "remediation" {
		verifyStops(r, p.Value)
	}
	switch {
	case p.Block != nil:
		body, err := fileledger.CheckBlock(p.Block, key)
		if err == nil && !writeHolds(&body, p.Key, p.Value) {
			err = fmt.Errorf("block %d does not write this value at %s", body.Height, p.Key)
		}
		r.add("ledger block", err, fmt.Sprintf("block %d signed by the service key writes it", body.Height))
	case p.Fabric != nil:
		err := CheckFabricBlock(p.FabricBlock, p.Fabric.Block, p.Fabric.TxID, p.Fabric.Chaincode, p.Key, p.Value)
		r.add("fabric block", err, fmt.Sprintf("block %d of channel %s: its data hash holds its transactions; %s, marked valid, writes this value (on a peer: peer channel fetch %d)",
			p.Fabric.Block, p.Fabric.Channel, short(p.Fabric.TxID), p.Fabric.Block))
		verifyEndorsements(r, p.FabricBlock, p.FabricConfig, p.Fabric.TxID)
	default:
		r.add("ledger block", errors.New("the bundle has no block that writes the record"), "")
	}
}

// verifyStops checks each stop a remediation record holds on its own: the
// gateway-signed workloads message it rests on hashes as recorded,
// verifies under the gateway key recorded with it, and shows the GPU
// without the paused model (core.CheckRemediationStop).
func verifyStops(r *Report, value []byte) {
	var rem core.Remediation
	if err := json.Unmarshal(value, &rem); err != nil {
		r.add("remediation stops", fmt.Errorf("remediation record: %w", err), "")
		return
	}
	for i := range rem.Stops {
		s := &rem.Stops[i]
		r.add("remediation stop "+s.Asset, core.CheckRemediationStop(s),
			fmt.Sprintf("workloads %s/%d at %s, signed by the gateway's key %s as on the ledger, shows no sha256:%s on %s",
				s.Gateway, s.Seq, s.EventTime.Format(time.RFC3339), short(s.GatewayKey), short(s.ModelHash), s.Asset))
	}
}

// verifyEndorsements checks a Fabric transaction's endorsements against
// the org CAs of the channel config block in the bundle; a bundle without
// one shows them as not proven.
func verifyEndorsements(r *Report, block, cfg []byte, txID string) {
	if len(cfg) == 0 {
		r.unproven("fabric endorsements", "no channel config block in the bundle: endorsements not checked")
		return
	}
	err := func() error {
		want, err := LastConfigIndex(block)
		if err != nil {
			return err
		}
		var c common.Block
		if err := proto.Unmarshal(cfg, &c); err != nil || c.GetHeader().GetNumber() != want {
			return fmt.Errorf("the config block in the bundle is not block %d, the one the transaction's block names (%v)", want, err)
		}
		return nil
	}()
	var msps []string
	if err == nil {
		msps, err = CheckEndorsements(block, cfg, txID)
	}
	orgs, _ := ChannelOrgs(cfg)
	r.add("fabric endorsements", err, fmt.Sprintf("endorsed by %s, each signature valid under a certificate of its org's CA in the channel config (CA sha-256:%s)",
		strings.Join(msps, ", "), CAFingerprints(orgs)))
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	if h == "" {
		return "(none)"
	}
	return h
}

// VerifyJSON parses and verifies bundle bytes; a bundle that does not parse
// gives a report with that one failed check.
func VerifyJSON(data []byte, trusted ed25519.PublicKey) *Report {
	b, err := Parse(data)
	if err != nil {
		r := &Report{Subject: "proof bundle"}
		r.add("parse", err, "")
		return r
	}
	return Verify(b, trusted)
}

// ParseKey reads a hex Ed25519 public key.
func ParseKey(s string) (ed25519.PublicKey, error) {
	b, err := eventtree.ParseHex(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key: want %d bytes of hex", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

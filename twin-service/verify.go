package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"twinchain/chaincode/core"
	"twinchain/internal/cli"
	"twinchain/internal/ledger/anchor"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/ledger/signkey"
	"twinchain/internal/registry"
	"twinchain/internal/twinstore"
)

// verify's exit statuses besides 0 (verified under a pinned key).
const (
	exitDamaged   = cli.StatusFailed // a check failed: tampering or damage
	exitUsage     = cli.StatusUsage
	exitUntrusted = 3 // everything is consistent, but under a key nobody pinned
)

// exitError carries the process's exit status (internal/cli).
type exitError = cli.ExitError

// runVerify is `twin-service verify [-key HEX | -key-file F] [-ledger-key HEX] [-json] PATH`:
// PATH is a proof bundle (or - for stdin), checked offline with no server;
// a ledger directory ({data}/ledger), whose blocks, state, event tree,
// checkpoints and anchors are checked for tampering; or a data directory,
// whose store is scrubbed and whose ledger is checked.
//
// Signatures prove something only under a key the checker trusts: the
// service's public key, pinned with -key (or TWINCHAIN_VERIFY_KEY, or
// -key-file with a copy of the service key). Without one, verify checks
// everything under the key the data names and answers "consistent, but the
// key is not trusted" with exit status 3: anyone can forge a consistent
// bundle or ledger with a key of their own. A scale-out node's bundle whose
// anchor another node's ledger holds names that ledger's key (ledger_key):
// it is trusted only with -ledger-key pinned too.
func runVerify(_ context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("twin-service verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyHex := fs.String("key", "", "the service's public key (hex) to trust (env TWINCHAIN_VERIFY_KEY; the service logs it and writes it to {data}/service.pub)")
	keyFile := fs.String("key-file", "", "a copy of the service key file (its private seed; the public key is derived)")
	ledgerKeyHex := fs.String("ledger-key", "", "the ledger node's public key (hex) to trust, for a bundle of a node that anchors into another node's ledger (its ledger_key)")
	asJSON := fs.Bool("json", false, "print a bundle's report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: twin-service verify [-key HEX | -key-file FILE] [-ledger-key HEX] [-json] BUNDLE.json|-|LEDGER_DIR|DATA_DIR\n\nChecks a proof bundle offline, a ledger directory for tampering, or a data directory's store and ledger.\nExit status: 0 verified under the pinned key; 1 a check failed; 2 usage; 3 consistent, but no key was pinned.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError(errors.New("verify: want one bundle file, ledger directory or data directory"))
	}
	pub, err := pinnedKey(*keyHex, *keyFile, getenv)
	if err != nil {
		return usageError(err)
	}
	path := fs.Arg(0)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "twins.db")); err == nil {
			return verifyDataDir(path, pub, stdout)
		}
		return verdict(path, verifyLedgerDir(path, pub, stdout), pub != nil, stdout)
	}
	var data []byte
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return err
	}
	var ledgerPub ed25519.PublicKey
	if *ledgerKeyHex != "" {
		if ledgerPub, err = proofbundle.ParseKey(*ledgerKeyHex); err != nil {
			return usageError(fmt.Errorf("-ledger-key: %w", err))
		}
	}
	var rep *proofbundle.Report
	if b, perr := proofbundle.Parse(data); perr == nil {
		rep = proofbundle.VerifyKeys(b, pub, ledgerPub)
	} else {
		rep = proofbundle.VerifyJSON(data, pub) // reports the parse error
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"ok": rep.OK(), "verified": rep.Verified(), "key_trusted": rep.KeyTrusted, "report": rep}); err != nil {
			return err
		}
	} else {
		rep.Write(stdout)
	}
	switch {
	case !rep.OK():
		return &exitError{Code: exitDamaged, Err: fmt.Errorf("verify %s: %d check(s) failed", path, len(rep.Failed()))}
	case !rep.KeyTrusted:
		return &exitError{Code: exitUntrusted, Err: fmt.Errorf("verify %s: consistent, but under key %s, which was not pinned (-key)", path, rep.Key)}
	}
	return nil
}

// pinnedKey is the key the caller trusts: -key, -key-file or
// TWINCHAIN_VERIFY_KEY; nil when none was given.
func pinnedKey(keyHex, keyFile string, getenv func(string) string) (ed25519.PublicKey, error) {
	if keyHex == "" && keyFile == "" && getenv != nil {
		keyHex = getenv("TWINCHAIN_VERIFY_KEY")
	}
	switch {
	case keyHex != "" && keyFile != "":
		return nil, errors.New("verify: pass -key or -key-file, not both")
	case keyHex != "":
		return proofbundle.ParseKey(keyHex)
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, err
		}
		k, err := signkey.Parse(b)
		if err != nil {
			return nil, err
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	return nil, nil
}

// dirReport prints a directory check: ok, note and FAIL lines.
type dirReport struct {
	w      io.Writer
	failed int
	key    ed25519.PublicKey // the key the data is signed by, when not pinned
}

func (r *dirReport) ok(format string, a ...any)   { fmt.Fprintf(r.w, "ok   "+format+"\n", a...) }
func (r *dirReport) note(format string, a ...any) { fmt.Fprintf(r.w, "note "+format+"\n", a...) }
func (r *dirReport) fail(format string, a ...any) {
	r.failed++
	fmt.Fprintf(r.w, "FAIL "+format+"\n", a...)
}

// verdict prints the last line and turns a report into verify's result.
func verdict(path string, r *dirReport, pinned bool, stdout io.Writer) error {
	switch {
	case r.failed > 0:
		fmt.Fprintf(stdout, "NOT VERIFIED: %d check(s) failed\n", r.failed)
		return &exitError{Code: exitDamaged, Err: fmt.Errorf("verify %s: tampering or damage found", path)}
	case !pinned && r.key != nil:
		fmt.Fprintf(stdout, "CONSISTENT, BUT THE KEY IS NOT TRUSTED: everything checks under key %x, which was not pinned; anyone who can write the files can sign with a key of their own. Pass the service's key (-key HEX) to verify.\n", []byte(r.key))
		return &exitError{Code: exitUntrusted, Err: fmt.Errorf("verify %s: consistent, but under a key that was not pinned (-key)", path)}
	}
	fmt.Fprintln(stdout, "VERIFIED")
	return nil
}

// verifyLedgerDir checks a stored ledger as it lies on disk, changing
// nothing: every byte of blocks.dat, the state the blocks make, every leaf,
// node and checkpoint of the event tree, and every anchor against the tree.
// Without a pinned key it checks under the key block 1 (or, on Fabric, the
// first checkpoint) names, never a key file found beside the ledger.
func verifyLedgerDir(dir string, pub ed25519.PublicKey, stdout io.Writer) *dirReport {
	r := &dirReport{w: stdout}
	var eng *fileledger.Engine
	if _, err := os.Stat(filepath.Join(dir, "blocks", "blocks.dat")); err == nil {
		if e, err := fileledger.OpenVerifier(filepath.Join(dir, "blocks"), pub); err != nil {
			r.fail("blocks: %v", err)
		} else {
			eng = e
			defer func() { _ = eng.Close() }() // read-only: nothing to flush
			if pub == nil {
				pub = eng.PublicKey()
				r.key = pub
			}
			if err := eng.Verify(); err != nil {
				r.fail("blocks: %v", err)
			} else {
				r.ok("blocks: %d blocks: every byte of blocks.dat, hashes, signatures, links and state.db check", eng.Height())
			}
			for _, n := range eng.Notes() {
				r.note("blocks: %s", n)
			}
		}
	} else {
		r.note("no blocks.dat (the Fabric ledger, or none yet): blocks not checked")
	}
	tree, err := eventtree.OpenReadOnly(filepath.Join(dir, "events"), eventtree.Options{})
	if err != nil {
		r.fail("event tree: %v", err)
		return r
	}
	defer func() { _ = tree.Close() }() // read-only: nothing to flush
	if pub == nil {
		if cps, err := tree.Checkpoints(); err == nil && len(cps) > 0 {
			pub = ed25519.PublicKey(cps[0].Key)
			r.key = pub
		}
	}
	for _, n := range tree.Notes() {
		r.note("event tree: %s", n)
	}
	if pub == nil {
		r.note("event tree: no checkpoint and no key: nothing signed to check")
	} else if err := tree.VerifyAll(pub); err != nil {
		r.fail("event tree: %v", err)
	} else {
		cps, _ := tree.Checkpoints()
		r.ok("event tree: %d committed events, every leaf, node and %d checkpoints check under key %s", tree.Size(), len(cps), hex.EncodeToString(pub)[:16]+"…")
	}
	if eng != nil {
		if n, err := eng.CheckAnchors(tree.RootAt); err != nil {
			r.fail("anchors: %v", err)
		} else {
			r.ok("anchors: %d anchors on the ledger match the event tree", n)
		}
	} else if fab, err := os.ReadFile(filepath.Join(dir, fabricMarker)); err == nil {
		verifyFabricAnchors(dir, fab, tree, r)
	}
	return r
}

// verifyFabricAnchors checks, offline, the anchors the Fabric ledger
// accepted as the service recorded its answers (anchor.db): each one's hash
// against its fields, the chain of prev hashes, its batch root and tree
// root against the event tree. The blocks themselves are on the peers.
func verifyFabricAnchors(dir string, marker []byte, tree *eventtree.Tree, r *dirReport) {
	var m fabricInfo
	if err := json.Unmarshal(marker, &m); err != nil {
		r.fail("%s: %v", fabricMarker, err)
		return
	}
	r.note("Fabric ledger (channel %s, chaincode %s, %s): its blocks are on the peers; checking the anchors it accepted, as recorded in anchor.db", m.Channel, m.Chaincode, m.MSPID)
	ancs, err := anchor.Recorded(filepath.Join(dir, "anchor.db"))
	if err != nil {
		r.fail("anchors: %v", err)
		return
	}
	var prev *core.Anchor
	for i := range ancs {
		a := &ancs[i]
		var bad string
		switch {
		case core.AnchorHash(a) != a.Hash:
			bad = "its hash does not match its fields"
		case prev != nil && prev.Seq+1 == a.Seq && a.Prev != prev.Hash:
			bad = fmt.Sprintf("its prev %s is not anchor %d's hash", a.Prev, prev.Seq)
		}
		if bad == "" && a.LastEvent <= tree.Size() {
			if root, err := tree.RootOfRange(a.FirstEvent-1, a.LastEvent); err != nil || hex.EncodeToString(root) != a.Root {
				bad = fmt.Sprintf("the event tree's events %d..%d do not make its root (%v)", a.FirstEvent, a.LastEvent, err)
			}
		}
		if bad == "" && a.TreeSize != 0 {
			if root, err := tree.RootAt(a.TreeSize); err != nil || hex.EncodeToString(root) != a.TreeRoot {
				bad = fmt.Sprintf("the event tree's root at size %d is not its tree root (%v)", a.TreeSize, err)
			}
		}
		if bad != "" {
			r.fail("anchors: anchor %d (events %d..%d): %s", a.Seq, a.FirstEvent, a.LastEvent, bad)
		}
		prev = a
	}
	r.ok("anchors: %d anchors the Fabric ledger accepted chain and match the event tree", len(ancs))
}

// verifyDataDir scrubs the store (every message against its sequence
// index or its gateway's signature, every event and twin) and checks the
// ledger beside it.
func verifyDataDir(dir string, pub ed25519.PublicKey, stdout io.Writer) error {
	r := &dirReport{w: stdout}
	path := filepath.Join(dir, "twins.db")
	store, err := twinstore.Open(path, twinstore.Options{ReadOnly: true, Timeout: 2e9})
	if err != nil {
		r.fail("store: %v", err)
	} else {
		gws, err := store.Gateways()
		if err != nil {
			r.fail("store: %v", err)
		}
		reg := registry.New(gws...)
		if f, err := registry.LoadFile(filepath.Join(dir, "registry.json")); err == nil {
			_ = reg.PutAll(f) // the file the service loads too; invalid entries are reported by the service
		}
		res, err := store.Scrub(context.Background(), registryKeys(reg.Lookup), func(d twinstore.Damage) { r.fail("store: %s", d) })
		if err != nil {
			r.fail("store: %v", err)
		}
		if res.Damaged == 0 && err == nil {
			r.ok("store: %d messages, %d events, %d twins hold", res.Messages, res.Events, res.Twins)
		}
		if res.Unchecked > 0 {
			r.note("store: %d messages have no sequence-index entry and a gateway no longer registered: not checked", res.Unchecked)
		}
		_ = store.Close() // read-only
	}
	ledgerDir := filepath.Join(dir, "ledger")
	if _, err := os.Stat(ledgerDir); err == nil {
		lr := verifyLedgerDir(ledgerDir, pub, stdout)
		r.failed += lr.failed
		r.key = lr.key
	} else {
		r.note("no ledger directory: the ledger was off")
	}
	return verdict(dir, r, pub != nil, stdout)
}

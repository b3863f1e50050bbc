package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/ledger/signkey"
)

// subcommand returns the subcommand args name, or nil to run the service.
func subcommand(args []string) func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return nil
	}
	switch args[0] {
	case "verify":
		return runVerify
	case "ledger":
		return runLedgerCLI
	}
	return nil
}

// runVerify is `twin-service verify [-key HEX | -key-file F] [-json] PATH`:
// PATH is a proof bundle (or - for stdin), checked offline with no server;
// or a ledger directory ({data}/ledger), whose blocks, state, event tree and
// checkpoints are checked for tampering.
func runVerify(_ context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("twin-service verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyHex := fs.String("key", "", "the service's public key (hex) to pin; default: the key in the bundle")
	keyFile := fs.String("key-file", "", "the service key file (its private seed; the public key is derived)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: twin-service verify [-key HEX | -key-file FILE] [-json] BUNDLE.json|-|LEDGER_DIR\n\nChecks a proof bundle offline, or a ledger directory for tampering.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("verify: want one bundle file or ledger directory")
	}
	var pub ed25519.PublicKey
	switch {
	case *keyHex != "":
		k, err := proofbundle.ParseKey(*keyHex)
		if err != nil {
			return err
		}
		pub = k
	case *keyFile != "":
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return err
		}
		k, err := signkey.Parse(b)
		if err != nil {
			return err
		}
		pub = k.Public().(ed25519.PublicKey)
	}
	path := fs.Arg(0)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return verifyLedgerDir(path, pub, stdout)
	}
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return err
	}
	rep := proofbundle.VerifyJSON(data, pub)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"ok": rep.OK(), "report": rep}); err != nil {
			return err
		}
	} else {
		rep.Write(stdout)
	}
	if !rep.OK() {
		return fmt.Errorf("verify %s: %d check(s) failed", path, len(rep.Failed()))
	}
	return nil
}

// verifyLedgerDir checks a stored ledger: every block, the state they make,
// the event tree and its checkpoints. Without a pinned key it uses the key
// in the blocks' directory's service key file next to it, if any.
func verifyLedgerDir(dir string, pub ed25519.PublicKey, stdout io.Writer) error {
	if pub == nil {
		b, err := os.ReadFile(filepath.Join(dir, "..", "service.key"))
		if err != nil {
			return fmt.Errorf("verify %s: pass -key or -key-file (no service.key beside it): %w", dir, err)
		}
		k, err := signkey.Parse(b)
		if err != nil {
			return err
		}
		pub = k.Public().(ed25519.PublicKey)
	}
	var errs []error
	if eng, err := fileledger.OpenVerifier(filepath.Join(dir, "blocks"), pub); err != nil {
		errs = append(errs, fmt.Errorf("blocks: %w", err))
	} else {
		err := eng.Verify()
		if err == nil {
			fmt.Fprintf(stdout, "ok   blocks: %d blocks, hashes, signatures, links and state check\n", eng.Height())
		} else {
			errs = append(errs, fmt.Errorf("blocks: %w", err))
		}
		_ = eng.Close() // opened read-only, and the verdict is in
	}
	if tree, err := eventtree.Open(filepath.Join(dir, "events")); err != nil {
		errs = append(errs, fmt.Errorf("event tree: %w", err))
	} else {
		err := tree.VerifyAll(pub)
		if err == nil {
			fmt.Fprintf(stdout, "ok   event tree: %d events, every hash and checkpoint checks\n", tree.Size())
		} else {
			errs = append(errs, fmt.Errorf("event tree: %w", err))
		}
		_ = tree.Close() // the verdict is in
	}
	for _, err := range errs {
		fmt.Fprintf(stdout, "FAIL %v\n", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("verify %s: tampering or damage found", dir)
	}
	fmt.Fprintln(stdout, "VERIFIED")
	return nil
}

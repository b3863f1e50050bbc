package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// checkPrivate fails for every file under dir that its group or others may
// read (files must be 0600 at most, directories 0700), except the named
// files the test wrote itself.
func checkPrivate(t *testing.T, dir string, own ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, o := range own {
		skip[filepath.Join(dir, o)] = true
	}
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || skip[path] {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if info.Mode().Perm()&0o077 != 0 {
			rel, _ := filepath.Rel(dir, path)
			t.Errorf("%s has mode %v, want no group or other access", rel, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("only %d files and directories under %s: the service made less than expected", n, dir)
	}
}

var auditKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{6}, 32))

// makeLedger writes a small ledger directory as twin-service keeps it:
// blocks registering four assets, an event tree of 10 leaves with a
// checkpoint, all signed by auditKey.
func makeLedger(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	client, _, err := fileledger.OpenLedger(fileledger.Options{Dir: filepath.Join(dir, "blocks"), Key: auditKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ledger.WithCaller(context.Background(), core.Caller{ID: "twin-service", Role: core.RoleService})
	for i := range 4 {
		if _, err := client.RegisterAsset(ctx, core.AssetRegistration{ID: fmt.Sprintf("gpu-%d", i), Kind: "gpu", FingerprintHash: strings.Repeat("ab", 32)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	tree, err := eventtree.Open(filepath.Join(dir, "events"), eventtree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := tree.Append(fmt.Appendf(nil, `{"id":%d}`, i+1)); err != nil {
			t.Fatal(err)
		}
	}
	root, size, _ := tree.Root()
	if err := tree.AddCheckpoint(eventtree.SignCheckpoint(auditKey, "twinchain/events", size, root, time.Unix(1, 0))); err != nil {
		t.Fatal(err)
	}
	if err := tree.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestVerifyChecksEverythingOnDisk: `verify LEDGER_DIR` checks every byte
// on disk under the pinned key: lines appended to blocks.dat, a forged
// block, a flipped byte in state.db's newest header page with a changed last
// block, a forged checkpoint all fail (exit 1); without a key even a good
// ledger is only "consistent" (exit 3).
func TestVerifyChecksEverythingOnDisk(t *testing.T) {
	pin := hex.EncodeToString(auditKey.Public().(ed25519.PublicKey))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	blockLines := func(t *testing.T, dir string) [][]byte {
		b, err := os.ReadFile(filepath.Join(dir, "blocks", "blocks.dat"))
		if err != nil {
			t.Fatal(err)
		}
		return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	}
	appendFile := func(t *testing.T, path string, b []byte) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		harm func(t *testing.T, dir string)
		code int
		want string
	}{
		{"pristine", []string{"-key", pin}, func(*testing.T, string) {}, 0, "VERIFIED"},
		{"pristine, no key", nil, func(*testing.T, string) {}, exitUntrusted, "KEY IS NOT TRUSTED"},
		{"lines appended to blocks.dat", []string{"-key", pin}, func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "blocks", "blocks.dat"), []byte(`{"body":{"height":5,"txs":[]},"hash":"00"}`+"\n"))
		}, exitDamaged, "block 5 (blocks.dat offset"},
		{"forged block appended", []string{"-key", pin}, func(t *testing.T, dir string) {
			ls := blockLines(t, dir)
			var last fileledger.Block
			if err := json.Unmarshal(ls[len(ls)-1], &last); err != nil {
				t.Fatal(err)
			}
			writes := []fileledger.Write{{Key: "asset/gpu-0", Value: []byte(`{"id":"gpu-0","status":"retired"}`)}}
			body, _ := json.Marshal(fileledger.BlockBody{Height: 5, Prev: last.Hash, Time: time.Unix(5, 0).UTC(), Writes: writes, WritesHash: fileledger.WriteSetHash(writes)})
			h := fileledger.BlockHash(body)
			line, _ := json.Marshal(fileledger.Block{Body: body, Hash: h, Key: eventtree.Hash(other.Public().(ed25519.PublicKey)), Sig: ed25519.Sign(other, h)})
			appendFile(t, filepath.Join(dir, "blocks", "blocks.dat"), append(line, '\n'))
		}, exitDamaged, "block 5 (blocks.dat offset"},
		{"newest header page flipped and last block changed", []string{"-key", pin}, func(t *testing.T, dir string) {
			db := filepath.Join(dir, "blocks", "state.db")
			b, _ := os.ReadFile(db)
			page := int64(binary.NativeEndian.Uint32(b[24:]))
			txid := func(off int64) uint64 { return binary.NativeEndian.Uint64(b[off+64:]) }
			newest := int64(0)
			if txid(page) > txid(0) {
				newest = page
			}
			b[newest+64+3] ^= 0x10 // its txid: the checksum fails, bbolt reads the older header
			os.WriteFile(db, b, 0o600)
			ls := blockLines(t, dir)
			ls[3] = bytes.Replace(ls[3], []byte(`gpu-3`), []byte(`gpu-9`), 1)
			os.WriteFile(filepath.Join(dir, "blocks", "blocks.dat"), append(bytes.Join(ls, nil), '\n'), 0o600)
		}, exitDamaged, "block 4 (blocks.dat offset"},
		{"forged checkpoint", []string{"-key", pin}, func(t *testing.T, dir string) {
			cp := eventtree.SignCheckpoint(other, "twinchain/events", 10, bytes.Repeat([]byte{1}, 32), time.Unix(2, 0))
			line, _ := json.Marshal(&cp)
			appendFile(t, filepath.Join(dir, "events", "checkpoints.jsonl"), append(line, '\n'))
		}, exitDamaged, "checkpoints.jsonl line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeLedger(t)
			tc.harm(t, dir)
			var out bytes.Buffer
			err := runVerify(context.Background(), append(tc.args, dir), func(string) string { return "" }, &out, io.Discard)
			if code := exitCode(err); code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Errorf("verify = %v (exit %d):\n%s\nwant exit %d and %q", err, code, out.String(), tc.code, tc.want)
			}
		})
	}
}

// TestVerifyForgedBundle: a bundle anyone can make with a key of their own
// is never VERIFIED: without a pinned key it is "consistent, but the key is
// not trusted" (exit 3), with the service's key pinned it fails (exit 1).
func TestVerifyForgedBundle(t *testing.T) {
	forger := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	value := []byte(`{"id":"ds-1","content_hash":"forged"}`)
	writes := []fileledger.Write{{Key: "dataset/ds-1", Value: value}}
	body, _ := json.Marshal(fileledger.BlockBody{Height: 1, Prev: make([]byte, 32), Time: time.Unix(1, 0).UTC(), Writes: writes, WritesHash: fileledger.WriteSetHash(writes)})
	h := fileledger.BlockHash(body)
	b := proofbundle.Bundle{Version: proofbundle.Version, Kind: proofbundle.KindRecord, ServiceKey: eventtree.Hash(forger.Public().(ed25519.PublicKey)),
		Record: &proofbundle.RecordProof{Type: "dataset", ID: "ds-1", Key: "dataset/ds-1", Value: value,
			Block: &fileledger.Block{Body: body, Hash: h, Key: eventtree.Hash(forger.Public().(ed25519.PublicKey)), Sig: ed25519.Sign(forger, h)}}}
	raw, _ := json.Marshal(&b)
	path := filepath.Join(t.TempDir(), "forged.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	noenv := func(string) string { return "" }
	var out bytes.Buffer
	err := runVerify(context.Background(), []string{path}, noenv, &out, io.Discard)
	if exitCode(err) != exitUntrusted || strings.Contains(out.String(), "\nVERIFIED") || !strings.Contains(out.String(), "NOT TRUSTED") {
		t.Errorf("verify of a forged bundle without a key = %v (exit %d):\n%s\nwant exit %d, not trusted", err, exitCode(err), out.String(), exitUntrusted)
	}
	out.Reset()
	err = runVerify(context.Background(), []string{"-key", hex.EncodeToString(auditKey.Public().(ed25519.PublicKey)), path}, noenv, &out, io.Discard)
	if exitCode(err) != exitDamaged {
		t.Errorf("verify of a forged bundle with the service's key pinned = %v (exit %d):\n%s\nwant exit %d", err, exitCode(err), out.String(), exitDamaged)
	}
}

// TestVerifyLedgerKey: a bundle whose ledger blocks another node's key
// signs (ledger_key) verifies only with both keys pinned: -key alone says
// "not trusted", a wrong -ledger-key fails.
func TestVerifyLedgerKey(t *testing.T) {
	nodeKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	ledgerKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	value := []byte(`{"id":"ds-1","content_hash":"h"}`)
	writes := []fileledger.Write{{Key: "dataset/ds-1", Value: value}}
	body, _ := json.Marshal(fileledger.BlockBody{Height: 1, Prev: make([]byte, 32), Time: time.Unix(1, 0).UTC(), Writes: writes, WritesHash: fileledger.WriteSetHash(writes)})
	h := fileledger.BlockHash(body)
	ledgerPub := ledgerKey.Public().(ed25519.PublicKey)
	b := proofbundle.Bundle{Version: proofbundle.Version, Kind: proofbundle.KindRecord, ServiceKey: eventtree.Hash(nodeKey.Public().(ed25519.PublicKey)),
		LedgerKey: eventtree.Hash(ledgerPub), Record: &proofbundle.RecordProof{Type: "dataset", ID: "ds-1", Key: "dataset/ds-1", Value: value,
			Block: &fileledger.Block{Body: body, Hash: h, Key: eventtree.Hash(ledgerPub), Sig: ed25519.Sign(ledgerKey, h)}}}
	raw, _ := json.Marshal(&b)
	path := filepath.Join(t.TempDir(), "node.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	nodeHex := hex.EncodeToString(nodeKey.Public().(ed25519.PublicKey))
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"node key only", []string{"-key", nodeHex, path}, exitUntrusted},
		{"both keys", []string{"-key", nodeHex, "-ledger-key", hex.EncodeToString(ledgerPub), path}, 0},
		{"another ledger key", []string{"-key", nodeHex, "-ledger-key", nodeHex, path}, exitDamaged},
	} {
		var out bytes.Buffer
		err := runVerify(context.Background(), tc.args, func(string) string { return "" }, &out, io.Discard)
		if exitCode(err) != tc.want {
			t.Errorf("verify with %s = %v (exit %d), want exit %d:\n%s", tc.name, err, exitCode(err), tc.want, out.String())
		}
	}
}

// storeDir writes a data directory whose twins.db holds n signed status
// messages of gateway gw-v (body "marker-NNNNN"), their sequence-index
// entries and the gateway in the stored registry.
func storeDir(t *testing.T, n int) (string, ed25519.PrivateKey) {
	t.Helper()
	dir := t.TempDir()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	s, err := twinstore.Open(filepath.Join(dir, "twins.db"), twinstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutGateways(registry.Gateway{ID: "gw-v", PublicKey: key.Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *twinstore.Tx) error {
		for seq := 1; seq <= n; seq++ {
			raw, err := wire.SealRaw(key, "gw-v", uint64(seq), time.Unix(int64(seq), 0), wire.KindStatus, fmt.Appendf(nil, `{"state":"online","agent_version":"marker-%05d"}`, seq))
			if err != nil {
				return err
			}
			env, _ := wire.Decode(raw)
			m := twinstore.Message{Gateway: "gw-v", Seq: uint64(seq), Kind: wire.KindStatus, Time: env.Time, Recorded: time.Unix(int64(seq), 0), Raw: raw}
			if err := tx.AppendMessage(&m); err != nil {
				return err
			}
			sum := sha256.Sum256(raw)
			if err := tx.PutSeq("gw-v", env.Epoch, uint64(seq), m.Pos, &sum); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, key
}

// TestVerifyDataDir: `verify DATA` re-checks every stored message and
// names the damaged positions; a twins.db cut short stops the service's
// start with the file named, instead of a SIGBUS.
func TestVerifyDataDir(t *testing.T) {
	dir, _ := storeDir(t, 500)
	path := filepath.Join(dir, "twins.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int{17, 250, 499} {
		i := bytes.Index(b, fmt.Appendf(nil, "marker-%05d", seq))
		b[i+2] ^= 1
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = runVerify(context.Background(), []string{"-key", hex.EncodeToString(auditKey.Public().(ed25519.PublicKey)), dir}, func(string) string { return "" }, &out, io.Discard)
	if exitCode(err) != exitDamaged {
		t.Errorf("verify DATA with 3 damaged messages = %v (exit %d), want exit %d:\n%s", err, exitCode(err), exitDamaged, out.String())
	}
	for _, pos := range []int{17, 250, 499} {
		if want := fmt.Sprintf("store: message %d (gateway gw-v seq %d)", pos, pos); !strings.Contains(out.String(), want) {
			t.Errorf("verify DATA output lacks %q:\n%s", want, out.String())
		}
	}

	// Cut short: the start stops with the file named and what to do.
	st, _ := os.Stat(path)
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"-data", dir, "-http", "127.0.0.1:0", "-mqtt-addr", "127.0.0.1:0", "-log-level", "error"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "cut short") {
		t.Errorf("twin-service on a twins.db cut short = %v, want an error naming %s", err, path)
	}
}

// TestDataFilesPrivate: every file the service makes in its data directory
// (store, detection, ledger blocks and state, event tree, anchor queue,
// embedded telemetry, keys) is its user's alone, even with a umask that
// would leave them world-readable (run() here, not main's umask).
func TestDataFilesPrivate(t *testing.T) {
	dir := t.TempDir()
	s, err := startLedgerService(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	s.publish(t, 5)
	testsvc.Eventually(t, 60*time.Second, "anchoring", func() bool { st := s.status(t); return st.TreeSize >= 6 && st.Anchoring.AnchoredTo == st.TreeSize })
	s.stop(t)
	checkPrivate(t, dir, "registry.json")
}

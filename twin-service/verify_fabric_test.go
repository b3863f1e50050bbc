package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger/fabricledger"
	"twinchain/internal/testsvc"
)

// TestVerifyFabricLedgerDir: a ledger directory with fabric.json has its
// blocks on the peers; verify checks the anchors the ledger accepted (as
// anchor.db recorded them) against the event tree offline, and finds one
// that was changed. The directory is a real service's (embedded ledger)
// without its blocks, as a Fabric-backed service leaves it.
func TestVerifyFabricLedgerDir(t *testing.T) {
	base := t.TempDir()
	s, err := startLedgerService(t, base)
	if err != nil {
		t.Fatal(err)
	}
	s.publish(t, 8)
	testsvc.Eventually(t, 60*time.Second, "anchoring", func() bool { st := s.status(t); return st.TreeSize >= 9 && st.Anchoring.AnchoredTo == st.TreeSize })
	s.stop(t)
	pub, err := os.ReadFile(filepath.Join(base, "service.pub"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ledger")
	for _, d := range []string{"events", "anchor.db"} {
		if st, _ := os.Stat(filepath.Join(base, "ledger", d)); st != nil && st.IsDir() {
			copyDir(t, filepath.Join(base, "ledger", d), filepath.Join(dir, d))
		} else {
			b, err := os.ReadFile(filepath.Join(base, "ledger", d))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, d), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := writeFabricMarker(dir, fabricledger.Config{Channel: "twinchain", MSPID: "Org1MSP", PeerEndpoint: "127.0.0.1:7051"}); err != nil {
		t.Fatal(err)
	}
	verify := func() (string, int) {
		var out bytes.Buffer
		err := runVerify(context.Background(), []string{"-key", strings.TrimSpace(string(pub)), dir}, func(string) string { return "" }, &out, io.Discard)
		return out.String(), exitCode(err)
	}
	out, code := verify()
	if code != 0 || !strings.Contains(out, "Fabric ledger (channel twinchain") || !strings.Contains(out, "anchors the Fabric ledger accepted chain and match the event tree") {
		t.Fatalf("verify on a Fabric ledger dir = exit %d:\n%s", code, out)
	}

	// Change one recorded anchor's batch root.
	db, err := bolt.Open(filepath.Join(dir, "anchor.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("anchored"))
		k, v := b.Cursor().First()
		var a core.Anchor
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		a.Root = strings.Repeat("ab", 32)
		nv, _ := json.Marshal(a)
		return b.Put(k, nv)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	out, code = verify()
	if code != exitDamaged || !strings.Contains(out, "FAIL anchors: anchor 1") {
		t.Fatalf("verify after an anchor was changed = exit %d, want %d naming anchor 1:\n%s", code, exitDamaged, out)
	}
}

package fileledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/chaincode/core"

	"twinchain/internal/ledger"
	"twinchain/internal/ledger/ledgertest"
)

func TestContract(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) ledger.Ledger {
		c, _, err := OpenLedger(Options{Dir: t.TempDir(), Key: testKey, Org: "Org1MSP", Now: fixedClock()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// BenchmarkSubmitAnchor measures anchors per second into the embedded
// ledger: each is one signed block, written and fsynced, and one bbolt
// commit.
func BenchmarkSubmitAnchor(b *testing.B) {
	c, _, err := OpenLedger(Options{Dir: b.TempDir(), Key: testKey})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := ledgertest.As(core.RoleService)
	t0 := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		first := uint64(i)*1000 + 1
		_, err := c.SubmitAnchor(ctx, core.AnchorInput{Root: ledgertest.Hash(fmt.Sprint(i)), FirstEvent: first, LastEvent: first + 999,
			Size: 1000, FirstTime: t0, LastTime: t0.Add(time.Second), TreeSize: first + 999, TreeRoot: ledgertest.Hash(fmt.Sprint("t", i))})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "anchors/s")
}

// BenchmarkRegisterAssets measures a fleet's first contact on the
// embedded ledger: the assets registered one per transaction (RegisterAsset,
// what the anchorer sent before) and 500 per transaction (RegisterAssets).
// Each transaction is one signed block, written and fsynced, and one bbolt
// commit. Compare µs/asset within one run.
func BenchmarkRegisterAssets(b *testing.B) {
	for _, per := range []int{1, core.MaxAssetsPerCall} {
		b.Run(fmt.Sprintf("per_call=%d", per), func(b *testing.B) {
			c, _, err := OpenLedger(Options{Dir: b.TempDir(), Key: testKey})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := ledgertest.As(core.RoleService)
			const assets = 2000
			regs := make([]core.AssetRegistration, assets)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range regs {
					id := fmt.Sprintf("srv-%06d.gpu%d", i*assets/8+j/8, j%8)
					regs[j] = core.AssetRegistration{ID: id, Kind: "gpu", FingerprintHash: ledgertest.Hash(id)}
				}
				for j := 0; j < assets; j += per {
					if per == 1 {
						_, err = c.RegisterAsset(ctx, regs[j])
					} else {
						_, err = c.RegisterAssets(ctx, regs[j:j+per])
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(b.N*assets), "µs/asset")
		})
	}
}

// TestCustody runs the two-organisation custody rules on the embedded
// ledger, the organisations being the callers' MSPs.
func TestCustody(t *testing.T) {
	l, _, err := OpenLedger(Options{Dir: t.TempDir(), Key: testKey, Org: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	org := func(msp string) ledgertest.Org {
		return ledgertest.Org{MSP: msp, L: l, As: func(r core.Role) context.Context {
			return ledger.WithCaller(context.Background(), core.Caller{ID: "test-" + string(r), MSP: msp, Role: r})
		}}
	}
	ledgertest.Custody(t, org("Org1MSP"), org("Org2MSP"))
}

// TestPrivate runs the private dataset metadata rules on the embedded
// ledger (the organisations being the callers' MSPs): no block holds the
// metadata, only its hash, and it survives a reopen.
func TestPrivate(t *testing.T) {
	dir := t.TempDir()
	l, _, err := OpenLedger(Options{Dir: dir, Key: testKey, Org: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	org := func(msp string) ledgertest.Org {
		return ledgertest.Org{MSP: msp, L: l, As: func(r core.Role) context.Context {
			return ledger.WithCaller(context.Background(), core.Caller{ID: "test-" + string(r), MSP: msp, Role: r})
		}}
	}
	ds := ledgertest.Private(t, org("Org1MSP"), org("Org2MSP"))
	l.Close()
	blocks, err := os.ReadFile(filepath.Join(dir, "blocks.dat"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blocks, []byte("SC-2291")) || !bytes.Contains(blocks, []byte(ds.Private.Hash)) {
		t.Errorf("blocks.dat: private metadata shown %v, its hash %s shown %v; want only the hash",
			bytes.Contains(blocks, []byte("SC-2291")), ds.Private.Hash, bytes.Contains(blocks, []byte(ds.Private.Hash)))
	}
	l, _, err = OpenLedger(Options{Dir: dir, Key: testKey, Org: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := l.GetDatasetPrivate(ledger.WithCaller(context.Background(), core.Caller{ID: "a", MSP: "Org1MSP", Role: core.RoleAuditor}), ds.ID)
	if err != nil || !bytes.Contains(rec.Data, []byte("SC-2291")) {
		t.Errorf("GetDatasetPrivate after reopening = %s, %v; want the metadata", rec.Data, err)
	}
	l.Close()
	// Verify checks the private value against the record's hash.
	verify := func() error {
		v, err := OpenVerifier(dir, testKey.Public().(ed25519.PublicKey))
		if err != nil {
			return err
		}
		defer v.Close()
		return v.Verify()
	}
	if err := verify(); err != nil {
		t.Fatalf("Verify of a ledger with private data: %v", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("private"))
		k, v := b.Cursor().First()
		return b.Put(bytes.Clone(k), bytes.Replace(v, []byte("2027"), []byte("2031"), 1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "does not hash to "+ds.Private.Hash) {
		t.Errorf("Verify after the private metadata was edited = %v, want tampering naming the record's hash", err)
	}
}

// TestCheckAnchorsNamedChains: CheckAnchors checks the anchors of other
// nodes' chains by their hashes, and finds one whose stored bytes changed.
func TestCheckAnchorsNamedChains(t *testing.T) {
	dir := t.TempDir()
	c, l, err := OpenLedger(Options{Dir: dir, Key: testKey, Org: "Org1MSP", Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ledgertest.As(core.RoleService)
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	for i, chain := range []string{"", "node-2", "node-3"} {
		in := core.AnchorInput{Root: ledgertest.Hash(chain), FirstEvent: 1, LastEvent: 5, Size: 5, FirstTime: t0, LastTime: t0}
		if _, err := c.OnChain(chain).SubmitAnchor(ctx, in); err != nil {
			t.Fatalf("anchor %d: %v", i, err)
		}
	}
	noTree := func(uint64) ([]byte, error) { return nil, errors.New("no tree sizes in these anchors") }
	if n, err := l.CheckAnchors(noTree); n != 3 || err != nil {
		t.Fatalf("CheckAnchors = %d, %v; want 3 anchors, no error", n, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte(core.AnchorKey("node-3", 1))
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState)
		v := b.Get(key)
		if v == nil {
			return fmt.Errorf("no %s in the state", key)
		}
		return b.Put(key, bytes.Replace(v, []byte(`"last_event":5`), []byte(`"last_event":6`), 1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e, err := openEngine(Options{Dir: dir, Key: testKey, Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var te *TamperError
	if _, err := e.CheckAnchors(noTree); !errors.As(err, &te) || !strings.Contains(err.Error(), "chain node-3") {
		t.Errorf("CheckAnchors(node-3's anchor changed) = %v, want a TamperError naming it", err)
	}
}

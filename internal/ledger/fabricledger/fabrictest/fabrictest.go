// Package fabrictest gives tests a ledger on a real Fabric network started
// by scripts/fabric/network.sh (its network.env exported), one unused test
// channel at a time, so the tests can run again on the same network until
// its test channels are used up. Without FABRIC_BIN the test is skipped.
package fabrictest

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/fabricledger"
)

// ClaimID is the asset every claimed test channel holds: a channel with it
// has been used by a test and is not empty any more.
const ClaimID = "fabrictest-channel-claimed"

// Skip skips t unless FABRIC_BIN is set.
func Skip(t testing.TB) {
	t.Helper()
	if os.Getenv("FABRIC_BIN") == "" {
		t.Skip("FABRIC_BIN is not set: no Fabric peer/orderer binaries here, so this runs on the embedded ledger only (see docs/ledger.md, \"A real Fabric network\")")
	}
}

func env(t testing.TB, k string) string {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		t.Fatalf("FABRIC_BIN is set but %s is not: start the network (scripts/fabric/network.sh up) and `. network.env`", k)
	}
	return v
}

// Dial connects to channel as the network's service identity (and, for
// other callers, the identities network.sh enrolled).
func Dial(t testing.TB, channel string) *ledger.Client {
	t.Helper()
	Skip(t)
	b, err := fabricledger.Dial(fabricledger.Config{PeerEndpoint: env(t, "TWINCHAIN_FABRIC_PEER"), PeerHostOverride: os.Getenv("TWINCHAIN_FABRIC_PEER_HOST"),
		TLSCACert: env(t, "TWINCHAIN_FABRIC_TLS_CA"), Channel: channel, Chaincode: os.Getenv("TWINCHAIN_FABRIC_CHAINCODE"),
		MSPID: env(t, "TWINCHAIN_FABRIC_MSP"), CertFile: env(t, "TWINCHAIN_FABRIC_CERT"), KeyFile: env(t, "TWINCHAIN_FABRIC_KEY"),
		IdentityDir: env(t, "TWINCHAIN_FABRIC_IDENTITIES")})
	if err != nil {
		t.Fatal(err)
	}
	return ledger.New(b)
}

// Fresh returns a ledger on a test channel no test has used (no ClaimID,
// no anchor), claimed for t: it registers ClaimID there first, which the
// contract suite never reads. It fails when every test channel is used (network.sh clean && up,
// or more TWINCHAIN_FABRIC_TEST_CHANNELS).
func Fresh(t testing.TB) *ledger.Client {
	t.Helper()
	Skip(t)
	n, err := strconv.Atoi(os.Getenv("TWINCHAIN_FABRIC_TEST_CHANNELS"))
	if err != nil || n < 1 {
		n = 5
	}
	prefix := env(t, "TWINCHAIN_FABRIC_CHANNEL_PREFIX")
	read := ledger.WithCaller(context.Background(), core.Caller{ID: "test-auditor", Role: core.RoleAuditor})
	claim := ledger.WithCaller(context.Background(), core.Caller{ID: "test-asset_manager", Role: core.RoleAssetManager})
	for i := 1; i <= n; i++ {
		c := Dial(t, prefix+strconv.Itoa(i))
		_, err := c.GetAsset(read, ClaimID)
		if errors.Is(err, ledger.ErrNotFound) {
			// Anchors from anything else (a service pointed at it) count as used too.
			if _, herr := c.AnchorHead(read); !errors.Is(herr, ledger.ErrNotFound) {
				_ = c.Close()
				continue
			}
			_, err = c.RegisterAsset(claim, core.AssetRegistration{ID: ClaimID, Kind: "gpu", FingerprintHash: "0000000000000000000000000000000000000000000000000000000000000000"})
			if err == nil {
				t.Logf("Fabric channel %s%d", prefix, i)
				return c
			}
		}
		_ = c.Close() // used, or lost to a concurrent claim: the next one
		if err != nil && !errors.Is(err, ledger.ErrConflict) {
			t.Fatalf("test channel %s%d: %v", prefix, i, err)
		}
	}
	t.Fatalf("all %d Fabric test channels are used: scripts/fabric/network.sh clean && up (or raise TWINCHAIN_FABRIC_TEST_CHANNELS)", n)
	return nil
}

// Org2 connects to c's channel as the network's second organisation
// (network.sh with two orgs: Org2MSP's peer and identities, the
// TWINCHAIN_FABRIC_ORG2_* settings); the test is skipped without them.
func Org2(t testing.TB, c *ledger.Client) *ledger.Client {
	t.Helper()
	ids := os.Getenv("TWINCHAIN_FABRIC_ORG2_IDENTITIES")
	if ids == "" {
		t.Skip("TWINCHAIN_FABRIC_ORG2_IDENTITIES is not set: the network has no second organisation (network.sh up with TWINCHAIN_FABRIC_ORGS=2)")
	}
	b, err := fabricledger.Dial(fabricledger.Config{PeerEndpoint: env(t, "TWINCHAIN_FABRIC_ORG2_PEER"), PeerHostOverride: os.Getenv("TWINCHAIN_FABRIC_ORG2_PEER_HOST"),
		TLSCACert: env(t, "TWINCHAIN_FABRIC_ORG2_TLS_CA"), Channel: c.Backend().(*fabricledger.Backend).Channel(), Chaincode: os.Getenv("TWINCHAIN_FABRIC_CHAINCODE"),
		MSPID: "Org2MSP", CertFile: ids + "/twin-service.service/cert.pem", KeyFile: ids + "/twin-service.service/key.pem", IdentityDir: ids})
	if err != nil {
		t.Fatal(err)
	}
	return ledger.New(b)
}

// TwoOrgs connects to a fresh test channel as Org1 (Fresh) and as Org2
// (Org2), each through its own peer, closed when t ends. Each org's peer
// commits blocks on its own time: sync waits until both have the same
// height, so an org acts on every block the other's has.
func TwoOrgs(t testing.TB) (c1, c2 *ledger.Client, sync func()) {
	t.Helper()
	c1 = Fresh(t)
	t.Cleanup(func() { _ = c1.Close() })
	c2 = Org2(t, c1)
	t.Cleanup(func() { _ = c2.Close() })
	b1, b2 := c1.Backend().(*fabricledger.Backend), c2.Backend().(*fabricledger.Backend)
	sync = func() {
		for range 200 {
			h1, err1 := b1.Height(context.Background())
			h2, err2 := b2.Height(context.Background())
			if err1 == nil && err2 == nil && h1 == h2 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("the two orgs' peers did not reach the same height")
	}
	return c1, c2, sync
}

package proofbundle

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"twinchain/internal/ledger"
)

func mustProto(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fabricBlock builds a block as a peer commits it: one endorser
// transaction txID writing key=value in namespace ns, with validation flag
// code.
func fabricBlock(t *testing.T, num uint64, txID, ns, key string, value []byte, code peer.TxValidationCode) []byte {
	kv := mustProto(t, &kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: key, Value: value}}})
	rws := mustProto(t, &rwset.TxReadWriteSet{DataModel: rwset.TxReadWriteSet_KV, NsRwset: []*rwset.NsReadWriteSet{{Namespace: ns, Rwset: kv}}})
	ca := mustProto(t, &peer.ChaincodeAction{Results: rws})
	prp := mustProto(t, &peer.ProposalResponsePayload{Extension: ca})
	cp := mustProto(t, &peer.ChaincodeActionPayload{Action: &peer.ChaincodeEndorsedAction{ProposalResponsePayload: prp}})
	tx := mustProto(t, &peer.Transaction{Actions: []*peer.TransactionAction{{Payload: cp}}})
	ch := mustProto(t, &common.ChannelHeader{Type: int32(common.HeaderType_ENDORSER_TRANSACTION), TxId: txID, ChannelId: "twinchain"})
	pl := mustProto(t, &common.Payload{Header: &common.Header{ChannelHeader: ch}, Data: tx})
	env := mustProto(t, &common.Envelope{Payload: pl})
	data := [][]byte{env}
	sum := sha256.Sum256(bytes.Join(data, nil))
	md := make([][]byte, 5)
	md[common.BlockMetadataIndex_TRANSACTIONS_FILTER] = []byte{byte(code)}
	return mustProto(t, &common.Block{Header: &common.BlockHeader{Number: num, DataHash: sum[:]}, Data: &common.BlockData{Data: data}, Metadata: &common.BlockMetadata{Metadata: md}})
}

func TestCheckFabricBlock(t *testing.T) {
	val := []byte(`{"seq":1}`)
	good := fabricBlock(t, 4, "tx1", "twinchain", "anchor/00000000000000000001", val, peer.TxValidationCode_VALID)
	if err := CheckFabricBlock(good, 4, "tx1", "twinchain", "anchor/00000000000000000001", val); err != nil {
		t.Fatalf("CheckFabricBlock(a committed anchor) = %v", err)
	}
	for _, tc := range []struct {
		name, want string
		raw        []byte
		block      uint64
		txID, key  string
		value      []byte
	}{
		{"other block number", "number 4", good, 5, "tx1", "anchor/00000000000000000001", val},
		{"other transaction", "does not hold transaction", good, 4, "tx2", "anchor/00000000000000000001", val},
		{"other key", "does not write", good, 4, "tx1", "anchor/00000000000000000002", val},
		{"other value", "other bytes", good, 4, "tx1", "anchor/00000000000000000001", []byte(`{"seq":2}`)},
		{"invalid transaction", "not marked valid", fabricBlock(t, 4, "tx1", "twinchain", "anchor/00000000000000000001", val, peer.TxValidationCode_MVCC_READ_CONFLICT), 4, "tx1", "anchor/00000000000000000001", val},
	} {
		err := CheckFabricBlock(tc.raw, tc.block, tc.txID, "twinchain", tc.key, tc.value)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckFabricBlock(%s) = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	// A changed byte in a transaction breaks the data hash.
	bad := bytes.Replace(bytes.Clone(good), []byte(`{"seq":1}`), []byte(`{"seq":9}`), 1)
	if err := CheckFabricBlock(bad, 4, "tx1", "twinchain", "anchor/00000000000000000001", []byte(`{"seq":9}`)); err == nil || !strings.Contains(err.Error(), "data hash") {
		t.Errorf("CheckFabricBlock(changed transaction) = %v, want a data hash error", err)
	}
}

// TestFabricRecordBundle builds a record bundle as a Fabric-backed service
// does: the record's stamps name its transactions, the newest whose block
// writes the current value proves it; verify checks that block offline.
func TestFabricRecordBundle(t *testing.T) {
	old := []byte(`{"id":"ds-1","checks":[],"registered":{"tx_id":"tx1","time":"2026-12-05T10:00:00Z"}}`)
	cur := []byte(`{"id":"ds-1","checks":[{"name":"nulls","stamp":{"tx_id":"tx2","time":"2026-12-05T11:00:00Z"}}],"registered":{"tx_id":"tx1","time":"2026-12-05T10:00:00Z"}}`)
	blocks := map[string][]byte{
		"tx1": fabricBlock(t, 7, "tx1", "twinchain", "dataset/ds-1", old, peer.TxValidationCode_VALID),
		"tx2": fabricBlock(t, 9, "tx2", "twinchain", "dataset/ds-1", cur, peer.TxValidationCode_VALID),
	}
	var asked []string
	x := &Exporter{Key: serviceKey.Public().(ed25519.PublicKey), Channel: "twinchain", Chaincode: "twinchain",
		Records: func(ctx context.Context, typ, id string) ([]byte, error) {
			if typ != "dataset" || id != "ds-1" {
				return nil, ledger.ErrNotFound
			}
			return bytes.ReplaceAll(cur, []byte(`,"`), []byte(`, "`)), nil // the same record, other bytes
		},
		FabricTxBlock: func(ctx context.Context, tx string) ([]byte, error) {
			asked = append(asked, tx)
			return blocks[tx], nil
		}}
	b, err := x.Record(context.Background(), "dataset", "ds-1")
	if err != nil {
		t.Fatal(err)
	}
	if b.Record.Fabric.TxID != "tx2" || b.Record.Fabric.Block != 9 || !bytes.Equal(b.Record.Value, cur) || len(asked) != 1 {
		t.Errorf("Record = tx %s block %d value %s after asking %v; want tx2, block 9, the current bytes, one block read", b.Record.Fabric.TxID, b.Record.Fabric.Block, b.Record.Value, asked)
	}
	raw, _ := json.Marshal(b)
	if rep := VerifyJSON(raw, serviceKey.Public().(ed25519.PublicKey)); !rep.Verified() {
		t.Errorf("Verify(Fabric record bundle) failed: %+v", rep.Failed())
	}
	// A changed value, or the older transaction's block, fails offline.
	forged := bytes.Replace(raw, []byte(`nulls`), []byte(`nuls`), 1)
	if rep := VerifyJSON(forged, serviceKey.Public().(ed25519.PublicKey)); rep.OK() {
		t.Errorf("Verify(changed record value) passed")
	}
	b.Record.FabricBlock, b.Record.Fabric.Block = blocks["tx1"], 7
	if rep := Verify(b, serviceKey.Public().(ed25519.PublicKey)); rep.OK() {
		t.Errorf("Verify(bundle with the block of another transaction) passed")
	}
	// A record none of whose stamped transactions wrote its value has no bundle.
	blocks["tx2"] = blocks["tx1"]
	if _, err := x.Record(context.Background(), "dataset", "ds-1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Record(no transaction writes the current value) = %v, want ErrNotFound", err)
	}
	x.Records = nil
	if _, err := x.Record(context.Background(), "dataset", "ds-1"); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("Record(no record reader) = %v, want ErrUnavailable", err)
	}
}

// caCert makes a P-256 CA, and a certificate it issues for cn.
func caCert(t *testing.T, cn string) (caPEM []byte, leafPEM []byte, leafKey *ecdsa.PrivateKey) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca." + cn}, NotBefore: time.Unix(1e9, 0), NotAfter: time.Unix(3e9, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caParsed, _ := x509.ParseCertificate(caDER)
	leafKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Unix(1e9, 0), NotAfter: time.Unix(3e9, 0), KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caParsed, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), leafKey
}

// configBlock is a channel config block number num whose application
// group holds org msp with root CA caPEM.
func configBlock(t *testing.T, num uint64, mspID string, caPEM []byte) []byte {
	fc := mustProto(t, &msp.FabricMSPConfig{Name: mspID, RootCerts: [][]byte{caPEM}})
	mc := mustProto(t, &msp.MSPConfig{Config: fc})
	cfg := &common.Config{ChannelGroup: &common.ConfigGroup{Groups: map[string]*common.ConfigGroup{"Application": {Groups: map[string]*common.ConfigGroup{
		"Org1": {Values: map[string]*common.ConfigValue{"MSP": {Value: mc}}}}}}}}
	pl := mustProto(t, &common.Payload{Header: &common.Header{}, Data: mustProto(t, &common.ConfigEnvelope{Config: cfg})})
	return mustProto(t, &common.Block{Header: &common.BlockHeader{Number: num}, Data: &common.BlockData{Data: [][]byte{mustProto(t, &common.Envelope{Payload: pl})}}})
}

// endorsedBlock is a block with transaction txID endorsed by endorser
// (of mspID, signing with key) and the orderer's last-config index.
func endorsedBlock(t *testing.T, txID, mspID string, certPEM []byte, key *ecdsa.PrivateKey, lastConfig uint64) []byte {
	prp := mustProto(t, &peer.ProposalResponsePayload{Extension: mustProto(t, &peer.ChaincodeAction{})})
	endorser := mustProto(t, &msp.SerializedIdentity{Mspid: mspID, IdBytes: certPEM})
	digest := sha256.Sum256(append(append([]byte{}, prp...), endorser...))
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	cp := mustProto(t, &peer.ChaincodeActionPayload{Action: &peer.ChaincodeEndorsedAction{ProposalResponsePayload: prp,
		Endorsements: []*peer.Endorsement{{Endorser: endorser, Signature: sig}}}})
	tx := mustProto(t, &peer.Transaction{Actions: []*peer.TransactionAction{{Payload: cp}}})
	ch := mustProto(t, &common.ChannelHeader{TxId: txID})
	env := mustProto(t, &common.Envelope{Payload: mustProto(t, &common.Payload{Header: &common.Header{ChannelHeader: ch}, Data: tx})})
	md := make([][]byte, 5)
	md[common.BlockMetadataIndex_SIGNATURES] = mustProto(t, &common.Metadata{Value: mustProto(t, &common.OrdererBlockMetadata{LastConfig: &common.LastConfig{Index: lastConfig}})})
	return mustProto(t, &common.Block{Header: &common.BlockHeader{Number: 9}, Data: &common.BlockData{Data: [][]byte{env}}, Metadata: &common.BlockMetadata{Metadata: md}})
}

// TestCheckEndorsements: an endorsement verifies under its org's CA from
// the channel config; another CA's certificate, a changed signature or an
// org outside the config fails.
func TestCheckEndorsements(t *testing.T) {
	caPEM, leafPEM, key := caCert(t, "peer0.org1")
	cfg := configBlock(t, 3, "Org1MSP", caPEM)
	blk := endorsedBlock(t, "tx1", "Org1MSP", leafPEM, key, 3)
	if n, err := LastConfigIndex(blk); err != nil || n != 3 {
		t.Fatalf("LastConfigIndex = %d, %v; want 3", n, err)
	}
	if msps, err := CheckEndorsements(blk, cfg, "tx1"); err != nil || len(msps) != 1 || msps[0] != "Org1MSP" {
		t.Errorf("CheckEndorsements = %v, %v; want Org1MSP", msps, err)
	}
	r := &Report{}
	verifyEndorsements(r, blk, cfg, "tx1")
	if !r.OK() || len(r.Unproven()) != 0 {
		t.Errorf("verifyEndorsements: %+v", r.Checks)
	}
	otherCA, _, _ := caCert(t, "peer0.org1")
	_, otherLeaf, otherKey := caCert(t, "peer0.evil")
	for name, tc := range map[string]struct {
		blk, cfg []byte
	}{
		"another CA in the config":      {blk, configBlock(t, 3, "Org1MSP", otherCA)},
		"a certificate of another CA":   {endorsedBlock(t, "tx1", "Org1MSP", otherLeaf, otherKey, 3), cfg},
		"an org outside the config":     {endorsedBlock(t, "tx1", "Org9MSP", leafPEM, key, 3), cfg},
		"a signature by another key":    {endorsedBlock(t, "tx1", "Org1MSP", leafPEM, otherKey, 3), cfg},
		"an older config than in force": {endorsedBlock(t, "tx1", "Org1MSP", leafPEM, key, 5), cfg},
	} {
		r := &Report{}
		verifyEndorsements(r, tc.blk, tc.cfg, "tx1")
		if r.OK() {
			t.Errorf("verifyEndorsements(%s) passed", name)
		}
	}
	r = &Report{}
	verifyEndorsements(r, blk, nil, "tx1")
	if len(r.Unproven()) != 1 {
		t.Errorf("verifyEndorsements(no config block) = %+v, want not proven", r.Checks)
	}
}

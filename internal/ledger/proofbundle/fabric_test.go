package proofbundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
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

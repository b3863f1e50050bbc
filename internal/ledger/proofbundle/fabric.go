package proofbundle

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// CheckFabricBlock checks a Fabric block (its protobuf bytes, as qscc
// GetBlockByNumber gives it) offline: the header's data hash is the SHA-256
// of the block's transactions, the block has number block, and the
// transaction txID in it is valid (the block's validation flags) and writes
// value at key in chaincode namespace ns. Endorsement signatures are not
// checked here.
func CheckFabricBlock(raw []byte, block uint64, txID, ns, key string, value []byte) error {
	n, got, err := FabricWrite(raw, txID, ns, key)
	switch {
	case err != nil:
		return err
	case n != block:
		return fmt.Errorf("fabric block is number %d, the receipt says %d", n, block)
	case !bytes.Equal(got, value):
		return fmt.Errorf("fabric block %d: transaction %s writes other bytes at %s", block, txID, key)
	}
	return nil
}

// FabricWrite reads, from a Fabric block whose data hash holds its
// transactions, the value that valid transaction txID writes at key in
// chaincode namespace ns, and the block's number.
func FabricWrite(raw []byte, txID, ns, key string) (block uint64, value []byte, err error) {
	var b common.Block
	if err := proto.Unmarshal(raw, &b); err != nil {
		return 0, nil, fmt.Errorf("fabric block: %w", err)
	}
	block = b.GetHeader().GetNumber()
	sum := sha256.Sum256(bytes.Join(b.GetData().GetData(), nil))
	if !bytes.Equal(sum[:], b.GetHeader().GetDataHash()) {
		return block, nil, fmt.Errorf("fabric block %d: its data hash is not the hash of its transactions", block)
	}
	var flags []byte
	if md := b.GetMetadata().GetMetadata(); len(md) > int(common.BlockMetadataIndex_TRANSACTIONS_FILTER) {
		flags = md[common.BlockMetadataIndex_TRANSACTIONS_FILTER]
	}
	for i, envBytes := range b.GetData().GetData() {
		writes, id, err := envelopeWrites(envBytes, ns)
		if err != nil || id != txID {
			continue
		}
		if i >= len(flags) || peer.TxValidationCode(flags[i]) != peer.TxValidationCode_VALID {
			return block, nil, fmt.Errorf("fabric block %d: transaction %s is not marked valid", block, txID)
		}
		for _, w := range writes {
			if w.GetKey() == key && !w.GetIsDelete() {
				return block, w.GetValue(), nil
			}
		}
		return block, nil, fmt.Errorf("fabric block %d: transaction %s does not write %s", block, txID, key)
	}
	return block, nil, fmt.Errorf("fabric block %d does not hold transaction %s", block, txID)
}

// envelopeWrites is a transaction envelope's id and its writes in ns.
func envelopeWrites(envBytes []byte, ns string) ([]*kvrwset.KVWrite, string, error) {
	var env common.Envelope
	var pl common.Payload
	var ch common.ChannelHeader
	var tx peer.Transaction
	if err := proto.Unmarshal(envBytes, &env); err != nil {
		return nil, "", err
	}
	if err := proto.Unmarshal(env.GetPayload(), &pl); err != nil {
		return nil, "", err
	}
	if err := proto.Unmarshal(pl.GetHeader().GetChannelHeader(), &ch); err != nil {
		return nil, "", err
	}
	if err := proto.Unmarshal(pl.GetData(), &tx); err != nil {
		return nil, "", err
	}
	var out []*kvrwset.KVWrite
	for _, act := range tx.GetActions() {
		var cp peer.ChaincodeActionPayload
		var prp peer.ProposalResponsePayload
		var ca peer.ChaincodeAction
		var rws rwset.TxReadWriteSet
		if err := proto.Unmarshal(act.GetPayload(), &cp); err != nil {
			return nil, "", err
		}
		if err := proto.Unmarshal(cp.GetAction().GetProposalResponsePayload(), &prp); err != nil {
			return nil, "", err
		}
		if err := proto.Unmarshal(prp.GetExtension(), &ca); err != nil {
			return nil, "", err
		}
		if err := proto.Unmarshal(ca.GetResults(), &rws); err != nil {
			return nil, "", err
		}
		for _, n := range rws.GetNsRwset() {
			if n.GetNamespace() != ns {
				continue
			}
			var kv kvrwset.KVRWSet
			if err := proto.Unmarshal(n.GetRwset(), &kv); err != nil {
				return nil, "", err
			}
			out = append(out, kv.GetWrites()...)
		}
	}
	return out, ch.GetTxId(), nil
}

package fileledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"twinchain/internal/ledger/eventtree"
)

// BlockDomain opens the bytes every block hash covers.
const BlockDomain = "twinchain-block-v1\n"

// Block is one signed block: its Body (the exact JSON bytes of a BlockBody),
// Hash = SHA-256(BlockDomain || Body) and the service key's Ed25519
// signature over Hash. One line of blocks.dat holds one Block as JSON.
type Block struct {
	Body json.RawMessage `json:"body"`
	Hash eventtree.Hash  `json:"hash"`
	Key  eventtree.Hash  `json:"key"`
	Sig  eventtree.Hash  `json:"sig"`
}

// BlockBody is what a block says.
type BlockBody struct {
	Height     uint64         `json:"height"` // from 1
	Prev       eventtree.Hash `json:"prev"`   // previous block's hash; 32 zero bytes for block 1
	Time       time.Time      `json:"time"`
	Txs        []Tx           `json:"txs"`
	Writes     []Write        `json:"writes"`      // sorted by key
	WritesHash eventtree.Hash `json:"writes_hash"` // WriteSetHash(Writes)
}

// Tx is one transaction in a block: which core function ran, with what
// input, for whom, and what it returned.
type Tx struct {
	ID     string          `json:"id"`
	Func   string          `json:"func"`
	Args   json.RawMessage `json:"args"`
	Caller Caller          `json:"caller"`
	Time   time.Time       `json:"time"`
	Status string          `json:"status"` // "ok"
	Result json.RawMessage `json:"result,omitempty"`
}

// Caller mirrors the core's caller in a block.
type Caller struct {
	ID   string `json:"id"`
	MSP  string `json:"msp"`
	Role string `json:"role"`
}

// Write is one world-state write; Delete is set for a deletion.
type Write struct {
	Key    string `json:"key"`
	Value  []byte `json:"value,omitempty"` // base64 in JSON
	Delete bool   `json:"delete,omitempty"`
}

// WriteSetHash is SHA-256 over the writes in key order, each as
// len(key) key flag len(value) value (lengths as 8-byte big-endian, flag 1
// for a delete).
func WriteSetHash(ws []Write) []byte {
	h := sha256.New()
	var n [8]byte
	for _, w := range ws {
		binary.BigEndian.PutUint64(n[:], uint64(len(w.Key)))
		h.Write(n[:])
		h.Write([]byte(w.Key))
		if w.Delete {
			h.Write([]byte{1})
		} else {
			h.Write([]byte{0})
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(w.Value)))
		h.Write(n[:])
		h.Write(w.Value)
	}
	return h.Sum(nil)
}

// BlockHash is SHA-256(BlockDomain || body).
func BlockHash(body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(BlockDomain))
	h.Write(body)
	return h.Sum(nil)
}

func sortWrites(ws []Write) {
	slices.SortFunc(ws, func(a, b Write) int { return bytes.Compare([]byte(a.Key), []byte(b.Key)) })
}

// sealBlock encodes and signs a body.
func sealBlock(key ed25519.PrivateKey, body *BlockBody) (Block, error) {
	sortWrites(body.Writes)
	body.WritesHash = WriteSetHash(body.Writes)
	raw, err := json.Marshal(body)
	if err != nil {
		return Block{}, fmt.Errorf("encode block %d: %w", body.Height, err)
	}
	h := BlockHash(raw)
	return Block{Body: raw, Hash: h, Key: eventtree.Hash(key.Public().(ed25519.PublicKey)), Sig: ed25519.Sign(key, h)}, nil
}

// CheckBlock checks a block on its own: its hash, its signature by pub and
// its write-set hash. It returns the decoded body.
func CheckBlock(b *Block, pub ed25519.PublicKey) (BlockBody, error) {
	var body BlockBody
	if !bytes.Equal(BlockHash(b.Body), b.Hash) {
		return body, fmt.Errorf("block hash does not match its body")
	}
	if !bytes.Equal(b.Key, pub) {
		return body, fmt.Errorf("block is signed by key %s, not the service key %x", b.Key, []byte(pub))
	}
	if len(b.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, b.Hash, b.Sig) {
		return body, fmt.Errorf("block signature does not verify")
	}
	if err := json.Unmarshal(b.Body, &body); err != nil {
		return body, fmt.Errorf("block body: %w", err)
	}
	if !bytes.Equal(WriteSetHash(body.Writes), body.WritesHash) {
		return body, fmt.Errorf("write set does not match its hash")
	}
	return body, nil
}

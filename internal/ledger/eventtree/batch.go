package eventtree

import (
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/compact"
)

// RangeInclusionProof proves that leaf index (absolute, begin <= index <
// end) is in the tree made of the leaves [begin, end) alone, whose root is
// RootOfRange(begin, end): the proof an anchor's batch root needs.
func (t *Tree) RangeInclusionProof(begin, end, index uint64) ([][]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if begin >= end || end > t.size || index < begin || index >= end {
		return nil, fmt.Errorf("leaf %d in range [%d,%d) of a %d-leaf tree: out of bounds", index, begin, end, t.size)
	}
	hashes := make([][]byte, 0, end-begin)
	for i := begin; i < end; i++ {
		h, err := t.node(compact.NewNodeID(0, i))
		if err != nil {
			return nil, err
		}
		hashes = append(hashes, h)
	}
	return path(index-begin, hashes), nil
}

// path is RFC 6962's PATH(m, D[n]) over leaf hashes: the audit path of leaf
// m, leaf side first.
func path(m uint64, leaves [][]byte) [][]byte {
	n := uint64(len(leaves))
	if n <= 1 {
		return nil
	}
	k := uint64(1) << (bits.Len64(n-1) - 1) // largest power of two < n
	if m < k {
		return append(path(m, leaves[:k]), subtreeRoot(leaves[k:]))
	}
	return append(path(m-k, leaves[k:]), subtreeRoot(leaves[:k]))
}

// subtreeRoot is MTH over leaf hashes.
func subtreeRoot(leaves [][]byte) []byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1 << (bits.Len(uint(len(leaves)-1)) - 1)
	return HashChildren(subtreeRoot(leaves[:k]), subtreeRoot(leaves[k:]))
}

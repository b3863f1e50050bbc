package fabricledger_test

import (
	"testing"

	"twinchain/internal/ledger"
	"twinchain/internal/ledger/fabricledger/fabrictest"
	"twinchain/internal/ledger/ledgertest"
)

// TestContract runs the ledger contract suite against a real Fabric network
// running the twinchain chaincode. Peers and orderers cannot be installed
// here, so it runs only where FABRIC_BIN points at Fabric 2.5 binaries and a
// network started from them is described by TWINCHAIN_FABRIC_* variables.
// Each subtest takes a test channel no earlier run used (fabrictest.Fresh),
// so the suite runs again on the same network while channels last.
func TestContract(t *testing.T) {
	fabrictest.Skip(t)
	ledgertest.Run(t, func(t *testing.T) ledger.Ledger { return fabrictest.Fresh(t) })
}

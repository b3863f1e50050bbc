package fileledger

import (
	"testing"

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

package main

import (
	"strings"
	"testing"

	"twinchain/internal/testsvc"
)

// TestNoFabricSDK fails when twin-service links fabric-sdk-go: its old
// fabric-protos-go registers the same protobuf names as fabric-gateway's
// fabric-protos-go-apiv2, and the binary would panic at start-up.
// Enrollment lives in internal/ledger/fabricca for that reason.
func TestNoFabricSDK(t *testing.T) {
	deps := testsvc.Deps(t)
	gateway := false
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/hyperledger/fabric-sdk-go") || strings.HasPrefix(d, "github.com/hyperledger/fabric-protos-go/") || d == "twinchain/internal/ledger/fabricca" {
			t.Errorf("twin-service links %s", d)
		}
		gateway = gateway || strings.HasPrefix(d, "github.com/hyperledger/fabric-gateway/")
	}
	if !gateway {
		t.Errorf("go list -deps ./twin-service lacks fabric-gateway; is the list complete?")
	}
}

package core

import (
	"fmt"
	"testing"
	"time"
)

// The benchmarks run the core on the in-memory test state, so they measure
// the rules (validation, JSON, signature checks), not a store.

func BenchmarkSubmitAnchor(b *testing.B) {
	l := newLedger(&testing.T{})
	b.ReportAllocs()
	for i := range b.N {
		first := uint64(i)*100 + 1
		if _, err := submit(l, anchorIn(first, first+99, fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordEvidence(b *testing.B) {
	t := &testing.T{}
	l := world(t)
	key := gatewayKey()
	envs := make([][]byte, b.N)
	for i := range envs {
		envs[i] = seal(t, key, gw, uint64(i+1), t0.Add(time.Duration(i)*time.Millisecond), "telemetry", telemetry(gpu0, 1, 0, false))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := do(l, RoleService, func(tx *Tx) (Evidence, error) {
			return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: EvidenceECCDBE, Envelope: envs[i]})
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRequestDeployment(b *testing.B) {
	l := mlWorld(&testing.T{})
	l.approveAll("m1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d, err := requestDeployment(l, deployment(fmt.Sprintf("d%d", i), "m1", gpu0))
		if err != nil || !d.Allowed {
			b.Fatal(err, d.Reasons)
		}
	}
}

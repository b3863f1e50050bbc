package anchor

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger/ledgertest"
	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

// TestEvidenceAfterReKey pins down what the ledger does with a re-keyed
// gateway's evidence today (docs/ledger.md, "Gateway keys on the ledger"):
// the anchorer registers a gateway on the ledger once, with the key the
// registry has when it gets to its first event, and never changes it (the
// core lets only admin and security set a gateway key); the core verifies
// evidence against that one key and files it under (gateway, sequence).
// So after a re-key, evidence signed with the retired key is recorded,
// evidence signed with the new key is refused and counted
// (evidence_dropped) until security sets the new key on the ledger, and
// then a new-key message whose sequence number the old key already used is
// refused as a conflict.
func TestEvidenceAfterReKey(t *testing.T) {
	r := newRig(t, Config{Interval: 30 * time.Millisecond})
	send := func(key ed25519.PrivateKey, seq uint64, vbios string) {
		t.Helper()
		inv := wire.Inventory{Host: wire.HostInfo{Asset: "srv-s1-001", Serial: "HOST-1"}, GPUs: []wire.GPUIdentity{
			{Asset: "srv-s1-001.gpu0", Index: 0, UUID: "GPU-a0", Serial: "S0", PCIBusID: "0000:01:00.0", VBIOS: vbios, Driver: "550.54"}}}
		raw, err := wire.Seal(key, gw, seq, time.Now(), wire.KindFirmware, inv)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.in.Submit(ingest.Source{}, wire.Topic(gw, wire.KindFirmware), raw)
		if err != nil || out.Reason != "" {
			t.Fatalf("seq %d: %s %v %v", seq, out.Reason, out.Err, err)
		}
	}
	check := func(what string, wantSeqs []uint64, wantDropped uint64) {
		t.Helper()
		r.waitAnchored(what)
		ev, err := r.led.ListEvidence(svc, "srv-s1-001.gpu0")
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, e := range ev {
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, wantSeqs) {
			t.Errorf("%s: evidence from sequence numbers %v, want %v", what, seqs, wantSeqs)
		}
		if st := r.a.Stats(); st.EvidenceDropped != wantDropped {
			t.Errorf("%s: evidence_dropped = %d, want %d", what, st.EvidenceDropped, wantDropped)
		}
	}
	send(gwKey, 1, "96.00.89.00.01") // registers the gateway (its key) and the GPU
	send(gwKey, 2, "96.00.89.00.02") // a firmware change: evidence
	check("before the re-key", []uint64{2}, 0)

	// The agent is re-keyed; its queue still holds a message signed before.
	newKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x33}, 32))
	if err := r.reg.Put(registry.Gateway{ID: gw, PublicKey: newKey.Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	send(gwKey, 3, "96.00.89.00.03")  // the retired key, in its own epoch: recorded
	send(newKey, 1, "96.00.89.00.04") // the new key: refused by the ledger
	check("after the re-key", []uint64{2, 3}, 1)

	// Security sets the new key on the ledger.
	if _, err := r.led.SetGatewayKey(ledgertest.As(core.RoleSecurity), core.KeyChange{Asset: gw,
		PublicKey: hex.EncodeToString(newKey.Public().(ed25519.PublicKey)), Reason: "re-keyed"}); err != nil {
		t.Fatal(err)
	}
	send(newKey, 2, "96.00.89.00.05") // the old key's seq 2 holds that place: a conflict
	send(newKey, 4, "96.00.89.00.06") // recorded
	check("after the ledger's key change", []uint64{2, 3, 4}, 2)
}

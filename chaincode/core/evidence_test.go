package core

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"
)

func TestRecordEvidence(t *testing.T) {
	key := gatewayKey()
	seed := sha256.Sum256([]byte("someone else"))
	otherKey := ed25519.NewKeyFromSeed(seed[:])
	golden := goldenEnvelopes(t)
	ts := t0.Add(-30 * time.Minute)
	tel := func(seq uint64, body string) []byte { return seal(t, key, gw, seq, ts, "telemetry", body) }
	tampered := bytes.Replace(golden["firmware"], []byte("550.54.15"), []byte("550.54.16"), 1)
	tests := []struct {
		name  string
		asset string
		kind  EvidenceKind
		env   []byte
		setup func(l *ledger)
		want  error
	}{
		{"firmware of a gpu", gpu0, EvidenceFirmware, golden["firmware"], nil, nil},
		{"firmware of the host", server, EvidenceFirmware, golden["firmware"], nil, nil},
		{"swap", gpu0, EvidenceSwap, golden["firmware"], nil, nil},
		{"quarantine from telemetry", gpu0, EvidenceQuarantine, golden["telemetry"], nil, nil},
		{"quarantine from rfid", gpu0, EvidenceQuarantine, golden["rfid"], nil, nil},
		{"gateway status", gw, EvidenceGateway, golden["status"], nil, nil},
		{"gps names the gateway", gw, EvidenceQuarantine, golden["gps"], nil, nil},
		{"alert on a workloads report", gpu0, EvidenceAlert, seal(t, key, gw, 107, ts, "workloads",
			`{"host":"srv-s1-001","gpus":[{"asset":"srv-s1-001.gpu0","processes":[{"pid":7,"name":"vllm","mem_bytes":1}]}]}`), nil, nil},
		{"alert on a report of another gpu", gpu1, EvidenceAlert, seal(t, key, gw, 108, ts, "workloads",
			`{"host":"srv-s1-001","gpus":[{"asset":"srv-s1-001.gpu0","processes":[]}]}`), nil, ErrInvalid},
		{"xid", gpu0, EvidenceXID, tel(100, telemetry(gpu0, 0, 2, false)), nil, nil},
		{"ecc dbe", gpu0, EvidenceECCDBE, tel(101, telemetry(gpu0, 1, 0, false)), nil, nil},
		{"row remap failure", gpu0, EvidenceRowRemap, tel(102, telemetry(gpu0, 0, 0, true)), nil, nil},
		{"xid not shown", gpu0, EvidenceXID, tel(103, telemetry(gpu0, 1, 0, false)), nil, ErrInvalid},
		{"xid in a sample of a several-sample message", gpu0, EvidenceXID, golden["telemetry_samples"], nil, nil},
		{"dbe in no sample", gpu0, EvidenceECCDBE, golden["telemetry_samples"], nil, ErrInvalid},
		{"quarantine from several samples", gpu0, EvidenceQuarantine, golden["telemetry_samples"], nil, nil},
		{"dbe not shown", gpu0, EvidenceECCDBE, golden["telemetry"], nil, ErrInvalid},
		{"remap not shown", gpu0, EvidenceRowRemap, tel(104, telemetry(gpu0, 1, 1, false)), nil, ErrInvalid},
		{"dbe of another gpu", gpu0, EvidenceECCDBE, tel(105, telemetry(gpu1, 1, 0, false)), nil, ErrInvalid},
		{"asset not in the envelope", gpu1, EvidenceFirmware, golden["firmware"], nil, ErrInvalid},
		{"xid from a firmware envelope", gpu0, EvidenceXID, golden["firmware"], nil, ErrInvalid},
		{"swap from telemetry", gpu0, EvidenceSwap, golden["telemetry"], nil, ErrInvalid},
		{"status is not about a gpu", gpu0, EvidenceQuarantine, golden["status"], nil, ErrInvalid},
		{"gateway evidence from telemetry", gw, EvidenceGateway, golden["telemetry"], nil, ErrInvalid},
		{"changed body", gpu0, EvidenceFirmware, tampered, nil, ErrInvalid},
		{"signed by another key", gpu0, EvidenceXID, seal(t, otherKey, gw, 106, ts, "telemetry", telemetry(gpu0, 0, 1, false)), nil, ErrInvalid},
		{"key rotated away", gpu0, EvidenceFirmware, golden["firmware"], func(l *ledger) {
			must(l, RoleSecurity, func(tx *Tx) (Asset, error) { return SetGatewayKey(tx, KeyChange{gw, pubHex(otherKey), "stolen"}) })
		}, ErrInvalid},
		{"unregistered gateway", gpu0, EvidenceXID, seal(t, key, "gw-x", 1, ts, "telemetry", telemetry(gpu0, 0, 1, false)), nil, ErrNotFound},
		{"signer is not a gateway", gpu0, EvidenceXID, seal(t, key, server, 1, ts, "telemetry", telemetry(gpu0, 0, 1, false)), nil, ErrInvalid},
		{"retired gateway", gpu0, EvidenceFirmware, golden["firmware"], func(l *ledger) {
			must(l, RoleAssetManager, func(tx *Tx) (Asset, error) { return SetAssetStatus(tx, StatusChange{gw, StatusRetired, "eol"}) })
		}, ErrConflict},
		{"unregistered asset", "srv-s1-001.gpu7", EvidenceQuarantine, golden["rfid"], nil, ErrNotFound},
		{"bad asset id", "a/b", EvidenceQuarantine, golden["rfid"], nil, ErrInvalid},
		{"unknown kind", gpu0, "meltdown", golden["firmware"], nil, ErrInvalid},
		{"not an envelope", gpu0, EvidenceFirmware, []byte(`{"v":1}`), nil, ErrInvalid},
		{"other bytes, same sequence", gpu0, EvidenceFirmware, seal(t, key, gw, 42, ts, "firmware", `{"host":{"asset":"srv-s1-001"},"gpus":[{"asset":"srv-s1-001.gpu0"}]}`), func(l *ledger) {
			must(l, RoleService, func(tx *Tx) (Evidence, error) {
				return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: EvidenceFirmware, Envelope: golden["firmware"]})
			})
		}, ErrConflict},
	}
	for _, tt := range tests {
		l := world(t)
		if tt.setup != nil {
			tt.setup(l)
		}
		in := EvidenceInput{Asset: tt.asset, Kind: tt.kind, Envelope: tt.env, EventID: 7, Revision: 2, Note: "n"}
		got, err := do(l, RoleService, func(tx *Tx) (Evidence, error) { return RecordEvidence(tx, in) })
		wantErr(t, "RecordEvidence("+tt.name+")", err, tt.want)
		if err != nil {
			continue
		}
		env, _ := ParseEnvelope(tt.env)
		if got.Gateway != env.Gateway || got.Seq != env.Seq || !got.EventTime.Equal(env.Time) || got.EventID != 7 ||
			got.Revision != 2 || !bytes.Equal(got.Envelope, tt.env) || got.EnvelopeHash != hashOf(string(tt.env)) {
			t.Errorf("RecordEvidence(%s) = %+v, want fields from the envelope", tt.name, got)
		}
		// Recording the same envelope again changes nothing.
		before := l.st.dump()
		again, err := do(l, RoleSecurity, func(tx *Tx) (Evidence, error) { return RecordEvidence(tx, in) })
		if err != nil || again.Stamp != got.Stamp || l.st.dump() != before {
			t.Errorf("RecordEvidence(%s) again = %v, stamp %v, want the stored record and no write", tt.name, err, again.Stamp)
		}
		list := must(l, RoleAuditor, func(tx *Tx) ([]Evidence, error) { return ListEvidence(tx, tt.asset) })
		if len(list) != 1 {
			t.Errorf("ListEvidence(%s) has %d records, want 1", tt.asset, len(list))
		}
	}
}

func TestEvidenceOrder(t *testing.T) {
	l := world(t)
	key := gatewayKey()
	for i, at := range []time.Duration{3, 1, 2} {
		env := seal(t, key, gw, uint64(200-i), t0.Add(at*time.Minute), "telemetry", telemetry(gpu0, 1, 0, false))
		must(l, RoleService, func(tx *Tx) (Evidence, error) {
			return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: EvidenceECCDBE, Envelope: env})
		})
	}
	list := must(l, RoleAuditor, func(tx *Tx) ([]Evidence, error) { return ListEvidence(tx, gpu0) })
	for i := 1; i < len(list); i++ {
		if list[i].EventTime.Before(list[i-1].EventTime) {
			t.Errorf("ListEvidence not in time order: %s before %s", list[i-1].EventTime, list[i].EventTime)
		}
	}
	if len(list) != 3 {
		t.Errorf("ListEvidence = %d records, want 3", len(list))
	}
}

// TestGatewayKeyPolicy: with trusted keys only, the service can neither
// register a gateway nor have evidence accepted under a key it registered,
// until security confirms the key.
func TestGatewayKeyPolicy(t *testing.T) {
	l := newLedger(t)
	key := pubHex(gatewayKey())
	fw := goldenEnvelopes(t)["firmware"]
	for _, id := range []string{server, gpu0} {
		l.registerAsset(id, "gpu", "")
	}
	// Policy off: the service registers the gateway; evidence names who set the key.
	must(l, RoleService, func(tx *Tx) (Asset, error) {
		return RegisterAsset(tx, AssetRegistration{ID: gw, Kind: AssetKindGateway, FingerprintHash: hashOf(gw), PublicKey: key})
	})
	ev := must(l, RoleService, func(tx *Tx) (Evidence, error) {
		return RecordEvidence(tx, EvidenceInput{Asset: gpu0, Kind: EvidenceFirmware, Envelope: fw})
	})
	if ev.KeyRole != RoleService {
		t.Errorf("evidence key role = %q, want service", ev.KeyRole)
	}
	p := must(l, RoleSecurity, func(tx *Tx) (GatewayKeyPolicy, error) {
		return SetGatewayKeyPolicy(tx, GatewayKeyPolicy{TrustedKeysOnly: true})
	})
	got := must(l, RoleAuditor, func(tx *Tx) (GatewayKeyPolicy, error) { return GetGatewayKeyPolicy(tx, NoArgs{}) })
	if !got.TrustedKeysOnly || got.Stamp == nil || got.Stamp.Role != RoleSecurity || p.Stamp.TxID != got.Stamp.TxID {
		t.Errorf("GetGatewayKeyPolicy = %+v, want trusted keys only, set by security", got)
	}
	_, err := do(l, RoleService, func(tx *Tx) (Asset, error) {
		return RegisterAsset(tx, AssetRegistration{ID: "gw-2", Kind: AssetKindGateway, FingerprintHash: hashOf("gw-2"), PublicKey: key})
	})
	wantErr(t, "RegisterAsset(gateway by service, trusted keys only)", err, ErrForbidden)
	_, err = do(l, RoleService, func(tx *Tx) (Asset, error) {
		return RegisterAsset(tx, AssetRegistration{ID: "gpu-9", Kind: "gpu", FingerprintHash: hashOf("gpu-9")})
	})
	wantErr(t, "RegisterAsset(gpu by service, trusted keys only)", err, nil)
	env := seal(t, gatewayKey(), gw, 43, t0, "telemetry", telemetry(gpu0, 1, 0, false))
	in := EvidenceInput{Asset: gpu0, Kind: EvidenceECCDBE, Envelope: env}
	_, err = do(l, RoleService, func(tx *Tx) (Evidence, error) { return RecordEvidence(tx, in) })
	wantErr(t, "RecordEvidence(key set by the service, trusted keys only)", err, ErrForbidden)

	// Security confirms the key: a history entry, a new key stamp, evidence accepted.
	a := must(l, RoleSecurity, func(tx *Tx) (Asset, error) { return SetGatewayKey(tx, KeyChange{gw, key, "checked on site"}) })
	if a.Revision != 2 || a.KeyStamp.Role != RoleSecurity || a.PublicKey != key {
		t.Errorf("confirmed gateway = revision %d key stamp %+v, want revision 2 stamped by security", a.Revision, a.KeyStamp)
	}
	ev, err = do(l, RoleService, func(tx *Tx) (Evidence, error) { return RecordEvidence(tx, in) })
	wantErr(t, "RecordEvidence(key confirmed by security)", err, nil)
	if ev.KeyRole != RoleSecurity {
		t.Errorf("evidence key role = %q, want security", ev.KeyRole)
	}
	// Confirming again changes nothing.
	a = must(l, RoleAdmin, func(tx *Tx) (Asset, error) { return SetGatewayKey(tx, KeyChange{gw, key, "again"}) })
	if a.Revision != 2 {
		t.Errorf("second confirmation revision = %d, want 2", a.Revision)
	}
}

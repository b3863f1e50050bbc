package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/wire"
)

// FuzzCheck feeds outside bytes (topic and payload) to the checks that run
// before the writer: they must never panic, and what they accept must be
// consistent with its topic.
func FuzzCheck(f *testing.F) {
	const gw = "gw-fuzz"
	reg := benchRegistry(0)
	reg.Put(registryGateway(gw))
	for i, k := range wire.Kinds {
		f.Add(wire.Topic(gw, k), seal(f, gw, uint64(i+1), t0, k, sampleBody(k)))
	}
	golden, _ := filepath.Glob("../wire/testdata/*.golden.json")
	for _, p := range golden {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(wire.Topic("gw-s1-01", wire.KindTelemetry), data)
		}
	}
	f.Add("twinchain/v1/gw/gw-fuzz/telemetry", []byte(`{"v":1,"gw":"gw-fuzz","seq":1,"ts":"2026-11-25T12:00:00Z","kind":"telemetry","body":{},"sig":"AAAA"}`))
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		var m message
		rej := check(&m, topic, payload, reg, t0, time.Hour)
		if rej != nil {
			if rej.reason == "" || rej.err == nil {
				t.Fatalf("rejection without reason or error: %+v", rej)
			}
			return
		}
		gwT, kind, err := wire.ParseTopic(topic)
		if err != nil || gwT != m.env.Gateway || kind != m.env.Kind {
			t.Fatalf("accepted %s/%s on topic %q (%v)", m.env.Gateway, m.env.Kind, topic, err)
		}
		if m.env.Body != nil || m.env.Sig != nil {
			t.Fatalf("accepted message still holds its envelope's body (%d bytes) and signature (%d): they wait in the writer's queue", len(m.env.Body), len(m.env.Sig))
		}
	})
}

// FuzzSignedBody signs arbitrary JSON bodies with a registered key, so they
// pass the signature check, and pushes them through the whole ingest: the
// fold and the store must not fail on any body that decodes.
func FuzzSignedBody(f *testing.F) {
	const gw = "gw-fuzz"
	for i, k := range wire.Kinds {
		body, _ := json.Marshal(sampleBody(k))
		f.Add(uint8(i), uint64(i+1), int64(i), body)
	}
	f.Add(uint8(0), uint64(7), int64(0), []byte(`{"host":"h","gpus":[{"asset":"h"},{"asset":"h"}]}`))
	f.Add(uint8(2), uint64(8), int64(0), []byte(`{"reads":[{"epc":"E1","zone":"z"},{"epc":"E1","zone":"y"}]}`))
	f.Add(uint8(1), uint64(9), int64(0), []byte(`{"host":{"asset":"gw-fuzz","rfid_tag":"E1"},"gpus":[{"asset":"gw-fuzz"}]}`))
	r := newRig(f, Config{}, gw)
	f.Fuzz(func(t *testing.T, kindIdx uint8, seq uint64, offset int64, body []byte) {
		kind := wire.Kinds[int(kindIdx)%len(wire.Kinds)]
		ts := t0.Add(time.Duration(offset % int64(24*time.Hour)))
		payload, err := wire.SealRaw(testKey(gw), gw, seq, ts, kind, body)
		if err != nil {
			return // not JSON, or sequence 0 of another kind
		}
		if _, err := r.in.Submit(Source{}, wire.Topic(gw, kind), payload); err != nil {
			t.Fatalf("Submit(%s %q) = %v: the store failed", kind, body, err)
		}
	})
}

func sampleBody(k wire.Kind) any {
	switch k {
	case wire.KindTelemetry:
		return telemetry("srv-z", 2, 0)
	case wire.KindFirmware:
		return inventory("srv-z", 2, "96.0")
	case wire.KindRFID:
		return wire.RFID{Reads: []wire.RFIDRead{{EPC: "E200srv-z", Zone: "dock", ReadPoint: "door"}}}
	case wire.KindGPS:
		return wire.GPSFix{Lat: 52.5, Lon: 13.4, Quality: 1, FixTime: t0}
	}
	return status(wire.StateOnline)
}

package wire_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/sim/fleet"
	"twinchain/internal/wire"
)

// TestAgentBodiesTakeTheFastPath: the telemetry bodies the load generator
// and the edge agent send, in both forms, and their envelopes, are ones
// DecodeTelemetry's and Decode's scanners decode themselves, so they cannot
// fall back to the general path for all of them unnoticed.
func TestAgentBodiesTakeTheFastPath(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	bodies := map[string]*wire.Telemetry{}

	// The simulated fleet (internal/sim/fleet), as the load generator
	// (internal/sim/load) builds its messages: the one-sample form, and 10
	// samples a tenth of the period apart. Some GPUs have XIDs and some are
	// overheating (throttled), so every field is written.
	f, err := fleet.New(fleet.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	hosts := 0
	for _, g := range f.Gateways {
		if g.Host == nil {
			continue
		}
		hosts++
		for i, asset := range g.Assets() {
			if gpu := g.GPU(asset); gpu != nil && i%3 == 0 {
				gpu.InjectXID(79)
				gpu.InjectXID(13)
				gpu.SetTemp(95)
			}
		}
		bodies[g.ID+" one sample"] = g.Sample(at, 10*time.Second)
		const n, period = 10, 10 * time.Second
		tel := &wire.Telemetry{Host: g.Host.Info.Asset, Samples: make([]wire.TelemetrySample, n)}
		for j := range n {
			ts := at.Add(-time.Duration(n-1-j) * period / n)
			tel.Samples[j] = wire.TelemetrySample{TS: ts, GPUs: g.Sample(ts, period/n).GPUs}
		}
		bodies[g.ID+" 10 samples"] = tel
	}
	if hosts == 0 {
		t.Fatal("the default fleet has no hosts")
	}

	// The edge agent's bodies (internal/edge/gpu's golden telemetry from
	// captured NVML snapshots), in the one-sample form and as its collector
	// batches them (internal/edge/gpu.batch): several instants, oldest first,
	// at the times of an agent's clock in a zone east of UTC (json.Marshal
	// writes the offset).
	cet := time.FixedZone("CET", 3600)
	golden, err := filepath.Glob(filepath.Join("..", "edge", "gpu", "testdata", "*.telemetry.golden.json"))
	if err != nil || len(golden) == 0 {
		t.Fatalf("edge agent golden telemetry: %v, %d files", err, len(golden))
	}
	for _, path := range golden {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var one wire.Telemetry
		if err := json.Unmarshal(data, &one); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		bodies[filepath.Base(path)] = &one
		batch := &wire.Telemetry{Host: one.Host}
		for j := range 6 {
			batch.Samples = append(batch.Samples, wire.TelemetrySample{TS: at.Add(time.Duration(j-5) * 10 * time.Second).In(cet), GPUs: one.GPUs})
		}
		bodies[filepath.Base(path)+" batched"] = batch
	}

	key := f.Gateways[0].Key
	for name, tel := range bodies {
		data, err := wire.Seal(key, "gw-1", 1, at, wire.KindTelemetry, tel)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := wire.ScanEnvelope(data); !ok {
			t.Errorf("%s: the scanner declines the envelope %.300s", name, data)
		}
		env, err := wire.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := wire.ScanTelemetry(env.Body); !ok {
			t.Errorf("%s: the scanner declines the body %.300s", name, env.Body)
		}
		if _, err := wire.DecodeTelemetry(&env); err != nil {
			t.Errorf("%s: DecodeTelemetry = %v", name, err)
		}
	}
}

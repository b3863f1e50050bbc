package ingest

import (
	"testing"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestHealthXIDNotMasked: XID 79 (fallen off the bus) and XID 31 (a page
// fault) in the same sample leave the GPU's twin critical: the later,
// harmless XID does not hide the critical one.
func TestHealthXIDNotMasked(t *testing.T) {
	const gw, host = "gw-x", "srv-x"
	r := newRig(t, Config{}, gw)
	bodies := []struct {
		kind wire.Kind
		body any
	}{{wire.KindFirmware, inventory(host, 1, "96.0")}, {wire.KindTelemetry, telemetry(host, 1, 0)}}
	tel := telemetry(host, 1, 0)
	tel.GPUs[0].XIDCount, tel.GPUs[0].LastXID, tel.GPUs[0].XIDs = 2, 31, []int{79, 31}
	bodies = append(bodies, struct {
		kind wire.Kind
		body any
	}{wire.KindTelemetry, tel})
	for i, b := range bodies {
		if out := r.submit(gw, b.kind, seal(t, gw, uint64(i+1), t0.Add(time.Duration(i)*time.Second), b.kind, b.body)); !out.Accepted() {
			t.Fatalf("message %d: %s %v", i+1, out.Reason, out.Err)
		}
	}
	g, err := r.store.Asset(host + ".gpu0")
	if err != nil {
		t.Fatal(err)
	}
	if g.Health.State != twin.HealthCritical || g.Health.LastXID != 31 {
		t.Errorf("health after XIDs 79, 31 = %q (last xid %d), want critical", g.Health.State, g.Health.LastXID)
	}
}

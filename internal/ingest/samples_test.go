package ingest

import (
	"testing"
	"time"

	"twinchain/internal/wire"
)

// samples is a host's telemetry at n instants one second apart, the newest
// at end; the GPUs' temperatures are the sample's index, and sample xidAt
// (when >= 0) reports XID 79 on gpu1 from then on.
func samples(host string, gpus, n int, end time.Time, xidAt int) wire.Telemetry {
	tel := wire.Telemetry{Host: host}
	for j := range n {
		s := telemetry(host, gpus, 0)
		for i := range s.GPUs {
			s.GPUs[i].TempC = float64(j)
			if xidAt >= 0 && j >= xidAt && i == 1 {
				s.GPUs[i].LastXID, s.GPUs[i].XIDCount, s.GPUs[i].XIDs = 79, 1, []int{79}
			}
		}
		tel.Samples = append(tel.Samples, wire.TelemetrySample{TS: end.Add(-time.Duration(n-1-j) * time.Second), GPUs: s.GPUs})
	}
	return tel
}

// TestTelemetrySamples folds several-sample messages: a GPU counts samples,
// not messages; its latest readings and last seen are the newest sample's;
// an event a sample causes carries that sample's time; and a message whose
// samples break the contract is rejected as bad_samples, counted, with
// nothing of it stored.
func TestTelemetrySamples(t *testing.T) {
	const gw, host = "gw-s", "srv-s"
	r := newRig(t, Config{}, gw)
	end := t0.Add(10 * time.Second)
	if out := r.submit(gw, wire.KindTelemetry, seal(t, gw, 1, end, wire.KindTelemetry, samples(host, 2, 5, end, 2))); !out.Accepted() {
		t.Fatalf("5 samples: %s %v", out.Reason, out.Err)
	}
	if out := r.submit(gw, wire.KindTelemetry, seal(t, gw, 2, end.Add(time.Second), wire.KindTelemetry, telemetry(host, 2, 0))); !out.Accepted() {
		t.Fatalf("one-sample form: %s %v", out.Reason, out.Err)
	}
	g, err := r.store.Asset(host + ".gpu1")
	if err != nil {
		t.Fatal(err)
	}
	if g.Health.Samples != 6 || !g.LastSeen.Equal(end.Add(time.Second)) || g.Health.Latest == nil || g.Health.Latest.TempC != 50 {
		t.Errorf("gpu1 = %d samples, last seen %s, latest %+v; want 6, %s, the one-sample message's (50 °C)", g.Health.Samples, g.LastSeen, g.Health.Latest, end.Add(time.Second))
	}
	events, err := r.store.AssetEvents(host+".gpu1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var xidAt time.Time
	for _, e := range events {
		for _, c := range e.Changes {
			if c.Field == "health.last_xid" && xidAt.IsZero() {
				xidAt = e.Time
			}
		}
	}
	if want := end.Add(-2 * time.Second); !xidAt.Equal(want) {
		t.Errorf("gpu1's XID event at %s, want the 3rd sample's time %s (events %+v)", xidAt, want, events)
	}

	bad := func(tel wire.Telemetry, mod func([]wire.TelemetrySample)) wire.Telemetry {
		mod(tel.Samples)
		return tel
	}
	at := end.Add(time.Minute)
	for i, tc := range []struct {
		name string
		body wire.Telemetry
	}{
		{"too many", samples(host, 2, wire.MaxSamples+1, at, -1)},
		{"out of order", bad(samples(host, 2, 5, at, -1), func(s []wire.TelemetrySample) { s[1].TS, s[2].TS = s[2].TS, s[1].TS })},
		{"after the envelope", bad(samples(host, 2, 5, at, -1), func(s []wire.TelemetrySample) { s[4].TS = at.Add(time.Second) })},
		{"before the window", bad(samples(host, 2, 5, at, -1), func(s []wire.TelemetrySample) { s[0].TS = at.Add(-wire.SampleWindow - time.Second) })},
	} {
		out := r.submit(gw, wire.KindTelemetry, seal(t, gw, uint64(3+i), at, wire.KindTelemetry, tc.body))
		if out.Reason != ReasonBadSamples || !out.Ack() {
			t.Errorf("%s: outcome %q (%v), want %s, acknowledged (dropped)", tc.name, out.Reason, out.Err, ReasonBadSamples)
		}
	}
	if st := r.in.Stats(); st.Rejected[ReasonBadSamples] != 4 {
		t.Errorf("Stats.Rejected[bad_samples] = %d, want 4", st.Rejected[ReasonBadSamples])
	}
	if g, _ := r.store.Asset(host + ".gpu1"); g.Health.Samples != 6 {
		t.Errorf("gpu1 samples after rejected messages = %d, want 6", g.Health.Samples)
	}
}

// TestSamplesBound: every sample's GPUs must be bound to the gateway, not
// only the first sample's (the check skips a GPU in the same place as in
// the first sample, so a later sample naming another is still checked).
func TestSamplesBound(t *testing.T) {
	r := newRig(t, Config{})
	listed := registryGateway("gw-l")
	listed.Assets = []string{"srv-l", "srv-l.gpu0", "srv-l.gpu1"}
	if err := r.reg.Put(listed); err != nil {
		t.Fatal(err)
	}
	tel := samples("srv-l", 2, 3, t0, -1)
	if out := r.submit("gw-l", wire.KindTelemetry, seal(t, "gw-l", 1, t0, wire.KindTelemetry, tel)); !out.Accepted() {
		t.Fatalf("bound GPUs: %s %v", out.Reason, out.Err)
	}
	tel = samples("srv-l", 2, 3, t0.Add(time.Minute), -1)
	tel.Samples[2].GPUs[1].Asset = "srv-x.gpu1" // another host's GPU in the last sample
	if out := r.submit("gw-l", wire.KindTelemetry, seal(t, "gw-l", 2, t0.Add(time.Minute), wire.KindTelemetry, tel)); out.Reason != ReasonUnboundAsset {
		t.Errorf("an unbound GPU in the 3rd sample: %q (%v), want %s", out.Reason, out.Err, ReasonUnboundAsset)
	}
}

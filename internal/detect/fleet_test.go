package detect

import (
	"testing"
	"time"

	simfleet "twinchain/internal/sim/fleet"
	"twinchain/internal/wire"
)

// TestFleetModelQuietHourAndDrift runs the simulated fleet's readings
// (internal/sim/fleet: load in jobs, power following load, temperature following
// power) through every detector for one simulated hour: no finding. Then the
// same hour with one GPU's temperature sensor drifting by 1 °C a minute
// from minute 30: one sensor_drift finding, for that GPU, within minutes.
func TestFleetModelQuietHourAndDrift(t *testing.T) {
	for _, drift := range []bool{false, true} {
		f, err := simfleet.New(simfleet.Config{Sites: 1, ServersPerSite: 4, GPUsPerServer: 8, Seed: 3, SiteGateways: true})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Defaults()
		cfg.Sites = map[string]SiteConfig{"s1": {Geofence: [][]float64{{52.515, 13.395}, {52.515, 13.415}, {52.525, 13.415}, {52.525, 13.395}}}}
		s := NewSet(cfg, NewView(nil))
		target := f.Gateways[1].Host.GPUs[5].Ident.Asset
		var got []Finding
		var at time.Time
		seqs := map[string]uint64{}
		observe := func(gw string, tm time.Time, fill func(*Message)) {
			seqs[gw]++
			m := &Message{Ref: MessageRef{Gateway: gw, Seq: seqs[gw], Time: tm}, Recorded: tm}
			fill(m)
			fs, err := s.Observe(Input{Message: m})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fs...)
		}
		for sec := range 3600 {
			tm := t0.Add(time.Duration(sec) * time.Second)
			for _, g := range f.Gateways {
				if sec%30 == 0 {
					observe(g.ID, tm, func(m *Message) { m.Status = &wire.Status{State: wire.StateOnline} })
				}
				if inv := g.Inventory(); inv != nil && sec%600 == 0 {
					observe(g.ID, tm, func(m *Message) { m.Inventory = inv })
				}
				if tel := g.Sample(tm, time.Second); tel != nil {
					if drift && sec >= 1800 && sec < 3000 {
						for i := range tel.GPUs {
							if tel.GPUs[i].Asset == target {
								tel.GPUs[i].TempC += float64(sec-1800) / 60
							}
						}
					}
					observe(g.ID, tm, func(m *Message) { m.Telemetry = tel })
				}
				if fix := g.Position(tm); fix != nil && sec%10 == 0 {
					observe(g.ID, tm, func(m *Message) { m.GPS = fix })
				}
				if r := g.Reads(tm, time.Second); r != nil {
					observe(g.ID, tm, func(m *Message) { m.RFID = r })
				}
			}
			got = append(got, s.Tick(tm)...)
			if len(got) > 0 && at.IsZero() {
				at = tm
			}
		}
		if !drift {
			check(t, "quiet fleet hour", got, nil)
			continue
		}
		check(t, "fleet hour with a drifting sensor", got, []string{"sensor_drift " + target})
		if lag := at.Sub(t0.Add(30 * time.Minute)); lag > 5*time.Minute {
			t.Errorf("drift found %s after it began, want within 5m", lag)
		} else {
			t.Logf("drift of 1 °C/min found after %s", lag)
		}
	}
}

// BenchmarkObserveTelemetry: every detector on one host's telemetry message
// (8 GPUs), from the simulated fleet.
func BenchmarkObserveTelemetry(b *testing.B) {
	f, err := simfleet.New(simfleet.Config{Sites: 1, ServersPerSite: 1, GPUsPerServer: 8, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	g := f.Gateways[0]
	s := NewSet(Defaults(), NewView(nil))
	msgs := make([]*Message, 1000)
	for i := range msgs {
		tm := t0.Add(time.Duration(i) * time.Second)
		msgs[i] = &Message{Ref: MessageRef{Gateway: g.ID, Seq: uint64(i + 1), Time: tm}, Recorded: tm, Telemetry: g.Sample(tm, time.Second)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := *msgs[i%len(msgs)]
		m.Ref.Seq = uint64(i + 1)
		m.Ref.Time = t0.Add(time.Duration(i) * time.Second)
		if _, err := s.Observe(Input{Message: &m}); err != nil {
			b.Fatal(err)
		}
	}
}

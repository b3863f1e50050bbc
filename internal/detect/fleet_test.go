package detect

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	simfleet "twinchain/internal/sim/fleet"
	"twinchain/internal/twin"
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

// fleetRun plays a simulated fleet (one site of servers with gpus GPUs
// each, registered in the view so racks and models are known) through
// every detector for the given simulated time, with mangle changing each
// telemetry body, and returns the findings.
func fleetRun(t *testing.T, servers, gpus int, d time.Duration, mangle func(sec int, tel *wire.Telemetry)) []Finding {
	t.Helper()
	f, err := simfleet.New(simfleet.Config{Sites: 1, ServersPerSite: servers, GPUsPerServer: gpus, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSet(Defaults(), NewView(nil))
	reg := newFleet()
	for _, g := range f.Gateways {
		h := g.Host.Info
		if _, err := s.Observe(reg.change(h.Asset, t0, func(a *twin.Asset) { a.Kind, a.Site, a.Identity.Rack = twin.KindServer, "s1", h.Rack })); err != nil {
			t.Fatal(err)
		}
		for _, gpu := range g.Host.GPUs {
			if _, err := s.Observe(reg.change(gpu.Ident.Asset, t0, func(a *twin.Asset) {
				a.Kind, a.Site, a.Parent, a.Identity.Name = twin.KindGPU, "s1", h.Asset, gpu.Ident.Name
			})); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []Finding
	for sec := range int(d.Seconds()) {
		tm := t0.Add(time.Duration(sec) * time.Second)
		for i, g := range f.Gateways {
			tel := g.Sample(tm, time.Second)
			mangle(sec, tel)
			fs, err := s.Observe(Input{Message: &Message{Ref: MessageRef{Gateway: g.ID, Seq: uint64(sec + 1), Time: tm}, Recorded: tm, Telemetry: tel}})
			if err != nil {
				t.Fatalf("gateway %d: %v", i, err)
			}
			got = append(got, fs...)
		}
	}
	return got
}

// TestSlowDrift: +0.3 °C a minute on one GPU for 40 minutes (which the
// CUSUM alone never flagged) is found against the GPU's memory sensor, and
// without one against its peers under the same load, in its server or, for
// two-GPU servers, in its rack. A whole server or rack warming up by the
// same is no sensor drift.
func TestSlowDrift(t *testing.T) {
	const from, rate = 20 * 60, 0.3 / 60 // °C a second, from minute 20
	ramp := func(sec int) float64 { return float64(max(0, min(sec, from+40*60)-from)) * rate }
	tests := []struct {
		name          string
		servers, gpus int
		mangle        func(sec int, g *wire.GPUSample)
		want          []string
	}{
		{"against its memory sensor", 2, 8, func(sec int, g *wire.GPUSample) {
			if g.Asset == "srv-s1-002.gpu4" {
				g.TempC += ramp(sec)
			}
		}, []string{"sensor_drift srv-s1-002.gpu4"}},
		{"against its peers in the server", 2, 8, func(sec int, g *wire.GPUSample) {
			g.MemTempC = 0
			if g.Asset == "srv-s1-002.gpu4" {
				g.TempC += ramp(sec)
			}
		}, []string{"sensor_drift srv-s1-002.gpu4"}},
		{"against its peers in the rack", 6, 2, func(sec int, g *wire.GPUSample) {
			g.MemTempC = 0
			if g.Asset == "srv-s1-003.gpu1" {
				g.TempC += ramp(sec)
			}
		}, []string{"sensor_drift srv-s1-003.gpu1"}},
		{"the whole rack warms", 4, 8, func(sec int, g *wire.GPUSample) {
			g.TempC += ramp(sec)
			g.MemTempC += ramp(sec)
		}, nil},
	}
	for _, tt := range tests {
		got := fleetRun(t, tt.servers, tt.gpus, 70*time.Minute, func(sec int, tel *wire.Telemetry) {
			for i := range tel.GPUs {
				tt.mangle(sec, &tel.GPUs[i])
			}
		})
		check(t, tt.name, got, tt.want)
		if len(got) > 1 {
			for _, f := range got {
				t.Log(f.Time.Sub(t0), f.Summary)
			}
		}
		if len(got) == 1 {
			lag := got[0].Time.Sub(t0.Add(from * time.Second))
			t.Logf("%s: found after %s (%s)", tt.name, lag, got[0].Summary)
			if lag > 20*time.Minute {
				t.Errorf("%s: found after %s, want within 20 min", tt.name, lag)
			}
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

// BenchmarkFleetDay plays one simulated day of a normal fleet (4 sites of
// 32 servers with 8 GPUs: 1,024 GPUs, 132 gateways; telemetry every 10 s,
// status every 30 s, inventory every 10 min, GPS every 10 s, RFID reads)
// through every detector, with geofences around the sites, and reports
// the false alerts (distinct asset and type: the alerts that would open)
// per finding type. Nothing in it is an incident: every one is false.
//
//	go test -run '^$' -bench FleetDay -benchtime 1x ./internal/detect
func BenchmarkFleetDay(b *testing.B) {
	// memory_sensor: GPUs report their memory temperature (H100s do);
	// peers_only: they do not, so drift is judged against peers alone.
	for _, memSensor := range []bool{true, false} {
		name := "memory_sensor"
		if !memSensor {
			name = "peers_only"
		}
		b.Run(name, func(b *testing.B) { fleetDay(b, memSensor) })
	}
}

func fleetDay(b *testing.B, memSensor bool) {
	for range b.N {
		f, err := simfleet.New(simfleet.Config{Sites: 4, ServersPerSite: 32, GPUsPerServer: 8, Seed: 17, SiteGateways: true})
		if err != nil {
			b.Fatal(err)
		}
		cfg := Defaults()
		cfg.Sites = map[string]SiteConfig{}
		gpus := 0
		for _, site := range f.Sites {
			const d = 0.004
			cfg.Sites[site.ID] = SiteConfig{Geofence: [][]float64{{site.Lat - d, site.Lon - d}, {site.Lat - d, site.Lon + d}, {site.Lat + d, site.Lon + d}, {site.Lat + d, site.Lon - d}}}
		}
		s := NewSet(cfg, NewView(nil))
		reg := newFleet()
		for _, g := range f.Gateways {
			if _, err := s.Observe(reg.change(g.ID, t0, func(a *twin.Asset) {
				a.Kind, a.Site, a.Custody.Status = twin.KindGateway, g.Site.ID, twin.StatusInService
			})); err != nil {
				b.Fatal(err)
			}
			if g.Host == nil {
				continue
			}
			h := g.Host.Info
			if _, err := s.Observe(reg.change(h.Asset, t0, func(a *twin.Asset) {
				a.Kind, a.Site, a.Identity.Rack, a.Identity.RFIDTag, a.Custody.Status = twin.KindServer, g.Site.ID, h.Rack, h.RFIDTag, twin.StatusInService
			})); err != nil {
				b.Fatal(err)
			}
			for _, gpu := range g.Host.GPUs {
				gpus++
				if _, err := s.Observe(reg.change(gpu.Ident.Asset, t0, func(a *twin.Asset) {
					a.Kind, a.Site, a.Parent, a.Identity.Name, a.Custody.Status = twin.KindGPU, g.Site.ID, h.Asset, gpu.Ident.Name, twin.StatusInService
				})); err != nil {
					b.Fatal(err)
				}
			}
		}
		seqs := map[string]uint64{}
		var findings []Finding
		msgs := 0
		observe := func(gw string, tm time.Time, fill func(*Message)) {
			seqs[gw]++
			msgs++
			m := &Message{Ref: MessageRef{Gateway: gw, Seq: seqs[gw], Time: tm}, Recorded: tm}
			fill(m)
			fs, err := s.Observe(Input{Message: m})
			if err != nil {
				b.Fatal(err)
			}
			findings = append(findings, fs...)
		}
		const step = 10 * time.Second
		b.ResetTimer()
		for tm := t0; tm.Before(t0.Add(24 * time.Hour)); tm = tm.Add(step) {
			sec := int(tm.Sub(t0).Seconds())
			for _, g := range f.Gateways {
				if sec%30 == 0 {
					observe(g.ID, tm, func(m *Message) { m.Status = &wire.Status{State: wire.StateOnline} })
				}
				if inv := g.Inventory(); inv != nil && sec%600 == 0 {
					observe(g.ID, tm, func(m *Message) { m.Inventory = inv })
				}
				if tel := g.Sample(tm, step); tel != nil {
					if !memSensor {
						for i := range tel.GPUs {
							tel.GPUs[i].MemTempC = 0
						}
					}
					observe(g.ID, tm, func(m *Message) { m.Telemetry = tel })
				}
				if fix := g.Position(tm); fix != nil {
					observe(g.ID, tm, func(m *Message) { m.GPS = fix })
				}
				if r := g.Reads(tm, step); r != nil {
					observe(g.ID, tm, func(m *Message) { m.RFID = r })
				}
			}
			findings = append(findings, s.Tick(tm)...)
		}
		b.StopTimer()
		alerts := map[string]bool{}
		perType := map[Type]int{}
		for _, f := range findings {
			if k := string(f.Type) + " " + f.Asset; !alerts[k] {
				alerts[k] = true
				perType[f.Type]++
			}
		}
		types := []Type{TypeSubstitution, TypeUnknownAsset, TypeAssetMissing, TypeFirmwareUnauthorised, TypeFirmwareNotAllowed,
			TypeGeofenceExit, TypeZoneViolation, TypeMovedInService, TypeImpossibleTravel, TypeClone, TypeGatewayOffline,
			TypeHeartbeatMissed, TypeSequenceGap, TypeBadSignatures, TypeReplayedMessages, TypeUnknownGateway, TypeClockSkew,
			TypeSensorDrift, TypeXID, TypeECCDoubleBit, TypeRowRemapFailure, TypeRetiredPages, TypeThermalSlowdown,
			TypeOverheating, TypePowerExcursion, TypePCIeReplays, TypeGPSClockAnomaly}
		var tbl strings.Builder
		fmt.Fprintf(&tbl, "one simulated day, %d GPUs, %d gateways, %d messages: %d findings, %d false alerts\n| type | false alerts | per 1,000 GPUs a day |\n|---|---|---|\n",
			gpus, len(f.Gateways), msgs, len(findings), len(alerts))
		for _, t := range types {
			fmt.Fprintf(&tbl, "| %s | %d | %.2f |\n", t, perType[t], float64(perType[t])*1000/float64(gpus))
		}
		b.Log(tbl.String())
		b.ReportMetric(float64(len(alerts)), "false_alerts")
		b.ReportMetric(float64(msgs), "messages")
		b.ReportMetric(float64(gpus), "gpus")
	}
}

// TestSlowDriftClockJump: a host whose clock jumps 20 minutes ahead after
// 3 minutes of readings has not learned its baselines yet: no drift.
func TestSlowDriftClockJump(t *testing.T) {
	f, err := simfleet.New(simfleet.Config{Sites: 1, ServersPerSite: 1, GPUsPerServer: 8, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	g := f.Gateways[0]
	s := NewSet(Defaults(), NewView(nil))
	var got []Finding
	for sec := range 600 {
		tm := t0.Add(time.Duration(sec) * time.Second)
		tel := g.Sample(tm, time.Second)
		if sec >= 180 {
			tm = tm.Add(20 * time.Minute)
		}
		for i := range tel.GPUs {
			tel.GPUs[i].MemTempC = 0 // the peer comparison, whose residual settles in the first minutes
		}
		fs, err := s.Observe(Input{Message: &Message{Ref: MessageRef{Gateway: g.ID, Seq: uint64(sec + 1), Time: tm}, Recorded: tm, Telemetry: tel}})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fs...)
	}
	check(t, "clock jump in the warm-up", got, nil)
}

// BenchmarkCloneStatePerGPU reports the bytes the clone detector keeps per
// GPU it has seen (100,000 GPUs live in one process at the goal of issue 15).
func BenchmarkCloneStatePerGPU(b *testing.B) {
	const hosts, gpus = 2000, 8
	msgs := make([]*Message, hosts)
	for h := range msgs {
		tel := &wire.Telemetry{GPUs: make([]wire.GPUSample, gpus)}
		for g := range tel.GPUs {
			tel.GPUs[g] = wire.GPUSample{Asset: fmt.Sprintf("srv-%05d.gpu%d", h, g), UUID: fmt.Sprintf("GPU-%08d-%d", h, g)}
		}
		msgs[h] = &Message{Ref: MessageRef{Gateway: fmt.Sprintf("gw-%05d", h), Seq: 1, Time: t0}, Recorded: t0, Telemetry: tel}
	}
	var perGPU float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d := newCloneDetector(Defaults().Clone, NewView(nil))
		for _, m := range msgs {
			d.telemetry(m)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perGPU = float64(after.HeapAlloc-before.HeapAlloc) / (hosts * gpus)
		runtime.KeepAlive(d)
	}
	b.ReportMetric(perGPU, "B/GPU")
}

// BenchmarkStatePerGPU reports the heap (B/gpu) and the scannable heap
// (scanB/gpu: what the GC must mark through, runtime/metrics
// /gc/scan/heap:bytes) that a Set and its View keep per GPU after every GPU
// of a simulated fleet (10,000 GPUs in 1,250 8-GPU servers, registered in
// the view with rack and model, then moved to a zone) has sent a few samples. Each sample's
// strings are fresh, as the wire decoder's are.
//
//	go test -run '^$' -bench StatePerGPU -benchtime 1x -count 3 ./internal/detect
func BenchmarkStatePerGPU(b *testing.B) {
	const sites, servers, gpus, samples = 5, 250, 8, 5
	scan := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	scanned := func() float64 {
		metrics.Read(scan)
		return float64(scan[0].Value.Uint64())
	}
	var perGPU, scanPerGPU float64
	for range b.N {
		b.StopTimer()
		f, err := simfleet.New(simfleet.Config{Sites: sites, ServersPerSite: servers, GPUsPerServer: gpus, Seed: 5})
		if err != nil {
			b.Fatal(err)
		}
		reg := newFleet()
		var events []Input
		n := 0
		for _, g := range f.Gateways {
			h := g.Host.Info
			events = append(events, reg.change(h.Asset, t0, func(a *twin.Asset) {
				a.Kind, a.Site, a.Identity.Rack, a.Custody.Status = twin.KindServer, g.Site.ID, h.Rack, twin.StatusInService
			}))
			for i, gp := range g.Host.GPUs {
				n++
				events = append(events, reg.change(gp.Ident.Asset, t0, func(a *twin.Asset) {
					gpu(g.Site.ID, h.Asset, i, gp.Ident.UUID)(a)
					a.Identity.Name = gp.Ident.Name
				}))
			}
		}
		for _, g := range f.Gateways { // a second event for every GPU, as the service's view gets many
			for _, gp := range g.Host.GPUs {
				events = append(events, reg.change(gp.Ident.Asset, t0.Add(time.Second), func(a *twin.Asset) { a.Location.Zone = "hall-1" }))
			}
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		scan0 := scanned()
		b.StartTimer()
		s := NewSet(Defaults(), NewView(nil))
		for _, e := range events {
			if _, err := s.Observe(e); err != nil {
				b.Fatal(err)
			}
		}
		for sec := range samples {
			tm := t0.Add(time.Duration(sec) * time.Second)
			for _, g := range f.Gateways {
				tel := g.Sample(tm, time.Second)
				tel.Host = strings.Clone(tel.Host)
				for i := range tel.GPUs {
					tel.GPUs[i].Asset, tel.GPUs[i].UUID = strings.Clone(tel.GPUs[i].Asset), strings.Clone(tel.GPUs[i].UUID)
				}
				m := &Message{Ref: MessageRef{Gateway: strings.Clone(g.ID), Seq: uint64(sec + 1), Time: tm}, Recorded: tm, Telemetry: tel}
				if _, err := s.Observe(Input{Message: m}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perGPU = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
		scanPerGPU = (scanned() - scan0) / float64(n)
		runtime.KeepAlive(s)
		runtime.KeepAlive(events)
		runtime.KeepAlive(f)
		b.StartTimer()
	}
	b.ReportMetric(perGPU, "B/gpu")
	b.ReportMetric(scanPerGPU, "scanB/gpu")
}

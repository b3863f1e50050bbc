package anchor

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"twinchain/internal/ingest"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/fabricledger/fabrictest"
	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

// BenchmarkEventToAnchored drives the real ingest as fast as 16 gateways can
// submit (telemetry whose health counters move, 8 GPU events a message) with
// the default anchoring settings, and reports how long an event waits from
// its commit in the store until an anchor covering it is on the embedded
// ledger.
func BenchmarkEventToAnchored(b *testing.B) {
	r := newRigTB(b, Config{})
	benchIngest(b, r, true, max(1, b.N/benchGateways), 0)
}

// BenchmarkAnchorLatency reports event -> anchored (p50, p99, max) with the
// default anchoring settings at 150 events/s and at full ingest, on the
// embedded ledger and, where FABRIC_BIN is set and network.sh's network.env
// exported, on a real Fabric network (a test channel of its own each run).
// Run with -benchtime 1x: each sub-benchmark is one fixed load.
func BenchmarkAnchorLatency(b *testing.B) {
	const paced, full = 12, 600 // messages per gateway
	// 16 gateways x 8 events a message: one message each every 128/150 s.
	interval := time.Second * benchGateways * 8 / 150
	for _, backend := range []string{"embedded", "fabric"} {
		open := func(b *testing.B) ledger.Ledger {
			if backend == "embedded" {
				return nil
			}
			return fabrictest.Fresh(b)
		}
		b.Run(backend+"/150_events_per_s", func(b *testing.B) {
			benchIngest(b, newRigOn(b, Config{}, open(b)), true, paced, interval)
		})
		b.Run(backend+"/full_ingest", func(b *testing.B) {
			benchIngest(b, newRigOn(b, Config{}, open(b)), true, full, 0)
		})
	}
}

// BenchmarkIngestWithoutAnchoring is the same load with the anchorer
// stopped: the ingest rate to compare with.
func BenchmarkIngestWithoutAnchoring(b *testing.B) {
	r := newRigTB(b, Config{})
	r.stopAnchorer()
	benchIngest(b, r, false, max(1, b.N/benchGateways), 0)
}

const benchGateways = 16

// benchIngest submits per messages from each of 16 gateways, every
// interval (0: as fast as they go), and reports the ingest rate and, with
// anchoring, the event -> anchored latencies.
func benchIngest(b *testing.B, r *rig, anchoring bool, per int, interval time.Duration) {
	const gws = benchGateways
	keys := make([]ed25519.PrivateKey, gws)
	for g := range keys {
		seed := sha256.Sum256([]byte(fmt.Sprint("gw", g)))
		keys[g] = ed25519.NewKeyFromSeed(seed[:])
		if err := r.reg.Put(registry.Gateway{ID: fmt.Sprintf("gw-b%02d", g), PublicKey: keys[g].Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
			b.Fatal(err)
		}
	}
	// Watch the anchored position.
	type mark struct {
		id uint64
		at time.Time
	}
	var marks []mark
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var last uint64
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(time.Millisecond):
			}
			if !anchoring {
				continue
			}
			if to := r.a.Stats().AnchoredTo; to != last {
				last = to
				marks = append(marks, mark{to, time.Now()})
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	b.ResetTimer()
	for g := 0; g < gws; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gw := fmt.Sprintf("gw-b%02d", g)
			next := time.Now()
			for i := 1; i <= per; i++ {
				if interval > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
				}
				tel := wire.Telemetry{Host: fmt.Sprintf("srv-b%02d", g)}
				for k := 0; k < 8; k++ {
					tel.GPUs = append(tel.GPUs, wire.GPUSample{Asset: fmt.Sprintf("srv-b%02d.gpu%d", g, k), Index: k, RetiredPages: i})
				}
				raw, err := wire.Seal(keys[g], gw, uint64(i), time.Now(), wire.KindTelemetry, tel)
				if err == nil {
					_, err = r.in.Submit(ingest.Source{}, wire.Topic(gw, wire.KindTelemetry), raw)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ingestDur := time.Since(start)
	last := r.store.LastEventID()
	b.ReportMetric(float64(last)/ingestDur.Seconds(), "events/s")
	if !anchoring {
		close(stopWatch)
		return
	}
	for r.a.Stats().AnchoredTo < last {
		time.Sleep(time.Millisecond) // a tight poll, not testsvc.Eventually's backoff, so the measured time is the anchoring's
	}
	b.StopTimer()
	close(stopWatch)
	<-watched
	// Latency of every event: first mark covering it minus its commit time.
	evs, err := r.store.EventsAfter(0, int(last))
	if err != nil {
		b.Fatal(err)
	}
	var lat []float64
	mi := 0
	for _, e := range evs {
		for mi < len(marks) && marks[mi].id < e.ID {
			mi++
		}
		if mi == len(marks) {
			break
		}
		lat = append(lat, float64(marks[mi].at.Sub(e.Recorded).Microseconds())/1000)
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(lat[len(lat)/2], "p50_ms")
	b.ReportMetric(lat[len(lat)*99/100], "p99_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
	b.ReportMetric(float64(r.a.Stats().Anchored), "anchors")
}

package scenario

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkPublishToAlert measures the latency from publishing a reading
// that carries an incident (an XID on one GPU) to its alert being open in
// twin-service (stored, routed, on the SSE hub), while the whole fleet
// publishes normal traffic at the stated rate. One real twin-service
// process, embedded broker, loopback TCP.
func BenchmarkPublishToAlert(b *testing.B) {
	for _, speed := range []float64{20, 100, 400} {
		b.Run(fmt.Sprintf("speed=%g", speed), func(b *testing.B) {
			var steps string
			n := 0
			for h := 1; h <= 6; h++ {
				for g := 0; g < 8; g++ {
					steps += fmt.Sprintf("  - {at: %ds, action: xid, target: srv-s%d-%03d.gpu%d, xid: 79}\n", 30+2*n, (h-1)/3+1, (h-1)%3+1, g)
					n++
				}
			}
			f, err := Parse("bench.yaml", []byte(fmt.Sprintf("name: bench\nfleet: {sites: 2, servers: 3, gpus: 8, seed: 3}\nduration: %ds\nspeed: %g\nsteps:\n%s", 30+2*n+10, speed, steps)))
			if err != nil {
				b.Fatal(err)
			}
			for _, st := range f.Steps {
				f.Expect = append(f.Expect, Expectation{Type: "gpu_xid", Asset: st.Target})
			}
			var lat []time.Duration
			var rate float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				fl, _ := f.NewFleet()
				svc := startService(b, b.TempDir(), fl.Registry(), "http://127.0.0.1:9/hooks")
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				b.StartTimer()
				rep, err := Run(ctx, f, Options{Broker: svc.MQTTURL(), API: svc.URL, Tokens: svc.tokens})
				if err != nil {
					b.Fatal(err)
				}
				o, err := Wait(ctx, svc.URL, svc.tokens.Read, f, rep, 30*time.Second, 0)
				cancel()
				if err != nil || len(o.Missing) > 0 {
					b.Fatalf("missing alerts: %v %v", o, err)
				}
				for _, d := range o.Detected {
					lat = append(lat, d.WallLatency)
				}
				rate = float64(rep.Sent) / rep.WallEnd.Sub(rep.WallStart).Seconds()
				b.StopTimer()
				svc.Stop()
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(rate, "msgs/s")
			b.ReportMetric(float64(len(lat)), "alerts")
		})
	}
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"twinchain/internal/cli"
	"twinchain/internal/registry"
	"twinchain/internal/sim/load"
	"twinchain/internal/wire"
)

// runLoad is `firmware-sim load`: pre-signed telemetry from many gateways
// at a fixed total rate, with publish -> PUBACK latency, and (with
// -metrics) the service's consumer lag, memory and CPU per message.
func runLoad(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg load.Config
	fs.StringVar(&cfg.Broker, "broker", "127.0.0.1:1883", "MQTT broker address (host:port)")
	fs.StringVar(&cfg.Password, "password", "", "MQTT password sent with the gateway id as username (default: each gateway's signed connect password)")
	fs.IntVar(&cfg.Gateways, "gateways", 1000, "GPU hosts, one MQTT connection each")
	fs.IntVar(&cfg.GPUs, "gpus", 8, "GPUs per host (one telemetry message carries them all)")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "messages per second offered, all gateways together (gateways/rate is each one's period)")
	fs.IntVar(&cfg.Samples, "samples-per-message", 1, fmt.Sprintf("sampling instants per telemetry message, 1..%d (an agent's publish interval over its sampling interval): each host is sampled this many times per period", wire.MaxSamples))
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to offer the load")
	fs.IntVar(&cfg.Window, "window", 64, "unacknowledged messages a connection may have before it waits")
	fs.IntVar(&cfg.Distinct, "distinct", 0, "sign only this many messages per gateway and repeat copies of them (only for a broker that checks nothing, e.g. -bare; 0: every message signed)")
	maxMiB := fs.Int64("max-mib", 6144, "memory the pre-signed messages may take, MiB, held S2-compressed (ten minutes of 12,500 gateways at 0.1 Hz with 10 samples of 8 GPUs, 100,000 GPUs at 1 Hz, take ~2,300)")
	fs.Int64Var(&cfg.Seed, "seed", 1, "fleet seed: keys and readings (the registry must come from the same seed)")
	regPath := fs.String("registry", "", "write the gateway registry (JSON) for this fleet to this file")
	regOnly := fs.Bool("registry-only", false, "write the registry and exit")
	metrics := fs.String("metrics", "", "twin-service /metrics URL: report its consumer lag, RSS and CPU per message")
	metricsToken := fs.String("metrics-token", "", "API token for -metrics and -api (both need sign-in; any role)")
	api := fs.String("api", "", "twin-service base URL (http://host:port): time its API while the load runs (a page of assets, one GPU, the fleet counts, each every 200ms, from the warm-up's end; and publish -> visible: a GPU of 100 gateways asked for every 10ms after its gateway publishes, until the answer shows the message)")
	bare := fs.Bool("bare", false, "start a bare mochi broker (no hooks, allow all) on -broker in this process and load it: the baseline")
	every := fs.Duration("every", 5*time.Second, "report interval")
	warmup := fs.Duration("warmup", 5*time.Second, "left out of the summary's rate and percentiles")
	grace := fs.Duration("grace", 10*time.Second, "how long to wait for the last acknowledgements")
	if err := fs.Parse(args); err != nil {
		return cli.Usage(err)
	}
	cfg.MaxBytes = *maxMiB << 20
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *regPath != "" {
		f, err := load.Fleet(cfg)
		if err != nil {
			return err
		}
		reg := f.Registry()
		if err := registry.WriteFile(*regPath, reg); err != nil {
			return err
		}
		assets := 0
		for _, g := range reg.Gateways {
			assets += len(g.Assets)
		}
		fmt.Fprintf(stderr, "firmware-sim: wrote registry of %d gateways (%d assets) to %s\n", len(reg.Gateways), assets, *regPath)
	}
	if *regOnly {
		return nil
	}
	if *bare {
		stop, err := serveBare(cfg.Broker)
		if err != nil {
			return err
		}
		defer stop()
	}
	l, err := load.Presign(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "firmware-sim: pre-signed %d messages (%d MiB, %d bytes each, held in %d MiB compressed) at %.0f msg/s on all cores\n",
		cfg.PerGateway()*cfg.Gateways, l.Bytes>>20, l.Bytes/int64(cfg.PerGateway()*cfg.Gateways), l.Held>>20, l.SignRate)
	began := time.Now()
	if err := l.Connect(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "firmware-sim: %d connections to %s in %s; offering %g msg/s of %d samples (%d GPUs at %.3g Hz: %.0f GPU samples/s) for %s\n",
		cfg.Gateways, cfg.Broker, time.Since(began).Round(time.Millisecond), cfg.Rate, cfg.Samples, cfg.Gateways*cfg.GPUs, float64(cfg.Samples)/cfg.Period().Seconds(), cfg.Rate*float64(cfg.Samples*cfg.GPUs), cfg.Duration)
	rep := &loadReport{l: l, cfg: cfg, out: stderr, warmup: *warmup}
	if *metrics != "" {
		rep.mon = &load.Monitor{URL: *metrics, Token: *metricsToken}
	}
	if *api != "" {
		rep.api = &load.APIProbe{Base: *api, Token: *metricsToken, Assets: l.GPUs(1000), Published: l.Watch(100)}
	}
	t0 := time.Now().Add(100 * time.Millisecond)
	if rep.api != nil {
		// From the warm-up's end: an asset has no twin before its first message.
		probeCtx, stopProbe := context.WithCancel(ctx)
		probed := make(chan struct{})
		go func() {
			defer close(probed)
			select {
			case <-probeCtx.Done():
				return
			case <-time.After(time.Until(t0.Add(*warmup))):
			}
			rep.api.Run(probeCtx)
		}()
		defer func() { stopProbe(); <-probed }()
	}
	// The summary's rate counts acknowledgements until the offer ends, not
	// the backlog drained after it.
	endOfOffer := time.AfterFunc(time.Until(t0.Add(cfg.Duration)), func() {
		rep.endAt.Store(time.Now().UnixNano())
		rep.endAck.Store(l.Acked.Load() + 1)
	})
	defer endOfOffer.Stop()
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, t0, *grace) }()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	rep.start(ctx, t0)
	for {
		select {
		case err := <-done:
			rep.line(ctx)
			rep.summary(*bare)
			if n := l.Errors(); n > 0 {
				return fmt.Errorf("%d connections failed: %w", n, err)
			}
			return nil
		case <-tick.C:
			rep.line(ctx)
		}
	}
}

// serveBare starts a bare mochi broker at addr: the same broker
// twin-service embeds, with no hooks but allow-all auth.
func serveBare(addr string) (stop func(), err error) {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return nil, err
	}
	if err := srv.Serve(); err != nil {
		return nil, err
	}
	return func() {
		// mochi's Close can deadlock while clients detach (the embedded
		// broker works around it the same way): wait a bounded time, the
		// process ends next anyway.
		closed := make(chan struct{})
		go func() { _ = srv.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
		}
	}, nil
}

// loadReport prints a line per interval and the summary.
type loadReport struct {
	l      *load.Load
	cfg    load.Config
	out    io.Writer
	mon    *load.Monitor
	api    *load.APIProbe
	warmup time.Duration

	t0       time.Time
	last     time.Time
	lastAck  int64
	lastLat  *load.Snapshot
	lastSvc  load.Sample
	ownCPU0  time.Duration
	warm     bool
	warmAt   time.Time
	warmAck  int64
	warmLat  *load.Snapshot
	warmSvc  load.Sample
	lastAPI  [len(load.APICalls)]*load.Snapshot
	warmAPI  [len(load.APICalls)]*load.Snapshot
	maxLag   map[string]time.Duration
	maxRSS   float64
	firstRSS float64
	endAck   atomic.Int64 // acknowledged when the offer ended, plus one (0: not yet)
	endAt    atomic.Int64 // when that was read (Unix nanoseconds)
}

func (r *loadReport) start(ctx context.Context, t0 time.Time) {
	r.t0, r.last, r.lastLat = t0, t0, r.l.Lat.Snapshot()
	r.ownCPU0 = ownCPU()
	r.maxLag = map[string]time.Duration{}
	if r.mon != nil {
		r.lastSvc, _ = r.mon.Scrape(ctx)
	}
	head := "   t  acked/s  ack_p50  ack_p99   behind |  svc_rss  svc_cpu  cpu_us/msg  lag: telemetry    detect     anchor | svc p99: answer    check    queue   commit"
	if r.api != nil {
		head += " | api p99:  list    asset   counts  visible"
		for i := range r.lastAPI {
			r.lastAPI[i] = r.api.Lat[i].Snapshot()
		}
	}
	fmt.Fprintln(r.out, head)
}

func (r *loadReport) line(ctx context.Context) {
	now := time.Now()
	acked, lat := r.l.Acked.Load(), r.l.Lat.Snapshot()
	dt := now.Sub(r.last).Seconds()
	s := fmt.Sprintf("%4.0fs %8.0f %8s %8s %8d |", now.Sub(r.t0).Seconds(), float64(acked-r.lastAck)/dt,
		ms(lat.Quantile(r.lastLat, 0.5)), ms(lat.Quantile(r.lastLat, 0.99)), r.l.Behind.Load())
	var svc load.Sample
	if r.mon != nil {
		var err error
		if svc, err = r.mon.Scrape(ctx); err != nil {
			s += " metrics: " + err.Error()
		} else {
			v, p := svc.Values, r.lastSvc.Values
			cpu := v[load.MetricCPU] - p[load.MetricCPU]
			msgs := v[load.MetricMessageHead] - p[load.MetricMessageHead]
			rss := v[load.MetricRSS]
			r.maxRSS = max(r.maxRSS, rss)
			if r.firstRSS == 0 {
				r.firstRSS = rss
			}
			s += fmt.Sprintf(" %6.0fMB %7.0f%% %11.0f ", rss/(1<<20), 100*cpu/svc.At.Sub(r.lastSvc.At).Seconds(), 1e6*cpu/max(msgs, 1))
			for _, c := range []struct {
				name   string
				pos    float64
				events bool
			}{{"telemetry", v[load.MetricTelemetry], false}, {"detect", v[load.MetricDetectMsgs], false}, {"anchor", v[load.MetricAnchored], true}} {
				n, d := r.mon.Lag(svc, c.pos, c.events)
				r.maxLag[c.name] = max(r.maxLag[c.name], d)
				s += fmt.Sprintf(" %7.0f/%5.1fs", n, d.Seconds())
			}
			s += " |"
			for _, w := range waits {
				d, _ := load.HistQuantile(svc, r.lastSvc, w.metric, w.labels, 0.99)
				s += fmt.Sprintf(" %8s", ms(d))
			}
		}
		r.lastSvc = svc
		if r.warm && r.warmSvc.Values == nil && svc.Values != nil {
			r.warmSvc = svc // the scrape at the warm-up's end failed (a busy service): count from the first that worked
		}
	}
	var api [len(load.APICalls)]*load.Snapshot
	if r.api != nil {
		s += " |"
		for i := range api {
			api[i] = r.api.Lat[i].Snapshot()
			s += fmt.Sprintf(" %8s", ms(api[i].Quantile(r.lastAPI[i], 0.99)))
		}
		r.lastAPI = api
	}
	fmt.Fprintln(r.out, s)
	if !r.warm && now.Sub(r.t0) >= r.warmup {
		r.warm, r.warmAt, r.warmAck, r.warmLat, r.warmSvc, r.warmAPI = true, now, acked, lat, svc, api
		clear(r.maxLag)
		r.maxRSS = 0
	}
	r.last, r.lastAck, r.lastLat = now, acked, lat
}

// summary prints one line of key=value figures (scripts read it).
func (r *loadReport) summary(bare bool) {
	lat := r.l.Lat.Snapshot()
	acked, end := r.endAck.Load()-1, time.Unix(0, r.endAt.Load())
	if acked < 0 { // stopped early
		acked, end = r.l.Acked.Load(), time.Now()
	}
	if !r.warm || !r.warmAt.Before(end) { // a run no longer than its warm-up
		r.warmAt, r.warmAck, r.warmLat = r.t0, 0, nil
	}
	sustained := float64(acked-r.warmAck) / max(end.Sub(r.warmAt).Seconds(), 1e-9)
	// throughput is every message over the time to its last PUBACK: the
	// target's capacity when the offer is above it.
	throughput := float64(r.l.Acked.Load()) / max(time.Unix(0, r.l.LastAck.Load()).Sub(r.t0).Seconds(), 1e-9)
	what := "service"
	if bare {
		what = "bare"
	}
	gpuSamples := float64(r.cfg.Samples * r.cfg.GPUs) // per message
	s := fmt.Sprintf("RESULT target=%s gateways=%d samples=%d offered=%.0f sustained=%.0f gpu_samples_per_s=%.0f throughput=%.0f sent=%d acked=%d ack_p50_ms=%.1f ack_p99_ms=%.1f ack_max_ms=%.1f load_cpu_us_per_msg=%.1f",
		what, r.cfg.Gateways, r.cfg.Samples, r.cfg.Rate, sustained, sustained*gpuSamples, throughput, r.l.Sent.Load(), r.l.Acked.Load(),
		msf(lat.Quantile(r.warmLat, 0.5)), msf(lat.Quantile(r.warmLat, 0.99)), msf(lat.Quantile(r.warmLat, 1)),
		float64((ownCPU()-r.ownCPU0).Microseconds())/float64(max(r.l.Acked.Load(), 1)))
	if r.mon != nil && r.warmSvc.Values != nil {
		v, p := r.lastSvc.Values, r.warmSvc.Values
		msgs := v[load.MetricMessageHead] - p[load.MetricMessageHead]
		s += fmt.Sprintf(" svc_cpu_us_per_gpu_sample=%.1f", 1e6*(v[load.MetricCPU]-p[load.MetricCPU])/max(msgs*gpuSamples, 1))
		s += fmt.Sprintf(" svc_cpu_us_per_msg=%.0f svc_rss_mb_start=%.0f svc_rss_mb_max=%.0f lag_telemetry_max_s=%.1f lag_detect_max_s=%.1f lag_anchor_max_s=%.1f",
			1e6*(v[load.MetricCPU]-p[load.MetricCPU])/max(msgs, 1), r.firstRSS/(1<<20), r.maxRSS/(1<<20),
			r.maxLag["telemetry"].Seconds(), r.maxLag["detect"].Seconds(), r.maxLag["anchor"].Seconds())
	}
	if r.mon != nil && r.warmSvc.Values != nil {
		for _, w := range waits {
			d, _ := load.HistQuantile(r.lastSvc, r.warmSvc, w.metric, w.labels, 0.99)
			s += fmt.Sprintf(" svc_%s_p99_ms=%.1f", w.name, msf(d))
		}
	}
	if r.api != nil {
		for i, call := range load.APICalls {
			s += fmt.Sprintf(" api_%s_p99_ms=%.1f", call, msf(r.api.Lat[i].Snapshot().Quantile(r.warmAPI[i], 0.99)))
		}
		s += fmt.Sprintf(" api_errors=%d", r.api.Errors.Load())
		if e := r.api.FirstError(); e != "" {
			fmt.Fprintf(r.out, "firmware-sim: API calls failed: %d; the first: %s\n", r.api.Errors.Load(), e)
		}
	}
	fmt.Fprintln(r.out, s)
}

// waits are where a PUBACK waits inside the service, from its histograms:
// the whole (read to answer) and the ingest's stages. Their p99 is only as
// fine as the buckets (latency.Bounds: ... 50, 100, 250, 500 ms ...).
var waits = []struct{ name, metric, labels string }{
	{"answer", load.MetricAnswer, ""},
	{"check", load.MetricStage, `stage="check",`},
	{"queue", load.MetricStage, `stage="queue",`},
	{"commit", load.MetricStage, `stage="commit",`},
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", msf(d)) }
func msf(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// ownCPU is this process's user+system CPU time.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"twinchain/internal/cli"
	"twinchain/internal/registry"
	"twinchain/internal/sim/fleet"
)

func runFleet(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fleet.DefaultConfig()
	var pub fleet.PublishConfig
	fs.StringVar(&pub.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	fs.IntVar(&cfg.Sites, "sites", cfg.Sites, "number of sites")
	fs.IntVar(&cfg.ServersPerSite, "servers", cfg.ServersPerSite, "GPU servers per site")
	fs.IntVar(&cfg.GPUsPerServer, "gpus", cfg.GPUsPerServer, "GPUs per server")
	fs.BoolVar(&cfg.SiteGateways, "site-gateways", cfg.SiteGateways, "add a GPS + RFID gateway per site")
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "random seed: the same seed gives the same fleet, keys and readings")
	fs.Float64Var(&pub.Rate, "rate", 1, "telemetry samples per simulated second per host (Hz)")
	fs.IntVar(&pub.SamplesPerMessage, "samples-per-message", 1, "telemetry samples per message (a host's publish interval over its sampling interval); 1: one message per sample")
	fs.Float64Var(&pub.Speed, "speed", 1, "simulated seconds per real second")
	fs.Uint64Var(&pub.SeqBase, "seq-base", 0, "sequence number before each gateway's first message (0: Unix milliseconds now)")
	fs.StringVar(&pub.Password, "password", "", "MQTT password sent with the gateway id as username")
	regPath := fs.String("registry", "", "write the gateway registry (JSON) to this file")
	regOnly := fs.Bool("registry-only", false, "write the registry and exit")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	ackedLog := fs.String("acked-log", "", "append \"gateway seq\" for every acknowledged message to this file")
	demo := fs.Duration("demo", 0, "play a simulated incident on the fleet's own hosts every this long, the first after 20 s: an XID 79, then a server's cooling failure, in turn (0: none; make run uses 3m)")
	var rec demoRecords
	fs.StringVar(&rec.api, "demo-api", "", "with -demo: twin-service URL where the demo records an ML pipeline (datasets, a federated training run on the first host's GPUs during which the fleet swaps one, an evaluation, sign-offs, a deployment the gate refuses for the swap) and a work order")
	demoTokens := fs.String("demo-tokens", "", "with -demo-api: file of the demo's API tokens, lines ml=TOKEN (role ml_engineer: datasets, model, deployment request), lead=TOKEN (ml_lead) and compliance=TOKEN (compliance: sign-offs, policy), maint=TOKEN (maintenance: the work order)")
	fs.DurationVar(&rec.swapAfter, "demo-swap-after", 15*time.Second, "with -demo-api: how long the demo's training run goes before the fleet swaps one of its GPUs")
	enrollAPI := fs.String("enroll", "", "first enroll the fleet's gateways that the twin-service at this URL does not hold with their keys, as edge-agent enroll does (a one-time token per gateway, bound to its site and assets, then the gateway's signed request)")
	enrollTokens := fs.String("enroll-tokens", "", "with -enroll: file with a line fleet=TOKEN, an API token whose role may manage gateways (asset_manager, security or admin); make run's is in data/demo-tokens")
	enrollCA := fs.String("enroll-ca", "", "with -enroll: PEM certificate to trust for an https URL besides the system's, e.g. twin-service's self-signed {data_dir}/tls/cert.pem")
	statePath := fs.String("state", "", "keep each gateway's sequence number in this file, so that after a clean stop the next run continues without a gap")
	control := fs.String("control", "", "listen on this Unix socket (mode 0600, removed at exit) for scenario steps to play on the fleet's own gateways: firmware-sim scenario FILE -fleet PATH (make run's is {data}/fleet.sock)")
	if err := fs.Parse(args); err != nil {
		return cli.Usage(err)
	}
	f, err := fleet.New(cfg)
	if err != nil {
		return err
	}
	if *regPath != "" {
		if err := registry.WriteFile(*regPath, f.Registry()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "firmware-sim: wrote registry of %d gateways to %s\n", len(f.Gateways), *regPath)
	}
	if *regOnly {
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "fleet")
	if *enrollAPI != "" {
		n, err := enrollFleet(ctx, f, *enrollAPI, *enrollTokens, *enrollCA)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "firmware-sim: enrolled %d gateways with %s (%d already were)\n", n, *enrollAPI, len(f.Gateways)-n)
	}
	if *statePath != "" {
		if pub.Resume, err = loadSeqState(*statePath); err != nil {
			return err
		}
		defer func() {
			if err := saveSeqState(*statePath, true, f.Seqs()); err != nil {
				fmt.Fprintln(stderr, "firmware-sim:", err)
			}
		}()
	}
	p, err := fleet.NewPublisher(f, pub, log)
	if err != nil {
		return err
	}
	var acked *ackLog
	if *ackedLog != "" {
		if acked, err = openAckLog(*ackedLog, log); err != nil {
			return err
		}
		p.OnAck = acked.record
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if *control != "" {
		ctl, err := fleet.ListenControl(f, *control, log.With("component", "fleet-control"))
		if err != nil {
			return err
		}
		defer ctl.Close()
		go func() {
			if err := ctl.Serve(ctx); err != nil {
				log.Error("control socket", "err", err)
			}
		}()
		fmt.Fprintf(stderr, "firmware-sim: scenario steps on %s (firmware-sim scenario -fleet %s FILE plays a file on this fleet)\n", *control, *control)
	}
	gpus := cfg.Sites * cfg.ServersPerSite * cfg.GPUsPerServer
	fmt.Fprintf(stderr, "firmware-sim: publishing %d gateways (%d GPUs) to %s at %g Hz\n", len(f.Gateways), gpus, pub.Broker, pub.Rate)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	records := *demo > 0 && rec.api != "" && *demoTokens != ""
	if records {
		if err := rec.readTokens(*demoTokens); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		rec.client, rec.log = &http.Client{Timeout: 10 * time.Second}, log
		rec.restoreSwap(ctx, f) // before the first inventory
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if *demo > 0 {
		go func() {
			say := func(what string) { log.Info("demo: " + what) }
			if records {
				go rec.run(ctx, f)
			}
			if err := f.RunDemo(ctx, fleet.Demo{Interval: *demo, First: min(20*time.Second, *demo), OnEvent: say}); err != nil {
				log.Error("demo", "err", err)
			}
		}()
	}
	for {
		select {
		case err := <-done:
			fmt.Fprintf(stderr, "firmware-sim: sent %d, acknowledged %d, failed %d\n", p.Stats.Sent.Load(), p.Stats.Acked.Load(), p.Stats.Failed.Load())
			return errors.Join(err, acked.close())
		case <-tick.C:
			log.Info("progress", "sent", p.Stats.Sent.Load(), "acked", p.Stats.Acked.Load(), "failed", p.Stats.Failed.Load())
		}
	}
}

// enrollFleet enrolls f with the twin-service at api, authenticated by the
// fleet= token in tokenFile.
func enrollFleet(ctx context.Context, f *fleet.Fleet, api, tokenFile, caFile string) (int, error) {
	tokens, err := readTokens(tokenFile)
	if err != nil {
		return 0, fmt.Errorf("-enroll-tokens: %w", err)
	}
	if tokens["fleet"] == "" {
		return 0, fmt.Errorf("-enroll-tokens %s: no fleet= line", tokenFile)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return 0, fmt.Errorf("-enroll-ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return 0, fmt.Errorf("-enroll-ca %s: no PEM certificate in it", caFile)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	}
	return f.Enroll(ctx, hc, api, tokens["fleet"])
}

// readTokens reads a tokens file (data/demo-tokens): lines NAME=TOKEN.
func readTokens(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && v != "" {
			out[k] = v
		}
	}
	return out, nil
}

// ackLog is the --acked-log file: "gateway seq" for every acknowledged
// message. A write that fails is logged, ends the log and is returned by
// close: a run whose log misses acknowledged messages does not succeed.
type ackLog struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	log *slog.Logger
	err error // the first write error
}

func openAckLog(path string, log *slog.Logger) (*ackLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &ackLog{f: f, w: bufio.NewWriter(f), log: log}, nil
}

func (l *ackLog) record(gw string, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	fmt.Fprintf(l.w, "%s %d\n", gw, seq) // a failure sticks to w: Flush returns it
	// An acknowledged message is written out before the next one is counted.
	if err := l.w.Flush(); err != nil {
		l.err = fmt.Errorf("acked log %s: %w", l.f.Name(), err)
		l.log.Error("acked log: write failed, no further acknowledgements recorded", "err", err)
	}
}

// close closes the file and returns the first write error. A nil log does
// nothing.
func (l *ackLog) close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.err, l.f.Close())
}

// seqState is the --state file: the last sequence number of each gateway,
// trusted only when the previous run stopped cleanly.
type seqState struct {
	Clean bool              `json:"clean"`
	Seqs  map[string]uint64 `json:"seqs"`
}

// loadSeqState returns the sequence numbers to resume from (none after a
// crash: then the time-based base keeps numbers from repeating) and marks
// the file unclean until this run stops.
func loadSeqState(path string) (map[string]uint64, error) {
	var st seqState
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read state: %w", err)
	default:
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("state file %s: %w", path, err)
		}
	}
	if err := saveSeqState(path, false, st.Seqs); err != nil {
		return nil, err
	}
	if !st.Clean {
		return nil, nil
	}
	return st.Seqs, nil
}

func saveSeqState(path string, clean bool, seqs map[string]uint64) error {
	data, err := json.Marshal(seqState{Clean: clean, Seqs: seqs})
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

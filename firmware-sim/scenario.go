package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"twinchain/internal/apiclient"
	"twinchain/internal/cli"
	"twinchain/internal/registry"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/sim/scenario"
)

// runScenario plays a scenario file (testdata/scenarios/*.yaml): by default
// on the running fleet (make run's, through its control socket), so its
// own gateways report the incident; with -own-fleet over a simulated fleet
// of the file's own, and with -check it compares the alerts twin-service
// raised with the file's.
func runScenario(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("scenario", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("fleet", "", "control socket of the running fleet to play the file on (default {data}/fleet.sock, {data} being TWINCHAIN_DATA_DIR or ./data: make run's)")
	own := fs.Bool("own-fleet", false, "play over a simulated fleet of the file's own instead (its gateways connect to -broker with keys of their own; refused when twin-service holds those gateway ids under other keys)")
	api := apiclient.Bind(fs, os.Getenv)
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "with -own-fleet: MQTT broker URL")
	regPath := fs.String("registry", "", "write the scenario's own fleet's gateway registry (JSON) to this file first (implies -own-fleet)")
	regOnly := fs.Bool("registry-only", false, "write the registry and exit")
	speed := fs.Float64("speed", 0, "simulated seconds per real second (0: the file's); on the running fleet it spaces the steps only")
	hold := fs.Duration("hold", 0, "with -own-fleet: keep the fleet publishing this long (real time) after the script")
	check := fs.Bool("check", false, "with -own-fleet: after the run, wait for the expected alerts and report detections, false alerts and latency; fail on a mismatch")
	timeout := fs.Duration("timeout", 60*time.Second, "how long -check waits for the expected alerts")
	var tokens scenario.Tokens
	fs.StringVar(&tokens.Create, "creator-token", "", "API bearer token of the person who opens the file's work orders (maintenance)")
	fs.StringVar(&tokens.Approve, "approver-token", "", "API bearer token of the person who approves them and resolves alerts (security), not the creator")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: firmware-sim scenario [flags] FILE

Plays a scenario file on the running fleet: make run's fleet listens on
{data}/fleet.sock and its own gateways report each step (an XID, a swap, a
theft...), signed with their own keys, so nothing is impersonated. The
fleet keeps real time: steps come at their offsets divided by the file's
speed, and what they set going unfolds in real time. -own-fleet plays the
file over a simulated fleet of its own instead, as the scenario suite does;
it needs a twin-service that holds those gateways with the same keys (or
none), and refuses one that holds them under other keys.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cli.Usage(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cli.Usage(fmt.Errorf("want one scenario file"))
	}
	f, err := scenario.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	if *speed > 0 {
		f.Speed = *speed
	}
	if *regPath != "" || *regOnly {
		*own = true // the registry is the scenario's own fleet's
	}
	if *own {
		fl, err := f.NewFleet()
		if err != nil {
			return err
		}
		if *regPath != "" {
			if err := registry.WriteFile(*regPath, fl.Registry()); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "firmware-sim: wrote registry of %d gateways to %s\n", len(fl.Gateways), *regPath)
		}
		if *regOnly {
			return nil
		}
	}
	client, err := api.Client()
	if err != nil {
		return err
	}
	tokens.Read = client.Token
	if tokens.Approve == "" {
		tokens.Approve = client.Token
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "scenario")
	opts := scenario.Options{Broker: *broker, API: client.Server, Tokens: tokens, Log: log, Hold: *hold}
	if !*own {
		if *check || *hold != 0 {
			return cli.Usage(fmt.Errorf("-check and -hold go with -own-fleet"))
		}
		path := *sock
		if path == "" {
			data := os.Getenv("TWINCHAIN_DATA_DIR")
			if data == "" {
				data = "data"
			}
			path = filepath.Join(data, "fleet.sock")
		}
		return playOnFleet(ctx, f, path, opts, stderr)
	}
	fl, err := f.NewFleet()
	if err != nil {
		return err
	}
	if err := refuseImpersonation(ctx, client, fl.Registry()); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "firmware-sim: scenario %s: %s simulated at %gx over its own fleet\n", f.Name, f.Duration, f.Speed)
	rep, err := scenario.Run(ctx, f, opts)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Fprintf(stderr, "%s\n", out)
	if !*check {
		return nil
	}
	o, err := scenario.Wait(ctx, client.Server, tokens.Read, f, rep, *timeout, 2*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, o)
	fmt.Fprint(stderr, scenario.Table([]*scenario.Outcome{o}))
	if !o.OK() {
		return fmt.Errorf("scenario %s: %d missing, %d false alerts, %d incidents", f.Name, len(o.Missing), len(o.False), o.Incidents)
	}
	return nil
}

// playOnFleet plays f on the running fleet at path and prints each step.
func playOnFleet(ctx context.Context, f *scenario.File, path string, opts scenario.Options, stderr io.Writer) error {
	fmt.Fprintf(stderr, "firmware-sim: scenario %s: %d step(s) over %s on the running fleet at %s\n", f.Name, len(f.Steps),
		time.Duration(float64(f.Duration)/f.Speed).Round(time.Second), path)
	rep, err := scenario.PlayOnFleet(ctx, f, path, opts, func(s scenario.FleetStep) {
		var gws []string
		for _, g := range s.Gateways {
			gws = append(gws, fmt.Sprintf("%s after seq %d", g.ID, g.Seq))
		}
		fmt.Fprintf(stderr, "  step %d %s %s: %s", s.Index, s.Action, s.Target, s.Did)
		if len(gws) > 0 {
			fmt.Fprintf(stderr, " (reported by %s)", strings.Join(gws, ", "))
		}
		fmt.Fprintln(stderr)
	})
	if errors.Is(err, scenario.ErrNoFleet) {
		return fmt.Errorf("%w\nstart make run (its fleet listens on {data}/fleet.sock), or pass -fleet PATH for another fleet's control socket (firmware-sim fleet -control PATH), or -own-fleet to play over a simulated fleet of the file's own", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "firmware-sim: played %d step(s) of %s on the running fleet; watch the Alerts and Incidents views (expected: %s)\n", len(rep.Steps), f.Name, expectations(f))
	return nil
}

func expectations(f *scenario.File) string {
	var out []string
	for _, e := range f.Expect {
		out = append(out, e.String())
	}
	if len(out) == 0 {
		return "no alert"
	}
	return strings.Join(out, ", ")
}

// refuseImpersonation asks twin-service which of reg's gateway ids it
// holds under other keys: a fleet of the scenario's own would impersonate
// them (forged signatures, replays, offline gateways), so the run is
// refused.
func refuseImpersonation(ctx context.Context, c *apiclient.Client, reg registry.File) error {
	held, err := fleet.Registered(ctx, c.HTTP, c.Server, c.Token)
	if err != nil {
		return fmt.Errorf("-own-fleet: ask %s which gateways it holds: %w (pass -server and -token, or play on the running fleet without -own-fleet)", c.Server, err)
	}
	var clash []string
	for _, g := range reg.Gateways {
		if k, ok := held[g.ID]; ok && !k.Equal(g.PublicKey) {
			clash = append(clash, g.ID)
		}
	}
	if len(clash) > 0 {
		return fmt.Errorf("-own-fleet: %s holds %s under other keys: the scenario's own fleet would impersonate them (bad signatures, replays, offline alerts) instead of playing the incident; play the file on the running fleet (drop -own-fleet), or point -server at a twin-service that holds them with the scenario fleet's keys or not at all", c.Server, strings.Join(clash, ", "))
	}
	return nil
}

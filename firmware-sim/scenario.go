package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"twinchain/internal/cli"
	"twinchain/internal/registry"
	"twinchain/internal/sim/scenario"
)

// runScenario plays a scenario file (testdata/scenarios/*.yaml) and, with
// -check, compares the alerts twin-service raised with the file's.
func runScenario(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("scenario", flag.ContinueOnError)
	fs.SetOutput(stderr)
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	api := fs.String("api", "http://127.0.0.1:8080", "twin-service URL (work orders, -check)")
	regPath := fs.String("registry", "", "write the scenario fleet's gateway registry (JSON) to this file first")
	regOnly := fs.Bool("registry-only", false, "write the registry and exit")
	speed := fs.Float64("speed", 0, "simulated seconds per real second (0: the file's)")
	hold := fs.Duration("hold", 0, "keep the fleet publishing this long (real time) after the script")
	check := fs.Bool("check", false, "after the run, wait for the expected alerts and report detections, false alerts and latency; fail on a mismatch")
	timeout := fs.Duration("timeout", 60*time.Second, "how long -check waits for the expected alerts")
	var tokens scenario.Tokens
	fs.StringVar(&tokens.Read, "token", "", "API bearer token that may read alerts (-check)")
	fs.StringVar(&tokens.Create, "creator-token", "", "API bearer token of the person who opens the file's work orders (maintenance)")
	fs.StringVar(&tokens.Approve, "approver-token", "", "API bearer token of the person who approves them (security), not the creator")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: firmware-sim scenario [flags] FILE")
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
	if *regPath != "" {
		fl, err := f.NewFleet()
		if err != nil {
			return err
		}
		if err := registry.WriteFile(*regPath, fl.Registry()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "firmware-sim: wrote registry of %d gateways to %s\n", len(fl.Gateways), *regPath)
	}
	if *regOnly {
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "scenario")
	fmt.Fprintf(stderr, "firmware-sim: scenario %s: %s simulated at %gx\n", f.Name, f.Duration, f.Speed)
	rep, err := scenario.Run(ctx, f, scenario.Options{Broker: *broker, API: *api, Tokens: tokens, Log: log, Hold: *hold})
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Fprintf(stderr, "%s\n", out)
	if !*check {
		return nil
	}
	o, err := scenario.Wait(ctx, *api, tokens.Read, f, rep, *timeout, 2*time.Second)
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

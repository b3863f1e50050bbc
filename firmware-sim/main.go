// Command firmware-sim simulates fleets, serial devices and incidents for
// demos, tests and benchmarks.
//
//	firmware-sim fleet     publish a simulated fleet over MQTT as edge agents would
//	firmware-sim serial    serial devices on pseudo-terminals (RFID, GPS) and a GPU source
//	firmware-sim scenario  play scripted incidents on the running fleet (its control socket) or over a fleet of their own
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"twinchain/internal/cli"
)

// commands maps each subcommand to its entry point; each lives in its own file.
var commands = map[string]struct {
	run   func(ctx context.Context, args []string, stderr io.Writer) error
	usage string
}{
	"load":     {runLoad, "offer pre-signed 8-GPU telemetry from many gateways at a fixed rate; report acks, latency and the service's lag, RSS and CPU"},
	"fleet":    {runFleet, "publish a simulated fleet over MQTT (signed envelopes) and write its gateway registry"},
	"serial":   {runSerial, "serial devices on pseudo-terminals (RDM6300, UHF reader, u-blox GPS) and a simulated GPU source for edge-agent"},
	"scenario": {runScenario, "play scripted incidents (testdata/scenarios/*.yaml) on the running fleet (make run's data/fleet.sock), or with -own-fleet over a fleet of their own and check the alerts"},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(cli.Exit("firmware-sim", err, os.Stderr)) // 0 done or -h, 1 failed, 2 usage error
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return cli.Usage(fmt.Errorf("missing command"))
		}
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return cli.Usage(fmt.Errorf("unknown command %q", args[0]))
	}
	return cmd.run(ctx, args[1:], stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: firmware-sim COMMAND [flags]   (firmware-sim COMMAND -h for its flags)")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, commands[name].usage)
	}
}

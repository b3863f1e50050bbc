// Command edge-agent runs on a gateway or GPU host: it reads RFID readers and
// GPS receivers on serial ports and the host's GPUs (NVML, or firmware-sim's
// simulated source), and publishes signed, sequenced messages over MQTT,
// keeping them in a bounded disk queue until the broker acknowledges them.
//
//	edge-agent run    --config edge-agent.yaml   run the agent
//	edge-agent enroll --config edge-agent.yaml --server URL --token T
//	edge-agent pubkey --config edge-agent.yaml   print the gateway's public key
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"twinchain/internal/cli"
)

// version is the agent's version, reported in its status messages.
var version = "0.1.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(cli.Exit("edge-agent", err, os.Stderr)) // 0 done or -h, 1 failed, 2 usage error
}

var commands = []struct {
	name, usage string
	run         func(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error
}{
	{"run", "run the agent: read devices, publish over MQTT, store and forward", runAgent},
	{"enroll", "register this gateway's public key with twin-service using a one-time token", runEnroll},
	{"pubkey", "print this gateway's public key (base64), creating the key on first use", runPubkey},
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return cli.Usage(errors.New("missing command"))
		}
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stderr, os.Getenv)
		}
	}
	usage(stderr)
	return cli.Usage(fmt.Errorf("unknown command %q", args[0]))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: edge-agent COMMAND [flags]   (edge-agent COMMAND -h for its flags)")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\n"+helpText)
}

// Command twin-service is twinchain's centre: an MQTT broker (embedded, or a
// client of an external one) feeding the ingest, the twin store and the
// HTTP API. See `twin-service -h` for configuration.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"twinchain/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	privateUmask()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(exitStatus(err, os.Stderr))
}

// exitStatus is the exit status for what run returned, printing the
// error: the convention of internal/cli (0 done or -h, 1 failed, 2 usage
// error), with verify's 3 besides (see runVerify).
func exitStatus(err error, stderr io.Writer) int { return cli.Exit("twin-service", err, stderr) }

// commands are twin-service's subcommands; with none, it runs the service.
var commands = []struct {
	name, usage string
	run         func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}{
	{"verify", "check a proof bundle, a ledger directory or a data directory offline (no server)", runVerify},
	{"ledger", "record datasets, models, sign-offs and deployments, export proofs (through the API)", runLedgerCLI},
	{"token", "create, list and revoke API tokens (through the API, as an admin)", runTokenCLI},
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "help" {
		return runHelp(args[1:], getenv, stderr)
	}
	for _, c := range commands {
		if len(args) > 0 && args[0] == c.name {
			return c.run(ctx, args[1:], getenv, os.Stdout, stderr)
		}
	}
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	if cfg.CPUProfile != "" {
		stop, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer stop(log)
	}
	svc, err := openService(cfg, log)
	if err != nil {
		return err
	}
	defer svc.close()
	if cfg.MemProfile != "" {
		var stop func()
		ctx, stop = watchMemory(ctx, cfg.MemProfile, log)
		defer stop()
	}
	return svc.run(ctx, stderr)
}

// runHelp is `twin-service help [COMMAND]`: the usage of the service or
// of a command.
func runHelp(args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) == 0 {
		_, err := loadConfig([]string{"-h"}, getenv, stderr)
		return err
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(context.Background(), []string{"-h"}, getenv, io.Discard, stderr)
		}
	}
	return usageError(fmt.Errorf("help: unknown command %q (twin-service -h lists them)", args[0]))
}

// serviceUsage is twin-service -h: the commands, then the service's flags
// with their defaults.
func serviceUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: twin-service [flags]            run the service")
	fmt.Fprintln(w, "       twin-service COMMAND [flags]    (twin-service COMMAND -h for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nExit status: 0 done (and -h), 1 failed, 2 usage error (verify: 3 consistent, but no key pinned).")
	fmt.Fprintln(w, "Precedence: flags over TWINCHAIN_* environment over the -config file over defaults.\n\nflags:")
	fs.PrintDefaults()
}

// commandOf reads the COMMAND of `twin-service GROUP COMMAND [flags]`:
// with none, or -h, it prints usage and answers a usage error, or
// flag.ErrHelp.
func commandOf(group string, args []string, usage func()) (string, error) {
	if len(args) > 0 && args[0] != "-h" && args[0] != "-help" && args[0] != "--help" {
		return args[0], nil
	}
	usage()
	if len(args) == 0 {
		return "", usageError(fmt.Errorf("%s: missing command", group))
	}
	return "", flag.ErrHelp
}

// usageError marks err as a usage error (exit status 2).
func usageError(err error) error { return cli.Usage(err) }

// startCPUProfile profiles the process into path until stop.
func startCPUProfile(path string) (stop func(*slog.Logger), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func(log *slog.Logger) {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Error("cpu profile", "err", err)
		}
	}, nil
}

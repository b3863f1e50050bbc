// Command twin-service is twinchain's centre: an MQTT broker (embedded, or a
// client of an external one) feeding the ingest, the twin store and the
// HTTP API. See `twin-service -h` for configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	privateUmask()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "twin-service:", err)
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		os.Exit(code)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if sub := subcommand(args); sub != nil { // verify, ledger: see verify.go
		return sub(ctx, args[1:], getenv, os.Stdout, stderr)
	}
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h printed the usage
	}
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
	return svc.run(ctx, stderr)
}

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

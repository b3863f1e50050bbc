// Package cli is the help and exit-status convention of twinchain's three
// programs (twin-service, edge-agent, firmware-sim):
//
//   - PROGRAM -h (and PROGRAM COMMAND -h) prints the usage to stderr and
//     exits 0;
//   - a usage error (an unknown command or flag, a missing or bad
//     argument) prints what is wrong and exits 2;
//   - any other failure prints "PROGRAM: error" and exits 1;
//   - a command may name its own statuses with ExitError (twin-service
//     verify: 3, consistent but no key pinned).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit statuses.
const (
	StatusOK      = 0
	StatusFailed  = 1
	StatusUsage   = 2
	helpRequested = 0
)

// ExitError carries the process's exit status.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Usage marks err as a usage error (exit status 2); -h (flag.ErrHelp)
// stays itself (exit status 0); nil stays nil.
func Usage(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &ExitError{StatusUsage, err}
}

// Status is the exit status for what a program's run returned.
func Status(err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return helpRequested
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return StatusFailed
}

// Exit prints err (unless it is nil or -h) as "prog: err" to stderr and
// returns the exit status for it.
func Exit(prog string, err error, stderr io.Writer) int {
	code := Status(err)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	}
	return code
}

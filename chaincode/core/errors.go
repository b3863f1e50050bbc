package core

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes name the sentinels in messages that cross a process boundary
// (a Fabric chaincode response carries only a string).
var codes = []struct {
	code string
	err  error
}{
	{"forbidden", ErrForbidden},
	{"invalid", ErrInvalid},
	{"not_found", ErrNotFound},
	{"conflict", ErrConflict},
}

// Code returns the stable code of the sentinel err wraps: "forbidden",
// "invalid", "not_found" or "conflict"; "internal" for any other error.
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// CodedMessage is err's message prefixed with its code in brackets, e.g.
// `[not_found] asset "x": not found`. The Fabric contract returns errors in
// this form.
func CodedMessage(err error) string { return "[" + Code(err) + "] " + err.Error() }

// ParseCodedMessage turns a message holding a CodedMessage (possibly inside a
// client library's own wording) back into an error that wraps the sentinel,
// so errors.Is works across the boundary. A message without a known code
// becomes a plain error.
func ParseCodedMessage(msg string) error {
	for _, c := range codes {
		if i := strings.Index(msg, "["+c.code+"] "); i >= 0 {
			return fmt.Errorf("%s: %w", strings.TrimSuffix(msg[i+len(c.code)+3:], ": "+c.err.Error()), c.err)
		}
	}
	return errors.New(msg)
}

//go:build !cgo || !linux

package gpu

import (
	"errors"
	"log/slog"
)

// OpenNVML reports that this build has no NVML: it needs cgo on Linux.
func OpenNVML(*slog.Logger) (Source, error) {
	return nil, errors.New("nvml: this edge-agent was built without cgo; NVML needs it")
}

package gpu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// SimSource reads snapshots written by firmware-sim: "file:PATH" (a file
// rewritten whole for every snapshot; read on every Snapshot call) or
// "unix:PATH" (a socket sending one snapshot per line; the latest is kept).
type SimSource struct {
	kind, path string
	log        *slog.Logger

	mu     sync.Mutex
	latest Snapshot
	have   bool
	err    error
	Bad    uint64 // snapshots refused as malformed
}

// NewSimSource parses addr ("file:PATH" or "unix:PATH").
func NewSimSource(addr string, log *slog.Logger) (*SimSource, error) {
	kind, path, ok := strings.Cut(addr, ":")
	if !ok || path == "" || kind != "file" && kind != "unix" {
		return nil, fmt.Errorf("simulated gpu source %q: want file:PATH or unix:PATH", addr)
	}
	return &SimSource{kind: kind, path: path, log: log}, nil
}

// String names the source for logs.
func (s *SimSource) String() string { return "simulated (" + s.kind + ":" + s.path + ")" }

// maxSnapshot bounds one snapshot's bytes.
const maxSnapshot = 1 << 20

// Run keeps a unix-socket source connected until ctx ends; for a file
// source it only waits.
func (s *SimSource) Run(ctx context.Context) error {
	if s.kind == "file" {
		<-ctx.Done()
		return nil
	}
	failing := false
	for ctx.Err() == nil {
		err := s.readSocket(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !failing {
			s.log.Warn("simulated gpu source unavailable, retrying every 1s", "path", s.path, "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (s *SimSource) readSocket(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", s.path)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s.log.Info("simulated gpu source connected", "path", s.path)
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), maxSnapshot)
	logged := false
	for sc.Scan() {
		snap, err := ParseSnapshot(sc.Bytes())
		s.mu.Lock()
		if err != nil {
			s.Bad++
		} else {
			s.latest, s.have, s.err = snap, true, nil
		}
		s.mu.Unlock()
		if err != nil && !logged {
			s.log.Warn("simulated gpu source: refused a snapshot (logged once per connection)", "err", err)
			logged = true
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("connection closed")
}

// Snapshot returns the latest snapshot.
func (s *SimSource) Snapshot(context.Context) (Snapshot, error) {
	if s.kind == "file" {
		data, err := os.ReadFile(s.path)
		if err != nil {
			return Snapshot{}, fmt.Errorf("read simulated gpu file: %w", err)
		}
		snap, err := ParseSnapshot(data)
		if err != nil {
			s.mu.Lock()
			s.Bad++
			s.mu.Unlock()
		}
		return snap, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.have {
		return Snapshot{}, fmt.Errorf("no snapshot from %s yet", s.path)
	}
	return s.latest, nil
}

// Close releases nothing; the socket closes when Run returns.
func (s *SimSource) Close() error { return nil }

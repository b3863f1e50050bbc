package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The control socket: a running fleet (firmware-sim fleet -control PATH,
// make run's {data}/fleet.sock) takes scenario steps to play on its own
// gateways. The protocol is line-delimited JSON, one request and one
// answer a line:
//
//	{"op":"play","step":{"action":"theft","target":"gw-s1-dock","speed_ms":15,"heading":90}}
//	{"ok":true,"did":"gw-s1-dock is carried off ...","gateways":[{"id":"gw-s1-dock","seq":1733453107000123}]}
//
// "check" answers the same without playing the step (does the fleet have
// its target?); a bad request gets {"ok":false,"error":"..."} and the
// connection (and the fleet) go on. The socket is the owner's only (mode
// 0600) and is removed when the fleet stops.

// ControlRequest is one line a client sends.
type ControlRequest struct {
	Op   string `json:"op"` // play or check
	Step Step   `json:"step"`
}

// ControlAnswer is the fleet's answer to one request.
type ControlAnswer struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Did   string `json:"did,omitempty"`
	// Gateways are the gateways that report the step, each with the last
	// sequence number it used before it: its next messages carry it.
	Gateways []GatewaySeq `json:"gateways,omitempty"`
}

// GatewaySeq is a gateway and a sequence number.
type GatewaySeq struct {
	ID  string `json:"id"`
	Seq uint64 `json:"seq"`
}

// Bounds on what the socket takes.
const (
	maxControlLine  = 16 << 10
	maxControlConns = 4
	controlIdle     = 10 * time.Minute
)

// Control serves a fleet's control socket.
type Control struct {
	fleet *Fleet
	ln    *net.UnixListener
	path  string
	log   *slog.Logger
	conns chan struct{}
	// Played and Refused count steps played and requests refused.
	Played, Refused atomic.Uint64
}

// ListenControl opens the control socket at path for f, mode 0600. A
// socket left there by a fleet that stopped without removing it is
// replaced; one a running fleet still answers on is not, nor anything
// that is not a socket.
func ListenControl(f *Fleet, path string, log *slog.Logger) (*Control, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: a file that is not a socket is there", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another fleet listens there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: remove the stale %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return &Control{fleet: f, ln: ln, path: path, log: log, conns: make(chan struct{}, maxControlConns)}, nil
}

// Path is the socket's path.
func (c *Control) Path() string { return c.path }

// Serve answers connections until ctx ends, then closes the socket (which
// removes it) and every connection.
func (c *Control) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { c.ln.Close() })
	defer stop()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		select {
		case c.conns <- struct{}{}:
		default:
			c.Refused.Add(1)
			writeAnswer(conn, ControlAnswer{Error: fmt.Sprintf("busy: at most %d connections", maxControlConns)})
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-c.conns }()
			closeOnEnd := context.AfterFunc(ctx, func() { conn.Close() })
			defer closeOnEnd()
			c.serveConn(conn)
		}()
	}
}

// Close closes the socket (Serve returns).
func (c *Control) Close() error {
	err := c.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (c *Control) serveConn(conn net.Conn) {
	defer conn.Close()
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 4096), maxControlLine)
	for {
		conn.SetReadDeadline(time.Now().Add(controlIdle))
		if !sc.Scan() {
			if errors.Is(sc.Err(), bufio.ErrTooLong) {
				c.Refused.Add(1)
				writeAnswer(conn, ControlAnswer{Error: fmt.Sprintf("request longer than %d bytes", maxControlLine)})
			}
			return
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ans := c.handle(line)
		if !ans.OK {
			c.Refused.Add(1)
			c.log.Warn("control: request refused", "err", ans.Error)
		}
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeAnswer(conn, ans); err != nil {
			return
		}
	}
}

func (c *Control) handle(line []byte) ControlAnswer {
	var req ControlRequest
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return ControlAnswer{Error: "bad request: " + err.Error()}
	}
	switch req.Op {
	case "check":
		if err := c.fleet.Check(req.Step); err != nil {
			return ControlAnswer{Error: err.Error()}
		}
		return ControlAnswer{OK: true}
	case "play":
		did, gws, err := c.fleet.Play(req.Step)
		if err != nil {
			return ControlAnswer{Error: err.Error()}
		}
		c.Played.Add(1)
		c.log.Info("control: played "+req.Step.Action, "did", did)
		ans := ControlAnswer{OK: true, Did: did}
		for _, g := range gws {
			ans.Gateways = append(ans.Gateways, GatewaySeq{ID: g.ID, Seq: g.Seq()})
		}
		return ans
	}
	return ControlAnswer{Error: fmt.Sprintf("op %q: want play or check", req.Op)}
}

func writeAnswer(conn net.Conn, a ControlAnswer) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = conn.Write(append(b, '\n'))
	return err
}

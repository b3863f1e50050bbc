// Package serialport opens serial ports (RFID readers, GPS receivers) with
// github.com/tarm/serial and splits their byte streams into bounded lines.
package serialport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tarm/serial"
)

// readTimeout bounds one Read so a reader notices its context ending: the
// port is opened with VMIN=0/VTIME, and a Read that times out returns 0 bytes.
const readTimeout = 200 * time.Millisecond

// Open opens the serial port at path (a tty or a pseudo-terminal's slave) at
// baud, 8N1, raw.
func Open(path string, baud int) (io.ReadWriteCloser, error) {
	p, err := serial.OpenPort(&serial.Config{Name: path, Baud: baud, ReadTimeout: readTimeout})
	if err != nil {
		return nil, fmt.Errorf("open serial port %s at %d baud: %w", path, baud, err)
	}
	return p, nil
}

// Pump reads r until ctx ends or r fails, handing each chunk to feed. A read
// that times out (0 bytes, io.EOF on a tty opened with VTIME) is not an error.
// buf is reused for every read; feed must not keep it.
func Pump(ctx context.Context, r io.Reader, buf []byte, feed func([]byte)) error {
	for ctx.Err() == nil {
		n, err := r.Read(buf)
		if n > 0 {
			feed(buf[:n])
		}
		if err != nil && !errors.Is(err, io.EOF) {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
	}
	return nil
}

// Lines splits a byte stream into lines ended by LF (a CR before it is
// removed). A line longer than Max bytes is dropped whole and counted in
// Overlong: a receiver at the wrong baud rate produces long runs of garbage
// with no line ends. Lines is not safe for concurrent use.
type Lines struct {
	Max      int    // longest line kept, in bytes
	Overlong uint64 // lines dropped for being longer than Max
	buf      []byte
	skip     bool // inside an overlong line, dropping until the next LF
}

// Feed consumes p and calls emit for each complete line. The slice passed to
// emit is valid only during the call.
func (l *Lines) Feed(p []byte, emit func(line []byte)) {
	for _, c := range p {
		if c == '\n' {
			if l.skip {
				l.skip = false
				l.buf = l.buf[:0]
				continue
			}
			line := l.buf
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) > 0 {
				emit(line)
			}
			l.buf = l.buf[:0]
			continue
		}
		if l.skip {
			continue
		}
		if len(l.buf) >= l.Max {
			l.Overlong++
			l.skip = true
			l.buf = l.buf[:0]
			continue
		}
		l.buf = append(l.buf, c)
	}
}

// OpenFunc opens a serial port; Open is one.
type OpenFunc func(path string, baud int) (io.ReadWriteCloser, error)

// Keep opens the port at path and runs read on it until ctx ends. When the
// port cannot be opened or read fails (a device unplugged), it tries again
// every retry; the failure is logged once until the port works again.
// opened is called after each successful open.
func Keep(ctx context.Context, log *slog.Logger, open OpenFunc, path string, baud int, retry time.Duration,
	opened func(), read func(port io.Reader) error) {
	failing := false
	for ctx.Err() == nil {
		port, err := open(path, baud)
		if err == nil {
			opened()
			failing = false
			err = read(port)
			port.Close()
			if err == nil && ctx.Err() == nil {
				err = errors.New("port closed")
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !failing {
			log.Warn("serial port unavailable, retrying", "port", path, "every", retry, "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

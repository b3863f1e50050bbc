package devicesim

import (
	"fmt"
	"os"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// PTY is a simulated serial device: the simulator writes to a
// pseudo-terminal's master, the agent opens its slave (Path) as a serial port.
type PTY struct {
	Path   string
	master *os.File
	slave  *os.File // held open so writes never fail for want of a reader
	baud   int
	// Overruns counts writes dropped because nobody read the port (like a
	// UART overrun; keeps the queue from filling with stale data).
	Overruns int
}

// OpenPTY opens a pseudo-terminal in raw mode that paces writes like a line at baud.
func OpenPTY(baud int) (*PTY, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pseudo-terminal: %w", err)
	}
	if err := makeRaw(int(s.Fd())); err != nil {
		m.Close()
		s.Close()
		return nil, fmt.Errorf("raw mode on %s: %w", s.Name(), err)
	}
	return &PTY{Path: s.Name(), master: m, slave: s, baud: baud}, nil
}

func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// backlogLimit is how many unread bytes a port holds before the simulator
// discards them as a real UART would.
const backlogLimit = 2048

// Write sends b and then waits as long as b takes on the line (10 bits a byte).
func (p *PTY) Write(b []byte) error {
	if n, err := unix.IoctlGetInt(int(p.slave.Fd()), unix.TIOCINQ); err == nil && n > backlogLimit {
		if err := unix.IoctlSetInt(int(p.slave.Fd()), unix.TCFLSH, unix.TCIFLUSH); err != nil {
			return fmt.Errorf("discard backlog of %s: %w", p.Path, err)
		}
		p.Overruns++
	}
	if _, err := p.master.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", p.Path, err)
	}
	if p.baud > 0 {
		time.Sleep(time.Duration(len(b)) * 10 * time.Second / time.Duration(p.baud))
	}
	return nil
}

// Close closes both ends.
func (p *PTY) Close() error {
	p.slave.Close()
	return p.master.Close()
}

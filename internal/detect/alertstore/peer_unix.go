//go:build unix

package alertstore

import (
	"net"
	"syscall"
)

// peerClosed reports whether the receiver closed c (it never writes to
// us): a non-blocking peek that finds the end of the stream or an error.
// Writing into a connection the peer closed succeeds once and loses the
// message, so the syslog sink checks before each write.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var one [1]byte
	if err := raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && rerr == nil || rerr != nil && rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK && rerr != syscall.EINTR
		return true // never wait
	}); err != nil {
		return true
	}
	return closed
}

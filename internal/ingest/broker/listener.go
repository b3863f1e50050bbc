package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// maxConnectPacket is the largest CONNECT packet read from a client that has
// not authenticated: a gateway's (with its signed will) is under 1 KiB.
const maxConnectPacket = 16 << 10

// gate bounds the connections that have not authenticated yet, in all and
// per remote address, so that sockets that never send a CONNECT (or never
// finish a TLS handshake) cannot take the memory of the service.
type gate struct {
	max, perAddr int

	mu     sync.Mutex
	total  int
	byAddr map[string]int
}

func newGate(max, perAddr int) *gate {
	return &gate{max: max, perAddr: perAddr, byAddr: map[string]int{}}
}

// enter admits one more connection from addr, or says why not.
func (g *gate) enter(addr string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.total >= g.max:
		return RefusedPending
	case g.byAddr[addr] >= g.perAddr:
		return RefusedPendingAddress
	}
	g.total++
	g.byAddr[addr]++
	return ""
}

func (g *gate) leave(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.byAddr[addr]--; g.byAddr[addr] <= 0 {
		delete(g.byAddr, addr)
	}
}

// conn is a client connection as mochi sees it: the TCP or TLS connection,
// with the CONNECT's fixed header (already read to check it) put back in
// front, read through a framer. Once the client has authenticated as a
// gateway, each PUBLISH it sends is admitted in flight (inflight) when its
// fixed header is read, before the rest of it: a packet that does not fit
// waits in the socket, not in memory. The ingest hook then takes the room
// reserved (claim) and gives it back when the ingest answers.
type conn struct {
	net.Conn
	r    io.Reader
	addr string
	gate *gate
	left atomic.Bool // out of the gate: authenticated or closed

	inflight *inflight
	budget   *connBudget // this connection's share of the bytes in flight
	gateway  atomic.Bool // authenticated as a gateway: its PUBLISHes are admitted
	// reserved is the room admitted for the PUBLISH being read and not
	// claimed by the ingest hook yet (0: none).
	reserved atomic.Int64
	// life ends when the connection is closed or the broker stops: a wait
	// for room ends with it (a Read has no context of its own).
	life context.Context
	end  context.CancelFunc
	// span is how far ahead mochi set the last deadline (its keepalive and
	// a half; 0: none): lifted while a PUBLISH waits for room, set again
	// after.
	span atomic.Int64
	// packetTimeout (connect_timeout) and minPacketRate bound how long an
	// admitted PUBLISH may take to arrive (packetDeadline); timed says
	// that deadline is set, not mochi's.
	packetTimeout time.Duration
	timed         atomic.Bool
}

// minPacketRate is the slowest a gateway may send the rest of a PUBLISH
// once it is admitted: the room it holds in flight is everyone's, so a
// gateway that stops halfway through a packet must not keep it for
// mochi's keepalive deadline (up to 1.5 x max_keepalive). It gets
// connect_timeout and a second per 8 KiB, 64 kbit/s (26 KB: 13.2 s by
// default; the largest packet, 260 KiB: 42.5 s).
const minPacketRate = 8 << 10

// packetDeadline gives the admitted PUBLISH of n bytes its time to arrive
// (never more than mochi's deadline); past it the read fails and mochi
// closes the connection, which gives the room back.
func (c *conn) packetDeadline(n int) {
	d := c.packetTimeout + time.Duration(n)*time.Second/minPacketRate
	if span := time.Duration(c.span.Load()); span > 0 {
		d = min(d, span)
	}
	c.timed.Store(true)
	_ = c.Conn.SetDeadline(time.Now().Add(d))
}

// packetDone is the framer's: the packet admitted last has all been read;
// mochi's deadline again.
func (c *conn) packetDone() {
	if c.timed.Swap(false) {
		c.resumeDeadline()
	}
}

// SetDeadline is how mochi applies the keepalive before each packet
// (read and write); admit lifts it while it waits for room.
func (c *conn) SetDeadline(t time.Time) error {
	var d time.Duration
	if !t.IsZero() {
		d = time.Until(t)
	}
	c.span.Store(int64(d))
	return c.Conn.SetDeadline(t)
}

func (c *conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Close ends a wait for room, gives back room not claimed, and closes the
// connection (mochi closes a client's connection this way).
func (c *conn) Close() error {
	c.closed()
	return c.Conn.Close()
}

// closed ends the connection's life and gives back its reservation.
func (c *conn) closed() {
	c.end()
	c.unclaimed()
}

// pauseDeadline lifts mochi's keepalive deadline while a PUBLISH waits
// for room: the client can send nothing meanwhile (its packet is unread),
// and the PUBACKs written meanwhile must not fail for it either.
func (c *conn) pauseDeadline() { _ = c.Conn.SetDeadline(time.Time{}) }

// resumeDeadline sets mochi's deadline again, from now.
func (c *conn) resumeDeadline() {
	if d := time.Duration(c.span.Load()); d > 0 {
		_ = c.Conn.SetDeadline(time.Now().Add(d))
	}
}

// authenticated takes the connection out of the unauthenticated count;
// a gateway's PUBLISHes are admitted from now on.
func (c *conn) authenticated(gateway bool) {
	c.gateway.Store(gateway)
	if c.left.CompareAndSwap(false, true) {
		c.gate.leave(c.addr)
	}
}

// admit is the framer's: room in flight for a gateway's PUBLISH, waited
// for before its bytes are read. Other packets, and those of clients that
// are not gateways, pass at once.
func (c *conn) admit(typ byte, n int) error {
	if typ != packets.Publish || !c.gateway.Load() {
		return nil
	}
	c.unclaimed() // mochi dropped the last one without the hook (none, normally: OnPacketProcessed gave it back)
	if !c.inflight.acquire(c.life, c.budget, int64(n), c.pauseDeadline, c.resumeDeadline) {
		return net.ErrClosed
	}
	c.reserved.Store(int64(n))
	if c.life.Err() != nil { // closed meanwhile: Close may have looked before the Store
		c.unclaimed()
		return net.ErrClosed
	}
	c.packetDeadline(n)
	return nil
}

// claim takes the room reserved for the PUBLISH mochi has just read (the
// hook then gives it back); 0 when there is none.
func (c *conn) claim() int64 { return c.reserved.Swap(0) }

// unclaimed gives back the room reserved and not claimed.
func (c *conn) unclaimed() { c.inflight.give(room{budget: c.budget, n: c.claim()}) }

// listener is one of the broker's mochi listeners: TCP, with TLS when tls is
// set. It admits a connection only through the gate, gives it connectTimeout
// to finish its TLS handshake and send a CONNECT of at most
// maxConnectPacket bytes, and closes it otherwise. Unlike mochi's own
// listeners, Close does not make mochi walk its clients (that walk can
// deadlock in mochi v2.7.9, issue 488): the broker closes the clients itself.
type listener struct {
	id, address    string
	tls            *tls.Config
	gate           *gate
	connectTimeout time.Duration
	refused        *counters
	log            *slog.Logger
	// inflight admits gateways' PUBLISHes (conn.admit), up to maxPacket
	// bytes each, until life ends (the broker stops).
	inflight  *inflight
	maxPacket int
	life      context.Context

	ln     net.Listener
	closed atomic.Bool
	wg     sync.WaitGroup // accept loop and connection handlers

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open connections, closed at shutdown
}

var _ listeners.Listener = (*listener)(nil)

func (l *listener) ID() string { return l.id }

func (l *listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

func (l *listener) Protocol() string {
	if l.tls != nil {
		return "tls"
	}
	return "tcp"
}

// Init binds the address.
func (l *listener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.ln = ln
	l.conns = map[net.Conn]struct{}{}
	return nil
}

// Serve accepts connections until the listener is closed.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.wg.Add(1)
	defer l.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, do not spin.
			l.log.Warn("mqtt accept", "listener", l.id, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		addr, _, _ := net.SplitHostPort(nc.RemoteAddr().String())
		if reason := l.gate.enter(addr); reason != "" {
			l.refused.add(reason)
			_ = nc.Close()
			continue
		}
		if !l.track(nc) {
			l.gate.leave(addr)
			_ = nc.Close()
			return
		}
		l.wg.Add(1)
		go l.handle(nc, addr, establish)
	}
}

// track records an open connection; false once the listener is closed.
func (l *listener) track(nc net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return false
	}
	l.conns[nc] = struct{}{}
	return true
}

func (l *listener) untrack(nc net.Conn) {
	l.mu.Lock()
	delete(l.conns, nc)
	l.mu.Unlock()
}

// handle checks the start of one connection and hands it to mochi, which
// returns when the client is gone.
func (l *listener) handle(nc net.Conn, addr string, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer l.untrack(nc)
	c := &conn{Conn: nc, addr: addr, gate: l.gate, inflight: l.inflight, budget: l.inflight.newConn(), packetTimeout: l.connectTimeout}
	c.life, c.end = context.WithCancel(l.life)
	defer c.closed()
	defer c.authenticated(false) // leaves the gate if it never authenticated
	// mochi replaces this deadline with the keepalive's once the CONNECT is read.
	_ = nc.SetDeadline(time.Now().Add(l.connectTimeout))
	if l.tls != nil {
		tc := tls.Server(nc, l.tls)
		if err := tc.Handshake(); err != nil {
			l.refuse(nc, RefusedTLS, err)
			return
		}
		c.Conn = tc
	}
	header, err := readConnectHeader(c.Conn)
	if errors.Is(err, io.EOF) { // closed before a byte: a port probe
		_ = c.Conn.Close()
		return
	}
	if err != nil {
		reason := RefusedBadConnect
		if errors.Is(err, os.ErrDeadlineExceeded) {
			reason = RefusedTimeout
		}
		l.refuse(c.Conn, reason, err)
		return
	}
	c.r = &framer{r: io.MultiReader(&headerReader{b: header}, c.Conn), admit: c.admit, done: c.packetDone, max: l.maxPacket}
	if err := establish(l.id, c); err != nil {
		l.log.Debug("mqtt client ended", "listener", l.id, "remote", addr, "err", err)
	}
}

func (l *listener) refuse(c net.Conn, reason string, err error) {
	l.refused.add(reason)
	l.log.Debug("mqtt connection refused", "listener", l.id, "remote", c.RemoteAddr().String(), "reason", reason, "err", err)
	_ = c.Close()
}

// Close stops accepting and closes every connection the listener still
// has; closeClients (mochi's walk of its clients) is not called.
func (l *listener) Close(listeners.CloseFn) {
	l.mu.Lock()
	already := l.closed.Swap(true)
	open := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		open = append(open, c)
	}
	l.mu.Unlock()
	if already {
		return
	}
	if l.ln != nil {
		_ = l.ln.Close()
	}
	for _, c := range open {
		_ = c.Close()
	}
}

// wait waits up to d for the accept loop and every connection handler to
// end; false if some did not.
func (l *listener) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// headerReader returns the bytes already read, then EOF.
type headerReader struct{ b []byte }

func (h *headerReader) Read(p []byte) (int, error) {
	if len(h.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, h.b)
	h.b = h.b[n:]
	return n, nil
}

// readConnectHeader reads an MQTT fixed header and checks that it starts a
// CONNECT of at most maxConnectPacket bytes; it returns the header's bytes.
func readConnectHeader(r io.Reader) ([]byte, error) {
	var one [1]byte
	header := make([]byte, 0, 5)
	if _, err := io.ReadFull(r, one[:]); err != nil {
		return nil, err
	}
	if one[0] != 0x10 { // CONNECT, no flags
		return nil, fmt.Errorf("first packet type %#x, want CONNECT", one[0])
	}
	header = append(header, one[0])
	remaining, shift := 0, 0
	for i := 0; ; i++ {
		if i == 4 {
			return nil, errors.New("CONNECT length: more than 4 bytes")
		}
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return nil, err
		}
		header = append(header, one[0])
		remaining |= int(one[0]&0x7f) << shift
		shift += 7
		if one[0]&0x80 == 0 {
			break
		}
	}
	if remaining > maxConnectPacket {
		return nil, fmt.Errorf("CONNECT of %d bytes, more than %d", remaining, maxConnectPacket)
	}
	return header, nil
}

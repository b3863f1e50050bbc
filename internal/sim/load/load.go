// Package load is the whole-service load generator behind `firmware-sim
// load`: a fleet of GPU-host gateways, each publishing one 8-GPU telemetry
// message per period over its own MQTT connection at QoS 1, as an edge
// agent does. Every message is signed before the clock starts (Presign), so
// signing never limits the offered rate, and held S2-compressed (telemetry
// JSON shrinks ~8x), so ten minutes at 100,000 GPUs fit in memory next to
// the service; sending is a decompression into a pooled buffer and a
// write. Each gateway's messages are spread evenly over the period, and the
// publish -> PUBACK latency of every message is recorded.
//
// The MQTT packets are encoded and decoded with mochi-mqtt's packets
// package; the client speaks only what the load needs (CONNECT, PUBLISH at
// QoS 1, PUBACK, DISCONNECT), so one process can hold tens of thousands of
// connections.
package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/sync/errgroup"

	"twinchain/internal/sim/fleet"
	"twinchain/internal/wire"
)

// Config says how much load to offer.
type Config struct {
	Broker   string        // host:port of the MQTT broker
	Brokers  []string      // when set, gateway i connects to Brokers[i%len(Brokers)] instead (a cluster)
	Password string        // sent with the gateway id as username when set, else the gateway's signed connect password
	Gateways int           // GPU hosts, one connection each
	GPUs     int           // GPUs per host (8: ~2.9 KB messages)
	Rate     float64       // messages per second, all gateways together
	Duration time.Duration // how long to offer it
	// Window bounds a connection's unacknowledged messages; a gateway that
	// reaches it waits (backpressure) and falls behind its schedule.
	Window int
	Seed   int64 // keys and readings: the same seed gives the same fleet
	// MaxBytes bounds the pre-signed messages held in memory (compressed).
	MaxBytes int64
	// Distinct, when above 0, signs only that many messages per gateway
	// and sends them again (packet ids renumbered) after: for a
	// broker that checks nothing (the bare baseline), so pre-signing a
	// long run at its ceiling does not take minutes.
	Distinct int
	// Samples is how many sampling instants each telemetry message
	// carries (wire.Telemetry's Samples, as an agent whose publish
	// interval is Samples sampling intervals): the host's GPUs are sampled
	// Samples times per period, evenly. 1 (the default): the one-sample
	// form.
	Samples int
}

// Validate fills defaults and checks the values.
func (c *Config) Validate() error {
	if c.GPUs == 0 {
		c.GPUs = 8
	}
	if c.Window == 0 {
		c.Window = 64
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 6 << 30
	}
	if c.Samples == 0 {
		c.Samples = 1
	}
	switch {
	case c.Gateways < 1 || c.Gateways > 99*9999:
		return fmt.Errorf("load: gateways = %d, want 1..%d", c.Gateways, 99*9999)
	case c.Rate <= 0:
		return fmt.Errorf("load: rate = %g msg/s, want > 0", c.Rate)
	case c.Duration <= 0:
		return fmt.Errorf("load: duration = %s, want > 0", c.Duration)
	case c.Window < 1 || c.Window > 65535:
		return fmt.Errorf("load: window = %d, want 1..65535", c.Window)
	case c.Samples < 1 || c.Samples > wire.MaxSamples:
		return fmt.Errorf("load: samples per message = %d, want 1..%d", c.Samples, wire.MaxSamples)
	case c.Samples > 1 && c.Period() > wire.SampleWindow:
		return fmt.Errorf("load: a period of %s is longer than a message's sample window (%s)", c.Period(), wire.SampleWindow)
	}
	return nil
}

// Period is the time between two messages of one gateway.
func (c Config) Period() time.Duration {
	return time.Duration(float64(c.Gateways) / c.Rate * float64(time.Second))
}

// PerGateway is how many messages each gateway sends in Duration.
func (c Config) PerGateway() int {
	return int(c.Duration/c.Period()) + 1
}

// Fleet builds the simulated fleet of exactly cfg.Gateways GPU hosts (no
// site gateways), spread over sites of at most 1,000 hosts.
func Fleet(cfg Config) (*fleet.Fleet, error) {
	sites := (cfg.Gateways + 999) / 1000
	per := (cfg.Gateways + sites - 1) / sites
	f, err := fleet.New(fleet.Config{Sites: sites, ServersPerSite: per, GPUsPerServer: cfg.GPUs, Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	f.Gateways = f.Gateways[:cfg.Gateways]
	return f, nil
}

// gateway is one connection's prepared messages and its progress.
type gateway struct {
	id     string
	src    *fleet.Gateway // its key signs the connect password
	msgs   [][]byte       // S2-compressed PUBLISH packets; message k is sent with packet id k%65535+1
	sentAt []atomic.Int64
	acked  atomic.Int64 // PUBACKs received (they come in order)
	conn   net.Conn
	watch  chan<- Published // Watch's channel, for the gateways it watches
	gpu    string           // the GPU a watcher looks for
}

// Load is a prepared load: every message signed and encoded.
type Load struct {
	cfg  Config
	gws  []*gateway
	bufs sync.Pool // *[]byte a message is decompressed into to be sent
	// Bytes is the messages' size on the wire; Held, the compressed bytes
	// that hold them.
	Bytes, Held int64
	// SignRate is how many messages per second the pre-signing made (all
	// cores), the ceiling of a generator that signs as it sends.
	SignRate float64

	start time.Time // the reading time of every gateway's first message (reading)

	Sent, Acked, Behind atomic.Int64 // Behind: messages past their time not yet sent
	LastAck             atomic.Int64 // Unix nanoseconds of the newest PUBACK
	Lat                 Histogram    // publish -> PUBACK
	errs                atomic.Int64
}

// GPUs picks at most n GPUs spread over the load's gateways, one of each
// gateway it picks (the assets an APIProbe asks for).
func (l *Load) GPUs(n int) []string {
	var ids []string
	l.spread(n, func(gw *gateway, gpu string) { ids = append(ids, gpu) })
	return ids
}

// spread calls pick with at most n gateways spread over the load, and a GPU
// of each.
func (l *Load) spread(n int, pick func(gw *gateway, gpu string)) {
	step := max(1, (len(l.gws)+n-1)/n)
	for i := 0; i < len(l.gws); i += step {
		if a := l.gws[i].src.Assets(); len(a) > 1 {
			pick(l.gws[i], a[1+i%(len(a)-1)])
		}
	}
}

// reading is the reading time of a gateway's message k (its newest sample).
func (l *Load) reading(k int) time.Time {
	return l.start.Add(time.Duration(k) * l.cfg.Period())
}

// Published is a message a watched gateway sent: a GPU it reports, the
// reading time of its newest sample, and when it went on the wire.
type Published struct {
	GPU     string
	Reading time.Time
	Sent    time.Time
}

// Watch has at most n gateways spread over the load report what they send
// on the returned channel, which holds one: while it is full, sends go
// unreported (an APIProbe's Published: publish -> twin visible in the
// API). Call it before Run.
func (l *Load) Watch(n int) <-chan Published {
	ch := make(chan Published, 1)
	l.spread(n, func(gw *gateway, gpu string) { gw.watch, gw.gpu = ch, gpu })
	return ch
}

// Presign signs and encodes every message of the run on all cores. Reading
// times start now and step by the period, so none is ahead of the clock
// when it is sent.
func Presign(cfg Config) (*Load, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f, err := Fleet(cfg)
	if err != nil {
		return nil, err
	}
	n := cfg.PerGateway()
	period := cfg.Period()
	l := &Load{cfg: cfg, gws: make([]*gateway, len(f.Gateways)), start: time.Now().UTC()}
	base := uint64(time.Now().UnixMilli()) // never reuse a sequence number against the same store
	began := time.Now()
	var next, onWire, held atomic.Int64
	g := new(errgroup.Group)
	for range runtime.GOMAXPROCS(0) {
		g.Go(func() error {
			var buf bytes.Buffer
			var packed []byte // s2.Encode's output: a block as large as its input, so copied out
			for i := int(next.Add(1) - 1); i < len(f.Gateways); i = int(next.Add(1) - 1) {
				if h := held.Load(); h > cfg.MaxBytes {
					return fmt.Errorf("load: the pre-signed messages of %d of %d gateways take %d MiB compressed, over the %d MiB limit: shorten the run or raise the limit (firmware-sim load -max-mib)", i, len(f.Gateways), h>>20, cfg.MaxBytes>>20)
				}
				src := f.Gateways[i]
				src.SetSeq(base)
				gw := &gateway{id: src.ID, src: src, msgs: make([][]byte, n), sentAt: make([]atomic.Int64, n)}
				for k := range n {
					if d := cfg.Distinct; d > 0 && k >= d {
						gw.msgs[k] = gw.msgs[k%d]
						size, _ := s2.DecodedLen(gw.msgs[k]) // our own block: no error
						onWire.Add(int64(size))
						continue
					}
					t := l.reading(k)
					data, topic, _, err := src.Seal(wire.KindTelemetry, t, sample(src, t, period, cfg.Samples))
					if err != nil {
						return err
					}
					buf.Reset()
					pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic, PacketID: packetID(k), Payload: data, ProtocolVersion: 4}
					if err := pk.PublishEncode(&buf); err != nil {
						return fmt.Errorf("encode %s: %w", src.ID, err)
					}
					packed = s2.Encode(packed[:cap(packed)], buf.Bytes())
					gw.msgs[k] = bytes.Clone(packed)
					onWire.Add(int64(buf.Len()))
					held.Add(int64(cap(gw.msgs[k])))
				}
				l.gws[i] = gw
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	l.Bytes, l.Held = onWire.Load(), held.Load()
	l.SignRate = float64(n*len(f.Gateways)) / time.Since(began).Seconds()
	return l, nil
}

// sample is a gateway's telemetry message at t: the one-sample form, or n
// samples period/n apart, the newest at t.
func sample(src *fleet.Gateway, t time.Time, period time.Duration, n int) *wire.Telemetry {
	if n <= 1 {
		return src.Sample(t, period)
	}
	step := period / time.Duration(n)
	tel := &wire.Telemetry{Host: src.Host.Info.Asset, Samples: make([]wire.TelemetrySample, n)}
	for j := range n {
		at := t.Add(-time.Duration(n-1-j) * step)
		tel.Samples[j] = wire.TelemetrySample{TS: at, GPUs: src.Sample(at, step).GPUs}
	}
	return tel
}

func packetID(k int) uint16 { return uint16(k%65535) + 1 }

// topicOf is a load gateway's telemetry topic.
func topicOf(gw string) string { return wire.Topic(gw, wire.KindTelemetry) }

// setPacketID sets the packet id of a QoS 1 PUBLISH packet (MQTT 3.1.1)
// of a topic of topicLen bytes.
func setPacketID(pk []byte, topicLen int, id uint16) {
	i := 1
	for pk[i]&0x80 != 0 { // the remaining length's bytes
		i++
	}
	i += 1 + 2 + topicLen
	binary.BigEndian.PutUint16(pk[i:], id)
}

// message is gateway gw's message k as it goes on the wire, decompressed
// into a pooled buffer; done gives the buffer back.
func (l *Load) message(gw *gateway, k int) (msg []byte, done func(), err error) {
	bp, _ := l.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	msg, err = s2.Decode((*bp)[:cap(*bp)], gw.msgs[k])
	if err != nil {
		l.bufs.Put(bp)
		return nil, nil, fmt.Errorf("%s message %d: %w", gw.id, k, err)
	}
	setPacketID(msg, len(topicOf(gw.id)), packetID(k))
	*bp = msg
	return msg, func() { l.bufs.Put(bp) }, nil
}

// Fleet's registry entries for the prepared gateways come from Fleet(cfg):
// the same seed gives the same keys.

// Connect opens every gateway's connection (up to 64 at a time).
func (l *Load) Connect(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i, gw := range l.gws {
		addr := l.cfg.Broker
		if n := len(l.cfg.Brokers); n > 0 {
			addr = l.cfg.Brokers[i%n]
		}
		g.Go(func() error { return l.connect(ctx, gw, addr) })
	}
	return g.Wait()
}

func (l *Load) connect(ctx context.Context, gw *gateway, addr string) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect %s: %w", gw.id, err)
	}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60, ClientIdentifier: gw.id,
		UsernameFlag: true, Username: []byte(gw.id), PasswordFlag: true,
	}}
	_, password := gw.src.Credentials(l.cfg.Password, time.Now())
	pk.Connect.Password = []byte(password)
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		conn.Close()
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(buf.Bytes()); err != nil {
		conn.Close()
		return fmt.Errorf("connect %s: %w", gw.id, err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		conn.Close()
		return fmt.Errorf("connect %s: connack: %w", gw.id, err)
	}
	if ack[0]>>4 != packets.Connack || ack[3] != 0 {
		conn.Close()
		return fmt.Errorf("connect %s: refused (connack % x)", gw.id, ack)
	}
	_ = conn.SetDeadline(time.Time{})
	gw.conn = conn
	return nil
}

// Run offers the load from t0 (every gateway connected) until its messages
// are sent and acknowledged, ctx ends, or grace has passed after the last
// message was due. It returns the first connection error, if any.
func (l *Load) Run(ctx context.Context, t0 time.Time, grace time.Duration) error {
	ctx, cancel := context.WithDeadline(ctx, t0.Add(l.cfg.Duration+grace))
	defer cancel()
	var first error
	var once sync.Once
	fail := func(err error) {
		l.errs.Add(1)
		once.Do(func() { first = err })
	}
	period := l.cfg.Period()
	var wg sync.WaitGroup
	for i, gw := range l.gws {
		// Gateway i's message k is due at t0 + (k + i/N) periods.
		phase := time.Duration(float64(period) * float64(i) / float64(len(l.gws)))
		window := make(chan struct{}, l.cfg.Window)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := l.readAcks(gw, window); err != nil && ctx.Err() == nil {
				fail(err)
			}
		}()
		go func() {
			defer wg.Done()
			defer gw.conn.Close() // ends readAcks
			if err := l.send(ctx, gw, t0.Add(phase), period, window); err != nil && ctx.Err() == nil {
				fail(err)
			}
			// Wait for the outstanding acknowledgements (the window fills
			// up again), or the deadline.
			for range cap(window) {
				select {
				case window <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
			_, _ = gw.conn.Write([]byte{packets.Disconnect << 4, 0})
		}()
	}
	wg.Wait()
	return first
}

func (l *Load) send(ctx context.Context, gw *gateway, first time.Time, period time.Duration, window chan struct{}) error {
	timer := time.NewTimer(time.Until(first))
	defer timer.Stop()
	for k := range gw.msgs {
		due := first.Add(time.Duration(k) * period)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case window <- struct{}{}:
		default:
			l.Behind.Add(1) // the window is full: the service holds us back
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			l.Behind.Add(-1)
		}
		msg, done, err := l.message(gw, k)
		if err != nil {
			return err
		}
		sent := time.Now()
		gw.sentAt[k].Store(sent.UnixNano())
		_, err = gw.conn.Write(msg)
		done()
		if err != nil {
			return fmt.Errorf("publish %s: %w", gw.id, err)
		}
		l.Sent.Add(1)
		if gw.watch != nil {
			select {
			case gw.watch <- Published{GPU: gw.gpu, Reading: l.reading(k), Sent: sent}:
			default:
			}
		}
	}
	return nil
}

// readAcks reads the connection's PUBACKs, which come in publish order, and
// records each message's latency.
func (l *Load) readAcks(gw *gateway, window chan struct{}) error {
	r := bufio.NewReaderSize(gw.conn, 512)
	var body [64]byte
	for {
		hb, err := r.ReadByte()
		if err != nil {
			return ignoreClosed(err)
		}
		n, _, err := packets.DecodeLength(r)
		if err != nil {
			return ignoreClosed(err)
		}
		if n > len(body) {
			if _, err := r.Discard(n); err != nil {
				return ignoreClosed(err)
			}
			continue
		}
		if _, err := io.ReadFull(r, body[:n]); err != nil {
			return ignoreClosed(err)
		}
		if hb>>4 != packets.Puback || n < 2 {
			continue
		}
		k := gw.acked.Load()
		if k >= int64(len(gw.msgs)) {
			return fmt.Errorf("%s: unexpected puback", gw.id)
		}
		if id := binary.BigEndian.Uint16(body[:2]); id != packetID(int(k)) {
			return fmt.Errorf("%s: puback for packet %d, want %d", gw.id, id, packetID(int(k)))
		}
		if n >= 3 && body[2] >= 0x80 {
			return fmt.Errorf("%s: publish refused (reason %#x)", gw.id, body[2])
		}
		now := time.Now().UnixNano()
		l.Lat.Record(time.Duration(now - gw.sentAt[k].Load()))
		l.LastAck.Store(now)
		gw.acked.Add(1)
		l.Acked.Add(1)
		<-window
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// Errors is how many connections failed.
func (l *Load) Errors() int64 { return l.errs.Load() }

// AckedBy is how many messages each gateway has had acknowledged: its first
// AckedBy()[id] messages, since PUBACKs come in order.
func (l *Load) AckedBy() map[string]int64 {
	m := make(map[string]int64, len(l.gws))
	for _, gw := range l.gws {
		m[gw.id] = gw.acked.Load()
	}
	return m
}

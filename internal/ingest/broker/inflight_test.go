package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"twinchain/internal/ingest"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// slowStore delays the ingest's answer to every message by delay: in the
// ingest's writer goroutine for SubmitAsync (each commit's answers, and so
// the next commit, wait), in the connection's for Submit. It stands in for
// a disk that commits more slowly than the gateways publish, which a test
// cannot make of the real one; the ingest and its store behind it are real.
type slowStore struct {
	Submitter
	delay time.Duration
}

func (s slowStore) Submit(src ingest.Source, topic string, payload []byte) (ingest.Outcome, error) {
	out, err := s.Submitter.Submit(src, topic, payload)
	time.Sleep(s.delay)
	return out, err
}

func (s slowStore) SubmitAsync(src ingest.Source, topic string, payload []byte, done func(ingest.Outcome, error)) {
	s.Submitter.SubmitAsync(src, topic, payload, func(out ingest.Outcome, err error) {
		time.Sleep(s.delay)
		done(out, err)
	})
}

// bigTelemetry is a 10-sample, 8-GPU telemetry body of host (about 20 KB
// sealed), its samples a second apart up to at.
func bigTelemetry(host string, at time.Time) wire.Telemetry {
	tel := wire.Telemetry{Host: host}
	for i := range 10 {
		s := wire.TelemetrySample{TS: at.Add(time.Duration(i-9) * time.Second)}
		for g := range 8 {
			s.GPUs = append(s.GPUs, wire.GPUSample{Asset: fmt.Sprintf("%s.gpu%d", host, g), Index: g, UUID: fmt.Sprintf("GPU-%s-%d", host, g),
				TempC: 55 + float64(i), PowerW: 300, PowerLimitW: 700, UtilPct: 90, MemUtilPct: 40, SMClockMHz: 1980, MemClockMHz: 2619})
		}
		tel.Samples = append(tel.Samples, s)
	}
	return tel
}

// TestInflightBytesBounded publishes 20 KB messages from real MQTT clients,
// without waiting for their PUBACKs, far faster than the store commits.
// The bytes the broker holds between a message's read and the ingest's
// answer stay within max_inflight_bytes per connection and
// max_inflight_bytes_total in all (the broker's own counters, the most at
// once), messages did wait for room (the bound was reached), and every
// acknowledged message is stored, each once and in order.
func TestInflightBytesBounded(t *testing.T) {
	for _, ack := range []string{AckPipelined, AckSync} {
		t.Run(ack, func(t *testing.T) { testInflightBytesBounded(t, ack) })
	}
}

func testInflightBytesBounded(t *testing.T, ack string) {
	const (
		gateways  = 3
		perGW     = 20
		connLimit = 64 << 10
	)
	// In sync mode a connection has one message in flight: the bound in
	// all is reached with room for two of the three.
	limit := int64(96 << 10)
	if ack == AckSync {
		limit = 48 << 10
	}
	gws := make([]string, gateways)
	for i := range gws {
		gws[i] = fmt.Sprintf("gw-big-%d", i)
	}
	bcfg := Config{Ack: ack, MaxPacketSize: 48 << 10, MaxInflightBytes: connLimit, MaxInflightBytesTotal: limit}
	s := startStackWrapped(t, ingest.Config{CheckpointInterval: time.Nanosecond}, true, bcfg,
		func(in Submitter) Submitter { return slowStore{Submitter: in, delay: 15 * time.Millisecond} }, gws...)

	start := time.Now().Add(-time.Hour)
	var size int
	msgs := make([][][]byte, gateways)
	for i, gw := range gws {
		for seq := uint64(1); seq <= perGW; seq++ {
			b, err := wire.Seal(key(gw), gw, seq, start.Add(time.Duration(seq)*10*time.Second), wire.KindTelemetry,
				bigTelemetry("srv-"+gw, start.Add(time.Duration(seq)*10*time.Second)))
			if err != nil {
				t.Fatal(err)
			}
			msgs[i] = append(msgs[i], b)
			size = len(b)
		}
	}
	if size < 15<<10 || size > 40<<10 {
		t.Fatalf("a message is %d bytes, want 15-40 KB for this test", size)
	}

	var toks []paho.Token
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, gw := range gws {
		c := s.connect(t, gw, nil)
		wg.Add(1)
		go func() { // every message at once, PUBACKs not awaited
			defer wg.Done()
			for _, m := range msgs[i] {
				tok := c.Publish(wire.Topic(gw, wire.KindTelemetry), 1, false, m)
				mu.Lock()
				toks = append(toks, tok)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, tok := range toks {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			t.Fatalf("publish not acknowledged: %v", tok.Error())
		}
	}

	st := s.b.Stats().Inflight
	t.Logf("%d messages of %d bytes: %+v", len(toks), size, st)
	if st.PeakBytes > limit || st.PeakBytes < int64(size) {
		t.Errorf("most bytes in flight at once = %d, want %d (one message) to %d (max_inflight_bytes_total)", st.PeakBytes, size, limit)
	}
	if ack == AckPipelined && (st.ConnPeakBytes > connLimit || st.ConnPeakBytes < int64(size)) {
		t.Errorf("most bytes of one connection in flight = %d, want %d to %d (max_inflight_bytes)", st.ConnPeakBytes, size, connLimit)
	}
	if st.Waited == 0 {
		t.Errorf("no message waited for room: the bound was never reached (%+v)", st)
	}
	if st.Bytes != 0 || st.WaitingBytes != 0 {
		t.Errorf("after every PUBACK: %d bytes in flight, %d waiting; want 0 and 0", st.Bytes, st.WaitingBytes)
	}
	inStats := s.in.Stats()
	for _, gw := range gws {
		g := gatewayStats(inStats, gw)
		if g.Accepted != perGW || g.LastSeq != perGW || g.Gaps != 0 || len(g.Rejected) != 0 {
			t.Errorf("%s: accepted %d, last seq %d, gaps %d, rejected %v; want %d, %d, 0, none", gw, g.Accepted, g.LastSeq, g.Gaps, g.Rejected, perGW, perGW)
		}
		gpu, err := s.store.Asset("srv-" + gw + ".gpu7")
		if err != nil || gpu.Health.Samples != perGW*10 {
			t.Errorf("%s.gpu7: %d samples stored (%v), want %d", "srv-"+gw, gpu.Health.Samples, err, perGW*10)
		}
	}
}

// heldStore holds every message before the ingest until open is closed,
// and counts the messages it was handed.
type heldStore struct {
	Submitter
	open    chan struct{}
	entered *atomic.Int64
}

func (s heldStore) Submit(src ingest.Source, topic string, payload []byte) (ingest.Outcome, error) {
	s.entered.Add(1)
	<-s.open
	return s.Submitter.Submit(src, topic, payload)
}

func (s heldStore) SubmitAsync(src ingest.Source, topic string, payload []byte, done func(ingest.Outcome, error)) {
	s.entered.Add(1)
	<-s.open
	s.Submitter.SubmitAsync(src, topic, payload, done)
}

// TestInflightWaitsUnread: with room in flight for one message in all
// and the ingest held on gateway A's first message, gateway B's PUBLISH
// is admitted before it is read: it waits with its bytes unread in the
// socket (WaitingBytes counts them; the broker has read its fixed header
// only), and once the ingest goes on every message of both is stored,
// each once, in order. Pipelined, with a keepalive of 1 s (mochi's
// deadline on each packet's read and on the writes) held for 2.5 s, both
// connections outlive their waits. (Sync mode holds A's read goroutine in
// the ingest itself, under that deadline: its PUBACK would be written
// past it, as before the admission moved.)
func TestInflightWaitsUnread(t *testing.T) {
	for _, ack := range []string{AckPipelined, AckSync} {
		t.Run(ack, func(t *testing.T) { testInflightWaitsUnread(t, ack, 0) })
	}
	t.Run(AckPipelined+"/keepalive", func(t *testing.T) { testInflightWaitsUnread(t, AckPipelined, time.Second) })
}

func testInflightWaitsUnread(t *testing.T, ack string, keepalive time.Duration) {
	const perGW = 3
	gws := []string{"gw-held-a", "gw-held-b"}
	// max_inflight_bytes_total is at least max_packet_size: 32 KB is room
	// for one ~20 KB message, not two.
	bcfg := Config{Ack: ack, MaxPacketSize: 32 << 10, MaxInflightBytes: 32 << 10, MaxInflightBytesTotal: 32 << 10}
	held := heldStore{open: make(chan struct{}), entered: &atomic.Int64{}}
	s := startStackWrapped(t, ingest.Config{CheckpointInterval: time.Nanosecond}, true, bcfg,
		func(in Submitter) Submitter { held.Submitter = in; return held }, gws...)
	opened := false
	defer func() {
		if !opened {
			close(held.open) // the broker's shutdown waits for the ingest
		}
	}()

	start := time.Now().Add(-time.Hour)
	msgs := make([][][]byte, len(gws))
	for i, gw := range gws {
		for seq := uint64(1); seq <= perGW; seq++ {
			at := start.Add(time.Duration(seq) * 10 * time.Second)
			b, err := wire.Seal(key(gw), gw, seq, at, wire.KindTelemetry, bigTelemetry("srv-"+gw, at))
			if err != nil {
				t.Fatal(err)
			}
			msgs[i] = append(msgs[i], b)
		}
	}
	topic := func(i int) string { return wire.Topic(gws[i], wire.KindTelemetry) }
	size := int64(2 + len(topic(1)) + 2 + len(msgs[1][0])) // B's first PUBLISH: its remaining length
	if size < 17<<10 || size > 30<<10 {
		t.Fatalf("a message is %d bytes, want 17-30 KB for this test", size)
	}

	connect := func(gw string) paho.Client {
		opts := s.gatewayOptions(gw)
		if keepalive > 0 {
			opts.SetKeepAlive(keepalive)
		}
		return connectWith(t, opts)
	}
	a, b := connect(gws[0]), connect(gws[1])
	var toks []paho.Token
	toks = append(toks, a.Publish(topic(0), 1, false, msgs[0][0]))
	testsvc.Eventually(t, 10*time.Second, "A's first message at the held ingest", func() bool { return held.entered.Load() == 1 })
	read := atomic.LoadInt64(&s.b.srv.Info.BytesReceived)
	toks = append(toks, b.Publish(topic(1), 1, false, msgs[1][0]))
	testsvc.Eventually(t, 10*time.Second, "B's message waiting for room", func() bool { return s.b.Stats().Inflight.WaitingBytes == size })
	time.Sleep(200 * time.Millisecond) // a read of B's message would come now
	st := s.b.Stats().Inflight
	if more := atomic.LoadInt64(&s.b.srv.Info.BytesReceived) - read; more > 5 || st.WaitingBytes != size || held.entered.Load() != 1 {
		t.Fatalf("while A's message is held: the broker read %d more bytes (want B's fixed header only, at most 5), %d waiting (want %d), %d messages at the ingest (want 1); %+v",
			more, st.WaitingBytes, size, held.entered.Load(), st)
	}
	for seq := 1; seq < perGW; seq++ {
		toks = append(toks, a.Publish(topic(0), 1, false, msgs[0][seq]), b.Publish(topic(1), 1, false, msgs[1][seq]))
	}
	time.Sleep(keepalive * 5 / 2)
	close(held.open)
	opened = true
	for _, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish not acknowledged: %v", tok.Error())
		}
	}
	if st := s.b.Stats().Inflight; st.Bytes != 0 || st.WaitingBytes != 0 || st.PeakBytes > bcfg.MaxInflightBytesTotal {
		t.Errorf("after every PUBACK: %+v; want 0 bytes in flight and waiting, the most at once within %d", st, bcfg.MaxInflightBytesTotal)
	}
	inStats := s.in.Stats()
	for _, gw := range gws {
		g := gatewayStats(inStats, gw)
		if g.Accepted != perGW || g.LastSeq != perGW || g.Gaps != 0 || len(g.Rejected) != 0 {
			t.Errorf("%s: accepted %d, last seq %d, gaps %d, rejected %v; want %d, %d, 0, none", gw, g.Accepted, g.LastSeq, g.Gaps, g.Rejected, perGW, perGW)
		}
	}
}

// TestInflightReleased: the room a PUBLISH was admitted with comes back on
// the paths where the ingest never answers it: its connection closed while
// it waits for room (the wait ends), and mochi dropping it without the
// ingest hook (a gateway publishing outside its subtree).
func TestInflightReleased(t *testing.T) {
	for _, ack := range []string{AckPipelined, AckSync} {
		t.Run(ack, func(t *testing.T) { testInflightReleased(t, ack) })
	}
}

func testInflightReleased(t *testing.T, ack string) {
	gws := []string{"gw-rel-a", "gw-rel-b", "gw-rel-c"}
	bcfg := Config{Ack: ack, MaxPacketSize: 32 << 10, MaxInflightBytes: 32 << 10, MaxInflightBytesTotal: 32 << 10}
	held := heldStore{open: make(chan struct{}), entered: &atomic.Int64{}}
	s := startStackWrapped(t, ingest.Config{CheckpointInterval: time.Nanosecond}, true, bcfg,
		func(in Submitter) Submitter { held.Submitter = in; return held }, gws...)
	var once sync.Once
	open := func() { once.Do(func() { close(held.open) }) }
	defer open()
	at := time.Now().Add(-time.Hour)
	msg := func(gw string, seq uint64) []byte {
		b, err := wire.Seal(key(gw), gw, seq, at.Add(time.Duration(seq)*time.Second), wire.KindTelemetry, bigTelemetry("srv-"+gw, at))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	inflight := func() InflightStats { return s.b.Stats().Inflight }

	a, b, c := s.connect(t, gws[0], nil), s.connect(t, gws[1], nil), s.connect(t, gws[2], nil)
	tokC := c.Publish(wire.Topic(gws[2], wire.KindTelemetry), 1, false, msg(gws[2], 1))
	testsvc.Eventually(t, 10*time.Second, "C's message at the held ingest", func() bool { return held.entered.Load() == 1 })
	held1 := inflight().Bytes
	b.Publish(wire.Topic(gws[1], wire.KindTelemetry), 1, false, msg(gws[1], 1))
	testsvc.Eventually(t, 10*time.Second, "B's message waiting for room", func() bool { return inflight().WaitingBytes > 0 })
	if _, err := s.reg.Delete(gws[1]); err != nil { // the broker closes B's connection
		t.Fatal(err)
	}
	testsvc.Eventually(t, 10*time.Second, "B's wait to end with its connection", func() bool {
		st := inflight()
		return st.WaitingBytes == 0 && st.Bytes == held1
	})
	open()
	if !tokC.WaitTimeout(30*time.Second) || tokC.Error() != nil {
		t.Fatalf("C's message not acknowledged: %v", tokC.Error())
	}
	testsvc.Eventually(t, 10*time.Second, "no bytes in flight after C's PUBACK", func() bool { return inflight().Bytes == 0 })

	received := atomic.LoadInt64(&s.b.srv.Info.MessagesReceived)
	a.Publish(wire.Topic(gws[2], wire.KindTelemetry), 0, false, msg(gws[0], 1)) // not A's subtree: mochi drops it
	testsvc.Eventually(t, 10*time.Second, "A's message outside its subtree read and its room given back", func() bool {
		return atomic.LoadInt64(&s.b.srv.Info.MessagesReceived) == received+1 && inflight().Bytes == 0
	})
	publish(t, a, wire.Topic(gws[0], wire.KindTelemetry), msg(gws[0], 1))
	if st := inflight(); st.Bytes != 0 || st.WaitingBytes != 0 {
		t.Errorf("at the end: %+v; want 0 bytes in flight and waiting", st)
	}
}

// TestInflightStalledPublish: a gateway that sends the fixed header of a
// PUBLISH and stops halfway through it holds room in flight that every
// gateway shares; it gets connect_timeout and a second per 8 KiB, then
// the broker closes it and the room comes back, well before mochi's
// keepalive deadline (90 s here). A gateway that sends in time is served
// meanwhile.
func TestInflightStalledPublish(t *testing.T) {
	gws := []string{"gw-stall", "gw-fine"}
	// room for one ~20 KB message in all, not two
	bcfg := Config{ConnectTimeout: time.Second, MaxPacketSize: 32 << 10, MaxInflightBytes: 32 << 10, MaxInflightBytesTotal: 32 << 10}
	s := startStackWith(t, ingest.Config{CheckpointInterval: time.Nanosecond}, true, bcfg, gws...)

	nc, err := net.Dial("tcp", strings.TrimPrefix(s.url, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	gw := gws[0]
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60, ClientIdentifier: gw,
		UsernameFlag: true, PasswordFlag: true, Username: []byte(gw), Password: []byte(wire.ConnectPassword(key(gw), gw, time.Now()))}}
	var buf bytes.Buffer
	if err := connect.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	connack := make([]byte, 4)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, connack); err != nil || connack[0] != 0x20 || connack[3] != 0 {
		t.Fatalf("CONNACK %x, %v; want an accepted connection", connack, err)
	}

	at := time.Now().Add(-time.Minute)
	body, err := wire.Seal(key(gw), gw, 1, at, wire.KindTelemetry, bigTelemetry("srv-"+gw, at))
	if err != nil {
		t.Fatal(err)
	}
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
		TopicName: wire.Topic(gw, wire.KindTelemetry), PacketID: 1, Payload: body}
	buf.Reset()
	if err := pub.PublishEncode(&buf); err != nil {
		t.Fatal(err)
	}
	half := buf.Bytes()[:buf.Len()/2]
	if _, err := nc.Write(half); err != nil {
		t.Fatal(err)
	}
	size := int64(buf.Len() - 4) // a ~20 KB packet: a 3-byte remaining length after the type byte
	stalled := time.Now()
	testsvc.Eventually(t, 5*time.Second, "the stalled PUBLISH admitted", func() bool { return s.b.Stats().Inflight.Bytes == size })

	// Another gateway's message waits for the room, then is stored once the
	// stalled connection is closed.
	fine := s.connect(t, gws[1], nil)
	at2 := time.Now().Add(-time.Minute)
	tok := fine.Publish(wire.Topic(gws[1], wire.KindTelemetry), 1, false, seal(t, gws[1], 1, wire.KindTelemetry, bigTelemetry("srv-"+gws[1], at2)))
	if tok.WaitTimeout(200 * time.Millisecond) {
		t.Fatalf("the other gateway's message was acknowledged while the stalled one held the room (%v)", tok.Error())
	}

	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := nc.Read(connack); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the stalled connection read %d bytes (%v) in %s, want it closed by the broker", n, err, time.Since(stalled))
	}
	// connect_timeout (1 s) and a second per 8 KiB: about 3.5 s.
	if took := time.Since(stalled); took > 10*time.Second {
		t.Errorf("the stalled connection was closed after %s, want within seconds", took)
	}
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the other gateway's message was not acknowledged: %v", tok.Error())
	}
	testsvc.Eventually(t, 5*time.Second, "no room held", func() bool { st := s.b.Stats().Inflight; return st.Bytes == 0 && st.WaitingBytes == 0 })
	if g := gatewayStats(s.in.Stats(), gws[1]); g.Accepted != 1 {
		t.Errorf("%s accepted %d, want 1", gws[1], g.Accepted)
	}
	if g := gatewayStats(s.in.Stats(), gw); g.Accepted != 0 {
		t.Errorf("%s accepted %d of its half a message, want 0", gw, g.Accepted)
	}
}

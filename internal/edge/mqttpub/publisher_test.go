package mqttpub

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/edge/agentkey"
	"twinchain/internal/edge/diskqueue"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

func testKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("mqttpub test"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// collector subscribes to every gateway topic and keeps what arrives.
type collector struct {
	mu         sync.Mutex
	envs       []wire.Envelope
	subscribed int // times the subscription was made (once per connection)
}

func collect(t testing.TB, url string) *collector {
	t.Helper()
	c := &collector{}
	o := paho.NewClientOptions().AddBroker(url).SetClientID("collector").SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(300 * time.Millisecond)
	o.SetOnConnectHandler(func(cl paho.Client) {
		cl.Subscribe(wire.GatewayFilter(), 1, func(_ paho.Client, m paho.Message) {
			env, err := wire.Decode(m.Payload())
			if err != nil {
				t.Errorf("subscriber got a bad envelope: %v", err)
				return
			}
			c.mu.Lock()
			c.envs = append(c.envs, env)
			c.mu.Unlock()
		}).Wait()
		c.mu.Lock()
		c.subscribed++
		c.mu.Unlock()
	})
	cl := paho.NewClient(o)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("collector connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(50) })
	return c
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.envs)
}

func newPublisher(t testing.TB, url string, q *diskqueue.Queue, replayRate int) *Publisher {
	t.Helper()
	seq, err := agentkey.OpenSequence(filepath.Join(t.TempDir(), "seq"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Broker: url, BackoffMin: 100 * time.Millisecond, BackoffMax: 300 * time.Millisecond, ReplayRate: replayRate, MaxInflight: 512}
	cfg.SetDefaults("gw-pub")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(cfg, "gw-pub", testKey(), seq, q, "test", time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// TestDropsReported fills a small queue while the broker is away: the oldest
// readings are dropped, and the status sent on reconnection says how many
// and which.
func TestDropsReported(t *testing.T) {
	broker := testsvc.StartMosquitto(t, "")
	sub := collect(t, broker.URL())
	q, err := diskqueue.Open(t.TempDir(), diskqueue.Options{MaxEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	p := newPublisher(t, broker.URL(), q, 1000)
	broker.Stop()
	for i := 0; i < 30; i++ {
		if _, err := p.Publish(wire.KindGPS, time.Now(), wire.GPSFix{Asset: "gw-pub", Lat: float64(i), Quality: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if n, r := q.Dropped(); n != 20 || r != [2]uint64{1, 20} {
		t.Fatalf("Dropped() = %d %v, want 20 [1 20]", n, r)
	}
	broker.Restart(t)
	testsvc.Eventually(t, 30*time.Second, "the subscriber back", func() bool { sub.mu.Lock(); defer sub.mu.Unlock(); return sub.subscribed == 2 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testsvc.Eventually(t, 30*time.Second, "the backlog and the status", func() bool { return sub.count() >= 10 && q.Len() == 0 })
	cancel()
	<-done
	sub.mu.Lock()
	defer sub.mu.Unlock()
	var gps []uint64
	var st *wire.Status
	for i := range sub.envs {
		e := &sub.envs[i]
		if err := e.Verify(testKey().Public().(ed25519.PublicKey)); err != nil {
			t.Errorf("seq %d: %v", e.Seq, err)
		}
		switch e.Kind {
		case wire.KindGPS:
			gps = append(gps, e.Seq)
		case wire.KindStatus:
			if s, err := wire.DecodeBody[wire.Status](e); err == nil && s.Reason == "connected" {
				st = &s
			}
		}
	}
	// The status queued on reconnection took the place of the oldest
	// reading, 21: the queue holds the 10 newest messages.
	if len(gps) != 9 || gps[0] != 22 || gps[8] != 30 {
		t.Errorf("gps seqs delivered = %v, want 22..30", gps)
	}
	if st == nil || st.Dropped != 20 || len(st.DroppedSeqs) != 2 || st.DroppedSeqs[0] != 1 || st.DroppedSeqs[1] != 20 {
		t.Errorf("connected status = %+v, want dropped 20, dropped_seqs [1 20]", st)
	}
}

// BenchmarkReplay measures how fast a backlog drains to Mosquitto after an
// outage: b.N sealed readings are queued while the broker is down, then the
// publisher connects, with no replay rate limit and with the default one.
func BenchmarkReplay(b *testing.B) {
	broker := testsvc.StartMosquitto(b, "")
	var def Config
	def.SetDefaults("gw-pub")
	for _, bc := range []struct {
		name string
		rate int
	}{{"unlimited", 1_000_000}, {"default", def.ReplayRate}} {
		b.Run(bc.name, func(b *testing.B) { benchReplay(b, broker.URL(), bc.rate) })
	}
}

func benchReplay(b *testing.B, url string, rate int) {
	q, err := diskqueue.Open(b.TempDir(), diskqueue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	p := newPublisher(b, url, q, rate)
	body := wire.GPSFix{Asset: "gw-pub", Lat: 52.52, Lon: 13.4, AltM: 34, Quality: 1, HDOP: 0.6, Sats: 12, FixTime: time.Now()}
	for i := 0; i < b.N; i++ {
		if _, err := p.Publish(wire.KindGPS, time.Now(), body); err != nil {
			b.Fatal(err)
		}
	}
	for len(p.live) > 0 { // queued while "offline": replayed from disk, not the live path
		<-p.live
	}
	b.ResetTimer()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for p.Stats.Acked.Load() < uint64(b.N)+1 { // the backlog and the "connected" status
		time.Sleep(time.Millisecond) // a tight poll, not testsvc.Eventually's backoff, so the measured time is the publisher's
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
}

// cutProxy forwards TCP to a broker until cut, when it drops every
// connection without an MQTT DISCONNECT, as a failing network would.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go io.Copy(u, c)
			go io.Copy(c, u)
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestLastWill: when the connection drops, the broker publishes the will,
// a signed "offline" status with sequence 0 sealed at connect time.
func TestLastWill(t *testing.T) {
	broker := testsvc.StartMosquitto(t, "")
	sub := collect(t, broker.URL())
	proxy := newCutProxy(t, broker.Addr)
	q, err := diskqueue.Open(t.TempDir(), diskqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	p := newPublisher(t, "tcp://"+proxy.ln.Addr().String(), q, 1000)
	p.cfg.BackoffMin, p.cfg.BackoffMax = 5*time.Second, 5*time.Second // stay away after the cut
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := time.Now()
	go func() { done <- p.Run(ctx) }()
	testsvc.Eventually(t, 30*time.Second, "the online status", func() bool { return sub.count() >= 1 })
	proxy.cut()
	var will *wire.Envelope
	testsvc.Eventually(t, 30*time.Second, "the last will", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		for i := range sub.envs {
			if sub.envs[i].Seq == 0 {
				will = &sub.envs[i]
				return true
			}
		}
		return false
	})
	cancel()
	<-done
	if err := will.Verify(testKey().Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("will signature: %v", err)
	}
	st, err := wire.DecodeBody[wire.Status](will)
	if err != nil || st.State != wire.StateOffline || will.Kind != wire.KindStatus || will.Time.Before(before) || will.Time.After(time.Now()) {
		t.Errorf("will = %s at %s, %+v, %v; want a status offline sealed at connect time", will.Kind, will.Time, st, err)
	}
}

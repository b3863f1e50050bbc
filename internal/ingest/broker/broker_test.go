package broker

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/registry/enrollment"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

func key(gw string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("broker test " + gw))
	return ed25519.NewKeyFromSeed(seed[:])
}

// stack is a store, an ingest and the embedded broker on a spare port, in
// this process: these tests reach into the broker and the ingest (stop the
// broker alone, read Stats and the store directly), which a twin-service
// process started with testsvc.StartTwinService would not let them do.
type stack struct {
	reg   *registry.Registry
	store *twinstore.Store
	in    *ingest.Ingest
	b     *Broker
	url   string
	// ca and tlsURL: the gateway CA and the TLS listener, when the test's
	// Config asked for one (TLS.Addr set; its value is replaced).
	ca     *enrollment.CA
	tlsURL string
	// stopBroker shuts the broker down and leaves the ingest running.
	stopBroker func() error
}

func startStack(t *testing.T, ack string, gateways ...string) *stack {
	t.Helper()
	// Observations are stored with every batch: the tests read the store.
	return startStackWith(t, ingest.Config{CheckpointInterval: time.Nanosecond}, true, Config{Ack: ack}, gateways...)
}

func startStackWith(t testing.TB, cfg ingest.Config, noSync bool, bcfg Config, gateways ...string) *stack {
	t.Helper()
	return startStackWrapped(t, cfg, noSync, bcfg, nil, gateways...)
}

// startStackWrapped is startStackWith with the broker's Submitter, the
// real ingest, wrapped by wrap (when not nil).
func startStackWrapped(t testing.TB, cfg ingest.Config, noSync bool, bcfg Config, wrap func(Submitter) Submitter, gateways ...string) *stack {
	t.Helper()
	store, err := twinstore.Open(filepath.Join(t.TempDir(), "twins.db"), twinstore.Options{NoSync: noSync})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New()
	for _, gw := range gateways {
		if err := reg.Put(registry.Gateway{ID: gw, PublicKey: key(gw).Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in, err := ingest.New(cfg, store, reg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := testsvc.Addr(testsvc.FreePort(t))
	bcfg.Addr = addr
	opts := Options{Ingest: in, Gateways: reg, Log: log}
	if wrap != nil {
		opts.Ingest = wrap(in)
	}
	var ca *enrollment.CA
	if bcfg.TLS.Addr != "" {
		bcfg.TLS.Addr = testsvc.Addr(testsvc.FreePort(t))
		dir := t.TempDir()
		if ca, err = enrollment.OpenCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), true, time.Now); err != nil {
			t.Fatal(err)
		}
		cert, err := ca.ServerCertificate([]string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool()}
	}
	b, err := New(bcfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	reg.Notify(b.GatewayChanged)
	ctx, cancel := context.WithCancel(context.Background())
	brokerCtx, brokerCancel := context.WithCancel(ctx)
	ingestDone, brokerDone := make(chan error, 1), make(chan error, 1)
	go func() { ingestDone <- in.Run(ctx) }()
	go func() { brokerDone <- b.Run(brokerCtx) }()
	var stopOnce sync.Once
	var brokerErr error
	stopBroker := func() error {
		stopOnce.Do(func() { brokerCancel(); brokerErr = <-brokerDone })
		return brokerErr
	}
	t.Cleanup(func() {
		cancel()
		if err := stopBroker(); err != nil {
			t.Errorf("broker Run: %v", err)
		}
		if err := <-ingestDone; err != nil {
			t.Errorf("ingest Run: %v", err)
		}
		store.Close()
	})
	if err := testsvc.WaitTCP(addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st := &stack{reg: reg, store: store, in: in, b: b, url: "tcp://" + addr, ca: ca, stopBroker: stopBroker}
	if ca != nil {
		if err := testsvc.WaitTCP(bcfg.TLS.Addr, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		st.tlsURL = "ssl://" + bcfg.TLS.Addr
	}
	return st
}

// connect opens a paho client as gateway gw, with its connect password.
func (s *stack) connect(t *testing.T, gw string, lost chan<- error) paho.Client {
	t.Helper()
	opts := s.gatewayOptions(gw)
	if lost != nil {
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	}
	return connectWith(t, opts)
}

// gatewayOptions are connect's client options for gateway gw.
func (s *stack) gatewayOptions(gw string) *paho.ClientOptions {
	return testsvc.GatewayOptions(s.url, gw, key(gw)).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
}

// connectWith connects a client with opts; the test's end disconnects it.
func connectWith(t *testing.T, opts *paho.ClientOptions) paho.Client {
	t.Helper()
	gw := opts.ClientID
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", gw, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// publish sends at QoS 1 and waits for the PUBACK.
func publish(t *testing.T, c paho.Client, topic string, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: not acknowledged: %v", topic, tok.Error())
	}
}

func seal(t *testing.T, gw string, seq uint64, kind wire.Kind, body any) []byte {
	t.Helper()
	b, err := wire.Seal(key(gw), gw, seq, time.Now().Add(-time.Minute).Add(time.Duration(seq)*time.Millisecond), kind, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hostTelemetry(host string) wire.Telemetry {
	return wire.Telemetry{Host: host, GPUs: []wire.GPUSample{{Asset: host + ".gpu0", TempC: 55, PowerW: 300}}}
}

func gatewayStats(st ingest.Stats, gw string) ingest.GatewayStats {
	for _, g := range st.Gateways {
		if g.Gateway == gw {
			return g
		}
	}
	return ingest.GatewayStats{}
}

// TestRejectionsOverTCP sends one bad message per reason through the real
// broker from one client, each followed by a valid message from another
// gateway, and checks the counter moved, the bad message was acknowledged
// (the client does not retry it) and the good traffic was applied.
func TestRejectionsOverTCP(t *testing.T) {
	for _, ack := range []string{AckSync, AckPipelined} {
		t.Run(ack, func(t *testing.T) { testRejections(t, ack) })
	}
}

func testRejections(t *testing.T, ack string) {
	const good, bad = "gw-good", "gw-bad"
	s := startStack(t, ack, good, bad)
	goodC := s.connect(t, good, nil)
	badC := s.connect(t, bad, nil)

	original := seal(t, bad, 1, wire.KindTelemetry, hostTelemetry("srv-bad"))
	publish(t, badC, wire.Topic(bad, wire.KindTelemetry), original)
	tampered := bytes.Replace(original, []byte(`"temp_c":55`), []byte(`"temp_c":95`), 1)
	resealed := seal(t, bad, 1, wire.KindTelemetry, wire.Telemetry{Host: "srv-bad", GPUs: []wire.GPUSample{{Asset: "srv-bad.gpu0", TempC: 20}}})
	huge := seal(t, bad, 2, wire.KindTelemetry, wire.Telemetry{Host: "srv-bad", GPUs: []wire.GPUSample{{Asset: strings.Repeat("x", wire.MaxEnvelopeSize)}}})
	goodSeq := uint64(0)
	for _, tc := range []struct {
		reason  ingest.Reason
		client  paho.Client
		gw      string
		payload []byte
	}{
		// An unknown gateway cannot connect to this broker (TestAuthentication).
		{ingest.ReasonBadSignature, badC, bad, tampered},
		{ingest.ReasonReplay, badC, bad, resealed},
		{ingest.ReasonDuplicate, badC, bad, original},
		{ingest.ReasonMalformed, badC, bad, []byte(`{"v":1,"gw":"gw-bad","seq":3,`)},
		{ingest.ReasonOversize, badC, bad, huge},
		{ingest.ReasonTopicMismatch, badC, bad, seal(t, bad, 4, wire.KindGPS, wire.GPSFix{Asset: bad, Quality: 1})},
	} {
		t.Run(string(tc.reason), func(t *testing.T) {
			before := s.in.Stats()
			publish(t, tc.client, wire.Topic(tc.gw, wire.KindTelemetry), tc.payload)
			goodSeq++
			publish(t, goodC, wire.Topic(good, wire.KindTelemetry), seal(t, good, goodSeq, wire.KindTelemetry, hostTelemetry("srv-good")))
			after := s.in.Stats()
			if got := after.Rejected[tc.reason] - before.Rejected[tc.reason]; got != 1 {
				t.Errorf("rejected[%s] moved by %d, want 1", tc.reason, got)
			}
			if got := gatewayStats(after, tc.gw).Rejected[tc.reason] - gatewayStats(before, tc.gw).Rejected[tc.reason]; got != 1 {
				t.Errorf("rejected[%s] of %s moved by %d, want 1", tc.reason, tc.gw, got)
			}
			if got := after.Accepted - before.Accepted; got != 1 {
				t.Errorf("accepted moved by %d, want 1 (the other gateway's message)", got)
			}
			gpu, err := s.store.Asset("srv-good.gpu0")
			if err != nil || gpu.Health.Samples != goodSeq {
				t.Errorf("srv-good.gpu0 samples = %d (%v), want %d", gpu.Health.Samples, err, goodSeq)
			}
		})
	}
	if gpu, _ := s.store.Asset("srv-bad.gpu0"); gpu.Health.Samples != 1 || gpu.Health.Latest.TempC != 55 {
		t.Errorf("srv-bad.gpu0 = %d samples, temp %v; want only the original message (1, 55)", gpu.Health.Samples, gpu.Health.Latest.TempC)
	}
}

// TestACL: a gateway may publish only under its own subtree; the broker
// drops the connection of one that tries another's.
func TestACL(t *testing.T) {
	const a, b = "gw-a", "gw-b"
	s := startStack(t, AckSync, a, b)
	lost := make(chan error, 1)
	ca := s.connect(t, a, lost)
	ca.Publish(wire.Topic(b, wire.KindTelemetry), 1, false, seal(t, b, 1, wire.KindTelemetry, hostTelemetry("srv-b")))
	select {
	case <-lost:
	case <-time.After(20 * time.Second):
		t.Fatal("publishing under another gateway's topic did not close the connection")
	}
	if st := s.in.Stats(); st.Accepted != 0 {
		t.Errorf("accepted = %d after a denied publish, want 0", st.Accepted)
	}
	gwA := session{gateway: "gw-a"}
	alerts := session{role: RoleAlertReader}
	sys := session{role: RoleSysMonitor}
	for _, tc := range []struct {
		s     session
		topic string
		write bool
		want  bool
	}{
		{gwA, wire.Topic("gw-a", wire.KindGPS), true, true},
		{gwA, wire.Topic("gw-b", wire.KindGPS), true, false},
		{gwA, wire.AlertTopic("s1", "theft"), true, false},
		{gwA, "other/topic", true, false},
		{gwA, "twinchain/v1/gw/gw-a", true, false},
		{gwA, "twinchain/v1/gw/gw-a/", true, false},
		{gwA, "twinchain/v1/gw/gw-a/#", false, false}, // a gateway reads nothing
		{gwA, "twinchain/v1/gw/+/#", false, false},
		{gwA, "twinchain/v1/gw/gw-ab/#", false, false},
		{gwA, "#", false, false},
		{gwA, "$SYS/#", false, false},
		{gwA, wire.AlertFilter(), false, false},
		{session{}, wire.Topic("gw-a", wire.KindGPS), true, false},
		{alerts, wire.AlertFilter(), false, true},
		{alerts, wire.AlertTopic("s1", "theft"), true, false},
		{alerts, "#", false, false},
		{alerts, wire.GatewayFilter(), false, false},
		{alerts, "$SYS/#", false, false},
		{sys, "$SYS/#", false, true},
		{sys, "#", false, false},
		{sys, wire.AlertFilter(), false, false},
		{sys, "$SYS/broker/x", true, false},
	} {
		if got := allowed(tc.s, tc.topic, tc.write); got != tc.want {
			t.Errorf("allowed(%+v, %q, write=%v) = %v, want %v", tc.s, tc.topic, tc.write, got, tc.want)
		}
	}
}

// TestStoreFailureNotAcknowledged: when the store cannot commit, the broker
// does not acknowledge and closes the connection so the client resends.
func TestStoreFailureNotAcknowledged(t *testing.T) {
	for _, ack := range []string{AckSync, AckPipelined} {
		t.Run(ack, func(t *testing.T) { testStoreFailure(t, ack) })
	}
}

func testStoreFailure(t *testing.T, ack string) {
	const gw = "gw-f"
	s := startStack(t, ack, gw)
	lost := make(chan error, 1)
	c := s.connect(t, gw, lost)
	publish(t, c, wire.Topic(gw, wire.KindTelemetry), seal(t, gw, 1, wire.KindTelemetry, hostTelemetry("srv-f")))
	s.store.Close() // every commit fails from now on
	tok := c.Publish(wire.Topic(gw, wire.KindTelemetry), 1, false, seal(t, gw, 2, wire.KindTelemetry, hostTelemetry("srv-f")))
	select {
	case <-lost:
	case <-time.After(20 * time.Second):
		t.Fatal("a failed commit did not close the connection")
	}
	if tok.WaitTimeout(time.Second) && tok.Error() == nil {
		t.Errorf("a message that was not stored was acknowledged")
	}
	if st := s.in.Stats(); st.CommitFailures == 0 || st.Accepted != 1 {
		t.Errorf("stats = %d commit failures, %d accepted; want at least 1 failure and 1 accepted", st.CommitFailures, st.Accepted)
	}
}

// TestLastWillOverTCP: the agent's signed last will is stored when its
// connection drops.
func TestLastWillOverTCP(t *testing.T) {
	const gw = "gw-w"
	s := startStack(t, AckPipelined, gw)
	will := seal(t, gw, 0, wire.KindStatus, wire.Status{State: wire.StateOffline, Reason: "connection lost"})
	proxy := newProxy(t, strings.TrimPrefix(s.url, "tcp://"))
	opts := testsvc.GatewayOptions("tcp://"+proxy.addr, gw, key(gw)).
		SetBinaryWill(wire.Topic(gw, wire.KindStatus), will, 1, false).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	publish(t, c, wire.Topic(gw, wire.KindStatus), seal(t, gw, 1, wire.KindStatus, wire.Status{State: wire.StateOnline}))
	proxy.cut() // the network drops: no DISCONNECT, so the broker sends the will
	testsvc.Eventually(t, 20*time.Second, "the gateway twin offline after the will", func() bool {
		a, err := s.store.Asset(gw)
		return err == nil && a.Health.State == wire.StateOffline
	})
	c.Disconnect(0)
}

// TestNoLastWillAtShutdown: when twin-service itself stops, the broker
// closes every connection, and mochi sends their last wills; they must not
// mark the gateways offline, since it is the service that went away.
func TestNoLastWillAtShutdown(t *testing.T) {
	const gw = "gw-w"
	s := startStack(t, AckPipelined, gw)
	will := seal(t, gw, 0, wire.KindStatus, wire.Status{State: wire.StateOffline, Reason: "connection lost"})
	opts := testsvc.GatewayOptions(s.url, gw, key(gw)).
		SetBinaryWill(wire.Topic(gw, wire.KindStatus), will, 1, false).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	publish(t, c, wire.Topic(gw, wire.KindStatus), seal(t, gw, 1, wire.KindStatus, wire.Status{State: wire.StateOnline}))
	if err := s.stopBroker(); err != nil {
		t.Fatalf("stop broker: %v", err)
	}
	// Nothing signals a will that does not come: give one the time it
	// would take (the ingest still runs), then check none was stored.
	time.Sleep(300 * time.Millisecond)
	if st := s.in.Stats(); st.Accepted != 1 {
		t.Errorf("accepted = %d after the broker stopped, want 1 (no last will)", st.Accepted)
	}
	if a, err := s.store.Asset(gw); err != nil || a.Health.State == wire.StateOffline {
		t.Errorf("gateway twin = %q (%v), want not offline", a.Health.State, err)
	}
}

// proxy forwards one TCP connection to the broker and can cut it, like a
// network failure.
type proxy struct {
	addr  string
	conns chan net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), conns: make(chan net.Conn, 4)}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.conns <- in
			p.conns <- out
			go io.Copy(out, in)
			go io.Copy(in, out)
		}
	}()
	return p
}

func (p *proxy) cut() {
	for {
		select {
		case c := <-p.conns:
			c.Close()
		default:
			return
		}
	}
}

func TestQuietHandlerDropsPacketDumps(t *testing.T) {
	var buf strings.Builder
	log := slog.New(quietHandler{slog.NewTextHandler(&buf, nil)}).With("component", "broker")
	log.Warn("error processing packet", "client", "c1", "pk", []byte("secret payload"), "error", "broken pipe")
	got := buf.String()
	if strings.Contains(got, "pk=") || !strings.Contains(got, "client=c1") || !strings.Contains(got, "component=broker") {
		t.Errorf("log line = %q, want the packet dropped and the rest kept", got)
	}
}

// TestAddressInUse: a taken port is a clear error from Run, not a hang.
func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := New(Config{Addr: ln.Addr().String()}, Options{Gateways: registry.New(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("Run on a taken port = %v, want a listen error", err)
	}
	if b.Listening() {
		t.Errorf("Listening() = true after a failed Run")
	}
}

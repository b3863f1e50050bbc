package broker

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

const alertSecret = "alert-reader-secret"

func secretSHA(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// startAuthStack is a stack with gateways gw-a and gw-b and an alert reader
// service client "soc".
func startAuthStack(t *testing.T, bcfg Config) *stack {
	t.Helper()
	bcfg.Clients = append(bcfg.Clients, ServiceClient{Name: "soc", SecretSHA256: secretSHA(alertSecret), Role: RoleAlertReader})
	return startStackWith(t, ingest.Config{CheckpointInterval: time.Nanosecond}, true, bcfg, "gw-a", "gw-b")
}

// tryConnect connects with opts and returns the connect error (nil:
// connected; the client is then disconnected at cleanup).
func tryConnect(t *testing.T, opts *paho.ClientOptions) (paho.Client, error) {
	t.Helper()
	// Protocol 3.1.1 only: paho would otherwise try 3.1 after a refusal.
	c := paho.NewClient(opts.SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

// expectRefused connects with opts and expects the broker to refuse it,
// counting it under reason once.
func expectRefused(t *testing.T, s *stack, opts *paho.ClientOptions, reason string) {
	t.Helper()
	before := s.b.Stats().Refused[reason]
	if _, err := tryConnect(t, opts); err == nil {
		t.Fatalf("connected; want refused (%s)", reason)
	}
	if got := s.b.Stats().Refused[reason] - before; got != 1 {
		t.Errorf("refused[%s] moved by %d, want 1", reason, got)
	}
}

// TestAuthentication: every CONNECT without a valid credential of its own
// is refused, each with its counter; the gateways' own connections work.
func TestAuthentication(t *testing.T) {
	s := startAuthStack(t, Config{})
	otherSeed := sha256.Sum256([]byte("not the registered key"))
	otherKey := ed25519.NewKeyFromSeed(otherSeed[:])
	strangerKey := key("gw-stranger")
	usedPW := wire.ConnectPassword(key("gw-a"), "gw-a", time.Now())
	if _, err := tryConnect(t, paho.NewClientOptions().AddBroker(s.url).SetClientID("gw-a").SetUsername("gw-a").SetPassword(usedPW)); err != nil {
		t.Fatalf("gw-a with its connect password: %v", err)
	}
	opts := func(clientID, user, pw string) *paho.ClientOptions {
		o := paho.NewClientOptions().AddBroker(s.url).SetClientID(clientID)
		if user != "" {
			o.SetUsername(user).SetPassword(pw)
		}
		return o
	}
	now := time.Now()
	for _, tc := range []struct {
		name   string
		opts   *paho.ClientOptions
		reason string
	}{
		{"anonymous", opts("anyone", "", ""), RefusedNoCredentials},
		{"gateway id without a password", opts("gw-a", "gw-a", ""), RefusedNoCredentials},
		{"plain password", opts("gw-a", "gw-a", "secret"), RefusedBadPassword},
		{"signed by another key", opts("gw-a", "gw-a", wire.ConnectPassword(otherKey, "gw-a", now)), RefusedBadPassword},
		{"another gateway's password", opts("gw-a", "gw-a", wire.ConnectPassword(key("gw-b"), "gw-b", now)), RefusedBadPassword},
		{"unregistered gateway", opts("gw-stranger", "gw-stranger", wire.ConnectPassword(strangerKey, "gw-stranger", now)), RefusedUnknownGateway},
		{"expired", opts("gw-a", "gw-a", wire.ConnectPassword(key("gw-a"), "gw-a", now.Add(-2*wire.ConnectWindow))), RefusedExpired},
		{"replayed password", opts("gw-a", "gw-a", usedPW), RefusedReused},
		{"another client id", opts("gw-b", "gw-a", wire.ConnectPassword(key("gw-a"), "gw-a", now)), RefusedClientID},
		{"service client, wrong secret", opts("svc:soc", "soc", "guess"), RefusedBadPassword},
		{"service client, other name", opts("svc:soc", "admin", alertSecret), RefusedBadPassword},
		{"unknown service client", opts("svc:admin", "admin", alertSecret), RefusedBadPassword},
	} {
		t.Run(tc.name, func(t *testing.T) { expectRefused(t, s, tc.opts, tc.reason) })
	}
	if _, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-b", key("gw-b"))); err != nil {
		t.Errorf("gw-b with its connect password: %v", err)
	}
	if _, err := tryConnect(t, opts("svc:soc", "soc", alertSecret)); err != nil {
		t.Errorf("the alert reader with its secret: %v", err)
	}
	if got := s.b.Stats().Connected; got != 3 {
		t.Errorf("connected = %d, want 3 (gw-a, gw-b, soc)", got)
	}
}

// TestClientIDTakeover: connecting with a gateway's client id and without
// that gateway's own credential is refused: the gateway stays connected and
// no last will is sent.
func TestClientIDTakeover(t *testing.T) {
	s := startAuthStack(t, Config{})
	lost := make(chan error, 1)
	will := seal(t, "gw-a", 0, wire.KindStatus, wire.Status{State: wire.StateOffline, Reason: "connection lost"})
	c, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-a", key("gw-a")).
		SetBinaryWill(wire.Topic("gw-a", wire.KindStatus), will, 1, false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, c, wire.Topic("gw-a", wire.KindStatus), seal(t, "gw-a", 1, wire.KindStatus, wire.Status{State: wire.StateOnline}))
	for _, o := range []*paho.ClientOptions{
		paho.NewClientOptions().AddBroker(s.url).SetClientID("gw-a"),
		paho.NewClientOptions().AddBroker(s.url).SetClientID("gw-a").SetUsername("gw-a"),
		paho.NewClientOptions().AddBroker(s.url).SetClientID("gw-a").SetUsername("gw-b").SetPassword(wire.ConnectPassword(key("gw-b"), "gw-b", time.Now())),
	} {
		if _, err := tryConnect(t, o); err == nil {
			t.Errorf("took over gw-a's client id as %q", o.Username)
		}
	}
	// gw-a is still connected: its next message is acknowledged on the same
	// connection, and no will was stored.
	publish(t, c, wire.Topic("gw-a", wire.KindStatus), seal(t, "gw-a", 2, wire.KindStatus, wire.Status{State: wire.StateOnline}))
	select {
	case err := <-lost:
		t.Fatalf("gw-a lost its connection: %v", err)
	default:
	}
	if a, err := s.store.Asset("gw-a"); err != nil || a.Health.State == wire.StateOffline {
		t.Errorf("gw-a twin state = %q (%v), want online", a.Health.State, err)
	}
	if st := s.in.Stats(); st.Accepted != 2 {
		t.Errorf("accepted = %d, want 2 (no will)", st.Accepted)
	}
}

// subscribe returns the SUBACK's granted QoS, or an error when refused.
func subscribe(t *testing.T, c paho.Client, filter string, got chan<- paho.Message) error {
	t.Helper()
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m:
		default:
		}
	})
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("no SUBACK")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if r, ok := tok.(*paho.SubscribeToken).Result()[filter]; !ok || r >= 0x80 {
		return errors.New("refused (SUBACK 0x80)")
	}
	return nil
}

// TestSubscribeACL: a gateway reads nothing but its own subtree; the alert
// topic is only for an alert reader; $SYS for nobody here; a service client
// publishes nothing.
func TestSubscribeACL(t *testing.T) {
	s := startAuthStack(t, Config{})
	gw, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-a", key("gw-a")))
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan paho.Message, 16)
	// A gateway reads nothing: no subscriber that never reads can pile up
	// copies of its own messages either.
	for _, f := range []string{"#", "$SYS/#", wire.AlertFilter(), wire.GatewayFilter(), "twinchain/v1/gw/gw-b/#", "$share/g/twinchain/v1/gw/gw-a/#",
		"twinchain/v1/gw/gw-a/#", wire.Topic("gw-a", wire.KindStatus)} {
		if err := subscribe(t, gw, f, msgs); err == nil {
			t.Errorf("gateway subscribed to %q", f)
		}
	}
	publish(t, gw, wire.Topic("gw-a", wire.KindStatus), seal(t, "gw-a", 1, wire.KindStatus, wire.Status{State: wire.StateOnline}))
	soc, err := tryConnect(t, paho.NewClientOptions().AddBroker(s.url).SetClientID("svc:soc").SetUsername("soc").SetPassword(alertSecret))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"#", "$SYS/#", wire.GatewayFilter()} {
		if err := subscribe(t, soc, f, make(chan paho.Message)); err == nil {
			t.Errorf("alert reader subscribed to %q", f)
		}
	}
	alerts := make(chan paho.Message, 16)
	if err := subscribe(t, soc, wire.AlertFilter(), alerts); err != nil {
		t.Fatalf("alert reader subscribing to alerts: %v", err)
	}
	if err := s.b.Publish(wire.AlertTopic("s1", "theft"), []byte(`{"id":"a1"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-alerts:
		if m.Topic() != wire.AlertTopic("s1", "theft") {
			t.Errorf("alert reader got %q, want the alert", m.Topic())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the alert reader got no alert")
	}
	select {
	case m := <-msgs:
		t.Errorf("a refused subscription delivered %q", m.Topic())
	default:
	}
}

// TestRevocationClosesSession: removing a gateway, or re-keying it, closes
// its live session at once and refuses the old credential; the new key
// connects.
func TestRevocationClosesSession(t *testing.T) {
	s := startAuthStack(t, Config{})
	connectLost := func(gw string, k ed25519.PrivateKey) chan error {
		lost := make(chan error, 1)
		if _, err := tryConnect(t, testsvc.GatewayOptions(s.url, gw, k).SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })); err != nil {
			t.Fatalf("connect %s: %v", gw, err)
		}
		return lost
	}
	waitLost := func(what string, lost chan error) {
		t.Helper()
		select {
		case <-lost:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the live session was not closed", what)
		}
	}
	lostA := connectLost("gw-a", key("gw-a"))
	lostB := connectLost("gw-b", key("gw-b"))

	if _, err := s.reg.Delete("gw-a"); err != nil {
		t.Fatal(err)
	}
	waitLost("revoked gw-a", lostA)
	if _, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-a", key("gw-a"))); err == nil {
		t.Errorf("revoked gw-a connected again")
	}

	newSeed := sha256.Sum256([]byte("gw-b new key"))
	newKey := ed25519.NewKeyFromSeed(newSeed[:])
	if err := s.reg.Put(registry.Gateway{ID: "gw-b", PublicKey: newKey.Public().(ed25519.PublicKey), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	waitLost("re-keyed gw-b", lostB)
	if _, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-b", key("gw-b"))); err == nil {
		t.Errorf("gw-b's old key connected after re-keying")
	}
	if _, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-b", newKey)); err != nil {
		t.Errorf("gw-b's new key: %v", err)
	}
	if got := s.b.Stats().Refused[RefusedRevoked]; got != 2 {
		t.Errorf("refused[revoked] = %d, want 2", got)
	}
	if st := s.in.Stats(); st.Accepted != 0 || len(st.Rejected) != 0 && st.Rejected[ingest.ReasonBadSignature]+st.Rejected[ingest.ReasonUnknownGateway] != 0 {
		t.Errorf("ingest stats after revocation: accepted %d, rejected %v; want no will submitted", st.Accepted, st.Rejected)
	}
}

func TestPlaintextOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want bool
	}{
		{Config{Addr: "127.0.0.1:1883"}, true},
		{Config{Addr: "[::1]:1883"}, true},
		{Config{Addr: "localhost:1883"}, true},
		{Config{Addr: "0.0.0.0:1883"}, false},
		{Config{Addr: ":1883"}, false},
		{Config{Addr: "192.0.2.1:1883"}, false},
		{Config{Addr: "0.0.0.0:1883", AllowPlaintext: true}, true},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.want {
			t.Errorf("Config{Addr: %q, AllowPlaintext: %v}.Validate() = %v, want ok=%v", tc.cfg.Addr, tc.cfg.AllowPlaintext, err, tc.want)
		}
	}
}

// closedSoon reports whether the server closes c (EOF or reset) within d.
func closedSoon(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestPendingConnectionLimits: sockets that never send a CONNECT are
// bounded per address and closed after the connect timeout; a first packet
// that is not a small CONNECT is refused at once; gateways connect
// afterwards.
func TestPendingConnectionLimits(t *testing.T) {
	s := startAuthStack(t, Config{MaxPendingPerAddress: 4, ConnectTimeout: 300 * time.Millisecond})
	addr := strings.TrimPrefix(s.url, "tcp://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	before := s.b.Stats().Refused
	idle := []net.Conn{dial(), dial(), dial(), dial()}
	testsvc.Eventually(t, 10*time.Second, "four pending connections", func() bool {
		s.b.gate.mu.Lock()
		defer s.b.gate.mu.Unlock()
		return s.b.gate.total == 4
	})
	if !closedSoon(dial(), 5*time.Second) {
		t.Errorf("a fifth idle connection from the same address was not closed")
	}
	for i, c := range idle {
		if !closedSoon(c, 10*time.Second) {
			t.Errorf("idle connection %d was not closed after the connect timeout", i)
		}
	}
	publishFirst := dial()
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: wire.Topic("gw-a", wire.KindStatus), Payload: []byte("x"), ProtocolVersion: 4}
	if err := pk.PublishEncode(&buf); err != nil {
		t.Fatal(err)
	}
	publishFirst.Write(buf.Bytes())
	if !closedSoon(publishFirst, 5*time.Second) {
		t.Errorf("a PUBLISH before CONNECT did not close the connection")
	}
	huge := dial()
	huge.Write([]byte{0x10, 0xff, 0xff, 0x3f}) // CONNECT of 1 MiB
	if !closedSoon(huge, 5*time.Second) {
		t.Errorf("a 1 MiB CONNECT did not close the connection")
	}
	after := s.b.Stats().Refused
	for reason, want := range map[string]uint64{RefusedPendingAddress: 1, RefusedTimeout: 4, RefusedBadConnect: 2} {
		if got := after[reason] - before[reason]; got != want {
			t.Errorf("refused[%s] moved by %d, want %d", reason, got, want)
		}
	}
	if _, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-a", key("gw-a"))); err != nil {
		t.Errorf("gw-a after the idle connections: %v", err)
	}
}

func TestReadConnectHeader(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want bool
	}{
		{[]byte{0x10, 0x10}, true},
		{[]byte{0x10, 0x80, 0x80, 0x01}, true}, // 16384
		{[]byte{0x10, 0x81, 0x80, 0x01}, false},
		{[]byte{0x30, 0x01}, false},
		{[]byte{0x11, 0x01}, false},
		{[]byte{0x10, 0xff, 0xff, 0xff, 0xff}, false},
		{[]byte{0x10}, false},
	} {
		h, err := readConnectHeader(bytes.NewReader(tc.in))
		if (err == nil) != tc.want || (err == nil && !bytes.Equal(h, tc.in)) {
			t.Errorf("readConnectHeader(% x) = % x, %v; want ok=%v", tc.in, h, err, tc.want)
		}
	}
}

// FuzzConnectHeader: no first bytes panic the check, and what passes is a
// CONNECT of at most maxConnectPacket bytes.
func FuzzConnectHeader(f *testing.F) {
	f.Add([]byte{0x10, 0x10})
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readConnectHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		n, mult := 0, 1
		for _, c := range h[1:] {
			n += int(c&0x7f) * mult
			mult <<= 7
		}
		if h[0] != 0x10 || n > maxConnectPacket || !bytes.HasPrefix(b, h) {
			t.Fatalf("readConnectHeader(% x) accepted % x (length %d)", b, h, n)
		}
	})
}

// FuzzAuthenticate: whatever the client id, username and password, a
// session is granted only to a gateway whose password verifies with its
// registered key under its own id, or to the service client with its secret.
func FuzzAuthenticate(f *testing.F) {
	gws := registry.New(registry.Gateway{ID: "gw-a", PublicKey: key("gw-a").Public().(ed25519.PublicKey), Site: "s1"})
	now := time.Unix(1_800_000_000, 0)
	h := newAuthHook(gws, []ServiceClient{{Name: "soc", SecretSHA256: secretSHA(alertSecret), Role: RoleAlertReader}},
		time.Minute, func() time.Time { return now }, &counters{}, nil)
	f.Add("gw-a", "gw-a", wire.ConnectPassword(key("gw-a"), "gw-a", now))
	f.Add("gw-a", "gw-a", "tc1:1:AAAA")
	f.Add("svc:soc", "soc", alertSecret)
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, clientID, username, password string) {
		s, reason, _ := h.authenticate(clientID, []byte(username), []byte(password), nil)
		if reason != "" {
			return
		}
		switch {
		case s.gateway != "":
			if _, err := wire.VerifyConnectPassword(key("gw-a").Public().(ed25519.PublicKey), s.gateway, []byte(password), now); err != nil || clientID != s.gateway || username != s.gateway {
				t.Fatalf("authenticate(%q, %q, %q) granted gateway %s", clientID, username, password, s.gateway)
			}
		case s.role != "":
			if clientID != "svc:soc" || username != "soc" || password != alertSecret {
				t.Fatalf("authenticate(%q, %q, %q) granted role %s", clientID, username, password, s.role)
			}
		default:
			t.Fatalf("authenticate(%q, %q, %q) granted an empty session", clientID, username, password)
		}
	})
}

// TestNothingRetained: retained messages are not retained on any topic a
// gateway can write, and a retained last will is refused; the gateway's
// other traffic still works.
func TestNothingRetained(t *testing.T) {
	s := startAuthStack(t, Config{})
	for i, topic := range []string{wire.Topic("gw-a", wire.KindStatus), "flood/1"} {
		c, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-a", key("gw-a")))
		if err != nil {
			t.Fatal(err)
		}
		tok := c.Publish(topic, 1, true, seal(t, "gw-a", uint64(i+1), wire.KindStatus, wire.Status{State: wire.StateOnline}))
		tok.WaitTimeout(10 * time.Second)
		c.Disconnect(0)
	}
	// A CONNECT with a retained last will is refused: mochi answers return
	// code 0x9a (retain not supported; paho 3.1.1 takes it for a success)
	// and closes the connection, so nothing it sends is acknowledged.
	will := seal(t, "gw-b", 0, wire.KindStatus, wire.Status{State: wire.StateOffline})
	if c, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-b", key("gw-b")).SetBinaryWill(wire.Topic("gw-b", wire.KindStatus), will, 1, true)); err == nil {
		tok := c.Publish(wire.Topic("gw-b", wire.KindStatus), 1, false, seal(t, "gw-b", 1, wire.KindStatus, wire.Status{State: wire.StateOnline}))
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			t.Error("a connection with a retained last will was accepted")
		}
	}
	for topic := range s.b.srv.Topics.Retained.GetAll() {
		if !strings.HasPrefix(topic, sysPrefix) { // the broker's own $SYS figures
			t.Errorf("the broker retains %q", topic)
		}
	}
	c, err := tryConnect(t, testsvc.GatewayOptions(s.url, "gw-a", key("gw-a")))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, c, wire.Topic("gw-a", wire.KindStatus), seal(t, "gw-a", 10, wire.KindStatus, wire.Status{State: wire.StateOnline}))
}

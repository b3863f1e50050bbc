// Package broker is twin-service's embedded MQTT broker (mochi-mqtt). Every
// client authenticates: a gateway with its enrolled client certificate or a
// connect password signed by its key (internal/wire), a service client with
// its secret; a gateway writes only its own subtree and reads nothing. Its ingest
// hook hands every gateway message to the ingest before the broker
// acknowledges it. Connections, packets and queues are bounded.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"twinchain/internal/ingest"
	"twinchain/internal/latency"
	"twinchain/internal/wire"
)

// Acknowledgement modes.
const (
	// AckSync stores each message before the connection reads the next one:
	// one message per connection per commit.
	AckSync = "sync"
	// AckPipelined lets a connection send up to AckWindow messages ahead;
	// each PUBACK is written after its message's commit, in order.
	AckPipelined = "pipelined"
)

// Config is the embedded broker's configuration.
type Config struct {
	// Addr is the plaintext listener (gateways authenticate with their
	// connect password); default 127.0.0.1:1883. Only a loopback address
	// unless AllowPlaintext.
	Addr           string    `yaml:"addr"`
	AllowPlaintext bool      `yaml:"allow_plaintext"`
	TLS            TLSConfig `yaml:"tls"`
	// Clients are the service clients (alert readers, $SYS monitors).
	Clients []ServiceClient `yaml:"clients"`

	MaxConnections       int           `yaml:"max_connections"`         // authenticated connections; default 16384 (12,500 GPU hosts and room)
	MaxPending           int           `yaml:"max_pending"`             // connections not authenticated yet; default 512
	MaxPendingPerAddress int           `yaml:"max_pending_per_address"` // of those, from one remote address; default 64
	ConnectTimeout       time.Duration `yaml:"connect_timeout"`         // TLS handshake and CONNECT; default 10s
	MaxKeepalive         time.Duration `yaml:"max_keepalive"`           // a client asking for more (or none) gets this; default 5m
	MaxPacketSize        uint32        `yaml:"max_packet_size"`         // larger packets close the connection; default the largest envelope (wire.MaxEnvelopeSize) and 4 KiB
	MaxQueued            int           `yaml:"max_queued"`              // per client: messages waiting to be written and QoS 1 deliveries unacknowledged; default 256
	SessionExpiry        time.Duration `yaml:"session_expiry"`          // a disconnected persistent session is kept this long; default 24h

	Ack       string `yaml:"ack"`        // pipelined (default) or sync
	AckWindow int    `yaml:"ack_window"` // pipelined: messages a connection may have unacknowledged; default 256

	// MaxInflightBytes bounds the bytes of a connection's messages between
	// their read and the ingest's answer (stored or rejected), and
	// MaxInflightBytesTotal those of all connections. A message that does
	// not fit waits, and its connection is not read meanwhile (TCP pushes
	// back on the gateway); its PUBACK comes later. Nothing is dropped.
	// Defaults: max_packet_size (one largest message, or ten of 26 KB) and
	// 32 MiB; neither is less than max_packet_size.
	MaxInflightBytes      int64 `yaml:"max_inflight_bytes"`
	MaxInflightBytesTotal int64 `yaml:"max_inflight_bytes_total"`
}

// TLSConfig is the broker's TLS listener. Its certificate is cert_file and
// key_file, or else one twin-service issues from its gateway CA for hosts.
type TLSConfig struct {
	Addr              string   `yaml:"addr"` // e.g. 0.0.0.0:8883; empty: no TLS listener
	CertFile          string   `yaml:"cert_file"`
	KeyFile           string   `yaml:"key_file"`
	Hosts             []string `yaml:"hosts"`               // names and IPs of the issued certificate
	RequireClientCert bool     `yaml:"require_client_cert"` // refuse a TLS client without a gateway certificate
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		host, _, err := net.SplitHostPort(c.Addr)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("broker: addr %q: %w", c.Addr, err))
		case !c.AllowPlaintext && !loopback(host):
			errs = append(errs, fmt.Errorf("broker: addr %q: plaintext MQTT only on a loopback address; use tls.addr, or set allow_plaintext", c.Addr))
		}
	}
	if c.TLS.Addr != "" {
		if _, _, err := net.SplitHostPort(c.TLS.Addr); err != nil {
			errs = append(errs, fmt.Errorf("broker: tls.addr %q: %w", c.TLS.Addr, err))
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("broker: tls.cert_file and tls.key_file go together"))
	}
	names := map[string]bool{}
	for _, sc := range c.Clients {
		if err := sc.validate(); err != nil {
			errs = append(errs, fmt.Errorf("broker: clients: %w", err))
		}
		if names[sc.Name] {
			errs = append(errs, fmt.Errorf("broker: clients: %s twice", sc.Name))
		}
		names[sc.Name] = true
	}
	switch c.Ack {
	case "", AckSync, AckPipelined:
	default:
		errs = append(errs, fmt.Errorf("broker: ack %q: want %q or %q", c.Ack, AckSync, AckPipelined))
	}
	if c.AckWindow < 0 || c.AckWindow > 65535 {
		errs = append(errs, fmt.Errorf("broker: ack_window %d: want 0 (default) to 65535", c.AckWindow))
	}
	if c.MaxConnections < 0 || c.MaxPending < 0 || c.MaxPendingPerAddress < 0 || c.MaxQueued < 0 || c.MaxQueued > 65535 ||
		c.ConnectTimeout < 0 || c.MaxKeepalive < 0 || c.MaxKeepalive > 18*time.Hour || c.SessionExpiry < 0 ||
		c.MaxInflightBytes < 0 || c.MaxInflightBytesTotal < 0 {
		errs = append(errs, errors.New("broker: limits: want max_connections, max_pending, max_pending_per_address, connect_timeout, session_expiry, max_inflight_bytes, max_inflight_bytes_total >= 0, max_queued 0-65535, max_keepalive 0-18h (0: default)"))
	}
	return errors.Join(errs...)
}

// loopback reports whether host is a loopback address or localhost.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:1883"
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 16384
	}
	if c.MaxPending == 0 {
		c.MaxPending = 512
	}
	if c.MaxPendingPerAddress == 0 {
		c.MaxPendingPerAddress = 64
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.MaxKeepalive == 0 {
		c.MaxKeepalive = 5 * time.Minute
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = wire.MaxEnvelopeSize + 4<<10
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = 256
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = 24 * time.Hour
	}
	if c.Ack == "" {
		c.Ack = AckPipelined
	}
	if c.AckWindow == 0 {
		c.AckWindow = 256
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = int64(c.MaxPacketSize)
	}
	if c.MaxInflightBytesTotal == 0 {
		c.MaxInflightBytesTotal = 32 << 20
	}
	// One message of the largest size must always fit.
	c.MaxInflightBytes = max(c.MaxInflightBytes, int64(c.MaxPacketSize))
	c.MaxInflightBytesTotal = max(c.MaxInflightBytesTotal, int64(c.MaxPacketSize))
	return c
}

// Submitter takes one message and returns after it is stored or rejected;
// *ingest.Ingest is one.
type Submitter interface {
	Submit(src ingest.Source, topic string, payload []byte) (ingest.Outcome, error)
	SubmitAsync(src ingest.Source, topic string, payload []byte, done func(ingest.Outcome, error))
}

// Options are what the broker works with besides its configuration.
type Options struct {
	Ingest   Submitter
	Gateways Gateways
	// TLS is the TLS listener's server configuration (certificate, and the
	// gateway CA as ClientCAs); required when Config.TLS.Addr is set.
	TLS *tls.Config
	Log *slog.Logger
	Now func() time.Time // default time.Now
}

// shutdownTimeout bounds each step of stopping the broker.
const shutdownTimeout = 10 * time.Second

// Broker is the embedded broker.
type Broker struct {
	cfg       Config
	srv       *mqtt.Server
	listeners []*listener
	log       *slog.Logger
	up        atomic.Bool
	refused   *counters
	gate      *gate
	auth      *authHook
	ingest    *ingestHook
	limit     *limiter
}

// New builds the broker; it binds its addresses only when Run starts.
func New(cfg Config, opts Options) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TLS.Addr != "" && opts.TLS == nil {
		return nil, errors.New("broker: tls.addr is set but no TLS certificate was given")
	}
	if opts.Gateways == nil {
		return nil, errors.New("broker: no gateway registry")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg = cfg.withDefaults()
	log := opts.Log
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(cfg.MaxConnections)
	caps.MaximumPacketSize = cfg.MaxPacketSize
	caps.MaximumClientWritesPending = int32(cfg.MaxQueued)
	caps.MaximumInflight = uint16(cfg.MaxQueued)
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	caps.RetainAvailable = 0    // nothing is retained: a retained will is refused at CONNECT
	caps.TopicAliasMaximum = 0  // mochi checks the ACL before resolving an alias
	caps.SharedSubAvailable = 0 // $share/... filters are refused
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(quietHandler{log.Handler()}),
		InlineClient:           true,
		SysTopicResendInterval: 10,
	})
	b := &Broker{cfg: cfg, srv: srv, log: log, refused: &counters{}, gate: newGate(cfg.MaxPending, cfg.MaxPendingPerAddress),
		limit: &limiter{now: opts.Now}}
	b.auth = newAuthHook(opts.Gateways, cfg.Clients, cfg.MaxKeepalive, opts.Now, b.refused, b.logRefusal)
	if err := srv.AddHook(b.auth, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.ingest = newIngestHook(opts.Ingest, log, &limiter{now: opts.Now}, cfg)
	if err := srv.AddHook(b.ingest, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.listeners = append(b.listeners, b.newListener("tcp", cfg.Addr, nil))
	if cfg.TLS.Addr != "" {
		tc := opts.TLS.Clone()
		tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if cfg.TLS.RequireClientCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
		b.listeners = append(b.listeners, b.newListener("tls", cfg.TLS.Addr, tc))
	}
	return b, nil
}

func (b *Broker) newListener(id, addr string, tc *tls.Config) *listener {
	return &listener{id: id, address: addr, tls: tc, gate: b.gate, connectTimeout: b.cfg.ConnectTimeout, refused: b.refused, log: b.log,
		inflight: b.ingest.inflight, maxPacket: int(b.cfg.MaxPacketSize), life: b.ingest.life}
}

// logRefusal logs a refused connection, at most one line a second.
func (b *Broker) logRefusal(reason string, cl *mqtt.Client, err error) {
	b.limit.log(b.log, slog.LevelWarn, "mqtt connection refused", "reason", reason, "client", cl.ID, "remote", cl.Net.Remote, "err", err)
}

// Addr is the plaintext listener's address (the configured one until Run
// has started listening).
func (b *Broker) Addr() string { return b.listeners[0].Address() }

// TLSAddr is the TLS listener's address, or "" when there is none.
func (b *Broker) TLSAddr() string {
	if len(b.listeners) < 2 {
		return ""
	}
	return b.listeners[1].Address()
}

// Run serves MQTT until ctx ends, then disconnects every client.
func (b *Broker) Run(ctx context.Context) error {
	b.ingest.startWorkers(runtime.GOMAXPROCS(0))
	defer b.ingest.stopWorkers() // after shutdown: no connection hands them messages any more
	for _, l := range b.listeners {
		if err := b.srv.AddListener(l); err != nil {
			b.shutdown()
			return fmt.Errorf("broker: listen %s: %w", l.address, err)
		}
	}
	if err := b.srv.Serve(); err != nil {
		b.shutdown()
		return fmt.Errorf("broker: %w", err)
	}
	b.up.Store(true)
	b.log.Info("mqtt broker listening", "addr", b.Addr(), "tls_addr", b.TLSAddr(), "require_client_cert", b.cfg.TLS.RequireClientCert)
	<-ctx.Done()
	b.shutdown()
	return nil
}

// shutdown stops the broker, each step bounded by shutdownTimeout. The
// listeners and the clients are closed here, before mochi's Close, which
// then has nothing left to walk (its walk of the clients can deadlock in
// mochi v2.7.9: issue 488).
func (b *Broker) shutdown() {
	b.up.Store(false)
	b.ingest.stopping.Store(true) // the wills of the connections closed now are not the gateways'
	b.ingest.endLife()            // nothing waits for room in flight any more
	for _, l := range b.listeners {
		l.Close(nil)
	}
	for _, cl := range b.srv.Clients.GetAll() {
		if !cl.Net.Inline {
			cl.Stop(errShutdown)
		}
	}
	for _, l := range b.listeners {
		if !l.wait(shutdownTimeout) {
			b.log.Error("mqtt: connections still open after the shutdown timeout", "listener", l.id, "timeout", shutdownTimeout)
		}
	}
	done := make(chan struct{})
	go func() {
		_ = b.srv.Close() // always nil
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownTimeout):
		b.log.Error("mqtt: the broker did not close in time; going on", "timeout", shutdownTimeout)
	}
}

// Listening reports whether the broker accepts connections.
func (b *Broker) Listening() bool { return b.up.Load() }

// GatewayChanged closes at once the live sessions of gateway id whose
// credential is no longer valid (the gateway was removed or re-keyed); the
// registry calls it after every change.
func (b *Broker) GatewayChanged(id string) {
	if n := b.auth.revoke(id); n > 0 {
		b.log.Info("mqtt sessions closed: gateway revoked or re-keyed", "gateway", id, "sessions", n)
	}
}

// Stats are the broker's connection and in-flight figures.
type Stats struct {
	Connected int64             `json:"connected"` // authenticated connections
	Refused   map[string]uint64 `json:"refused"`   // connections refused or closed, by reason
	Inflight  InflightStats     `json:"inflight"`
	// Answer times gateway messages from the read of their PUBLISH to the
	// ingest's answer (stored or rejected), the PUBACK's wait inside the
	// service; with the ingest's stages it tells where that goes.
	Answer latency.Snapshot `json:"-"`
}

// Stats returns the broker's connection and in-flight figures.
func (b *Broker) Stats() Stats {
	return Stats{Connected: atomic.LoadInt64(&b.srv.Info.ClientsConnected), Refused: b.refused.snapshot(), Inflight: b.ingest.inflight.stats(),
		Answer: b.ingest.answered.Snapshot()}
}

// Publish sends a message from the service itself (for example an alert) to
// the broker's subscribers.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

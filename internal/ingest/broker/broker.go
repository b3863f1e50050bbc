// Package broker is twin-service's embedded MQTT broker (mochi-mqtt). Its
// ingest hook hands every gateway message to the ingest before the broker
// acknowledges it, and its ACL confines a gateway (username = gateway id) to
// its own topic subtree.
package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"twinchain/internal/ingest"
)

// ACL modes.
const (
	ACLGateway = "gateway" // a client publishes only under twinchain/v1/gw/{its username}/
	ACLOff     = "off"     // any client publishes anywhere (the ingest still checks every message)
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
	Addr          string `yaml:"addr"`            // TCP listen address; default 127.0.0.1:1883
	ACL           string `yaml:"acl"`             // gateway (default) or off
	MaxPacketSize uint32 `yaml:"max_packet_size"` // larger packets close the connection; default 1 MiB
	Ack           string `yaml:"ack"`             // pipelined (default) or sync
	AckWindow     int    `yaml:"ack_window"`      // pipelined: messages a connection may have unacknowledged; default 256
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("broker: addr %q: %w", c.Addr, err)
		}
	}
	switch c.ACL {
	case "", ACLGateway, ACLOff:
	default:
		return fmt.Errorf("broker: acl %q: want %q or %q", c.ACL, ACLGateway, ACLOff)
	}
	switch c.Ack {
	case "", AckSync, AckPipelined:
	default:
		return fmt.Errorf("broker: ack %q: want %q or %q", c.Ack, AckSync, AckPipelined)
	}
	if c.AckWindow < 0 || c.AckWindow > 65535 {
		return fmt.Errorf("broker: ack_window %d: want 0 (default) to 65535", c.AckWindow)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:1883"
	}
	if c.ACL == "" {
		c.ACL = ACLGateway
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = 1 << 20
	}
	if c.Ack == "" {
		c.Ack = AckPipelined
	}
	if c.AckWindow == 0 {
		c.AckWindow = 256
	}
	return c
}

// maxPendingWrites is the outbound packets a connection may have queued:
// 8 KB each instead of mochi's 64 KB.
const maxPendingWrites = 1024

// Submitter takes one message and returns after it is stored or rejected;
// *ingest.Ingest is one.
type Submitter interface {
	Submit(topic string, payload []byte) (ingest.Outcome, error)
	SubmitAsync(topic string, payload []byte, done func(ingest.Outcome, error))
}

// Broker is the embedded broker.
type Broker struct {
	cfg Config
	srv *mqtt.Server
	tcp *listeners.TCP
	log *slog.Logger
	up  atomic.Bool

	ingest *ingestHook
}

// New builds the broker; it binds its address only when Run starts.
func New(cfg Config, in Submitter, log *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacketSize
	// Each connection gets a channel of this many pending outbound
	// packets, allocated at connect: mochi's default of 8,192 pointers is
	// 64 KB per connection (640 MB for 10,000 gateways, which are sent
	// nothing but acknowledgements). A subscriber that falls this far
	// behind has its messages dropped, counted by mochi.
	caps.MaximumClientWritesPending = maxPendingWrites
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(quietHandler{log.Handler()}),
		InlineClient:           true,
		SysTopicResendInterval: 10,
	})
	b := &Broker{cfg: cfg, srv: srv, log: log}
	if err := srv.AddHook(&authHook{acl: cfg.ACL}, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.ingest = newIngestHook(in, log, time.Now, cfg)
	if err := srv.AddHook(b.ingest, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.tcp = listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Addr})
	return b, nil
}

// Addr is the address the broker listens on (the configured one until Run
// has started listening).
func (b *Broker) Addr() string { return b.tcp.Address() }

// Run serves MQTT until ctx ends, then disconnects every client.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.srv.AddListener(b.tcp); err != nil {
		_ = b.srv.Close() // the error being returned says more
		return fmt.Errorf("broker: listen %s: %w", b.cfg.Addr, err)
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.up.Store(true)
	b.log.Info("mqtt broker listening", "addr", b.Addr())
	<-ctx.Done()
	b.up.Store(false)
	b.ingest.stopping.Store(true) // the wills mochi sends while closing are not the gateways'
	return b.srv.Close()
}

// Listening reports whether the broker accepts connections.
func (b *Broker) Listening() bool { return b.up.Load() }

// Publish sends a message from the service itself (for example an alert) to
// the broker's subscribers.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

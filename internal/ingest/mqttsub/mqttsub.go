// Package mqttsub feeds the ingest from an external MQTT broker: a paho
// client with a persistent session (fixed client id, clean session off)
// subscribes to every gateway topic at QoS 1 with automatic acknowledgement
// off. Its message handler never waits on the store: it hands the message
// to a bounded queue, and workers submit each message to the ingest and
// acknowledge it only after it is stored. A message that could not be stored
// is left unacknowledged, and the client reconnects so that the broker
// sends it again.
//
// The broker's in-flight window (Mosquitto's max_inflight_messages, 20 by
// default) bounds the unacknowledged messages, so a queue at least that
// large never fills; if it does, the handler waits (backpressure onto the
// connection) and the wait is counted.
package mqttsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/ingest"
	"twinchain/internal/wire"
)

// Config is the external broker client's configuration.
type Config struct {
	URL       string `yaml:"url"`        // tcp://host:port
	ClientID  string `yaml:"client_id"`  // fixed, for the persistent session; default twin-service
	Username  string `yaml:"username"`   // optional
	Password  string `yaml:"password"`   // optional
	QueueSize int    `yaml:"queue_size"` // default 1024
	Workers   int    `yaml:"workers"`    // concurrent submitters; default 64
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.URL == "" {
		return fmt.Errorf("mqtt external: url is required (e.g. tcp://127.0.0.1:1883)")
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("mqtt external: url %q: want scheme://host:port", c.URL)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return fmt.Errorf("mqtt external: url %q: unsupported scheme %q", c.URL, u.Scheme)
	}
	if c.QueueSize < 0 || c.Workers < 0 {
		return fmt.Errorf("mqtt external: queue_size and workers must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = "twin-service"
	}
	if c.QueueSize == 0 {
		c.QueueSize = 1024
	}
	if c.Workers == 0 {
		c.Workers = 64
	}
	return c
}

// Submitter takes one message and returns after it is stored or rejected;
// *ingest.Ingest is one.
type Submitter interface {
	Submit(src ingest.Source, topic string, payload []byte) (ingest.Outcome, error)
}

// Subscriber is the client.
type Subscriber struct {
	cfg       Config
	in        Submitter
	log       *slog.Logger
	queue     chan paho.Message
	client    paho.Client
	connected atomic.Bool
	waits     atomic.Uint64 // times the handler found the queue full
	failures  atomic.Uint64 // messages left unacknowledged because the store failed
	reconnect chan struct{}
	// src names the external broker as every message's source: twin-service
	// does not see the publishing client behind it.
	src ingest.Source
}

// New builds the client; it connects in Run.
func New(cfg Config, in Submitter, log *slog.Logger) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Subscriber{cfg: cfg, in: in, log: log, queue: make(chan paho.Message, cfg.QueueSize), reconnect: make(chan struct{}, 1),
		src: ingest.Source{Client: "external-broker", Remote: brokerHost(cfg.URL)}}
	opts := paho.NewClientOptions().
		AddBroker(cfg.URL).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(s.handle).
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.connected.Store(false)
			s.log.Warn("mqtt connection lost", "broker", cfg.URL, "err", err)
		})
	s.client = paho.NewClient(opts)
	return s, nil
}

func (s *Subscriber) onConnect(c paho.Client) {
	t := c.Subscribe(wire.GatewayFilter(), 1, s.handle)
	go func() {
		if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			s.log.Error("mqtt subscribe failed", "filter", wire.GatewayFilter(), "err", t.Error())
			return
		}
		s.connected.Store(true)
		s.log.Info("mqtt subscribed", "broker", s.cfg.URL, "filter", wire.GatewayFilter(), "client_id", s.cfg.ClientID)
	}()
}

// handle is paho's message handler: it only queues.
func (s *Subscriber) handle(_ paho.Client, m paho.Message) {
	select {
	case s.queue <- m:
	default:
		s.waits.Add(1)
		s.queue <- m
	}
}

// Connected reports whether the client is connected and subscribed.
func (s *Subscriber) Connected() bool { return s.connected.Load() }

// Run connects, consumes until ctx ends and disconnects. Messages still
// queued then stay unacknowledged; the broker keeps them for the session.
func (s *Subscriber) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	t := s.client.Connect() // retries in the background until it connects
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("mqtt connect %s: %w", s.cfg.URL, err)
		}
	case <-ctx.Done():
	}
	for {
		select {
		case <-ctx.Done():
			s.client.Disconnect(250)
			s.connected.Store(false)
			wg.Wait()
			return nil
		case <-s.reconnect:
			// A message was not stored: drop the connection so the broker
			// redelivers every unacknowledged message of the session.
			s.log.Warn("reconnecting so the broker redelivers unstored messages")
			s.client.Disconnect(0)
			s.connected.Store(false)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				continue
			}
			if t := s.client.Connect(); t.WaitTimeout(10*time.Second) && t.Error() != nil {
				s.log.Error("mqtt reconnect", "err", t.Error())
			}
		}
	}
}

func (s *Subscriber) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.queue:
			_, err := s.in.Submit(s.src, m.Topic(), m.Payload())
			if err != nil {
				s.failures.Add(1)
				if !errors.Is(err, ingest.ErrClosed) {
					select {
					case s.reconnect <- struct{}{}:
					default:
					}
				}
				continue
			}
			m.Ack()
		}
	}
}

// brokerHost is the host:port of a broker URL (tcp://host:port), or the URL.
func brokerHost(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return u
}

// Package mqttsub feeds the ingest from an external MQTT broker: a paho
// client with a persistent session (its own client id and credential, clean
// session off) subscribes to every gateway topic at QoS 1 with automatic acknowledgement
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
//
// The client is ready only when the broker confirmed the subscription and
// messages reach it: every ProbeInterval it publishes a probe on
// wire.ProbeTopic(client id), which the gateway subscription receives; a
// broker whose ACL lets it publish but not read (or drops what it reads) is
// not ready.
package mqttsub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/ingest"
	"twinchain/internal/wire"
)

// Config is the external broker client's configuration.
type Config struct {
	URL string `yaml:"url"` // tcp://host:port, or ssl://host:port
	// ClientID is the persistent session's client id: default the username.
	// It must not be a valid gateway id (e.g. twin-service@site1), so that
	// no gateway, which connects with its id as client id, can take it over;
	// the broker must bind it to this client's credential (Mosquitto:
	// use_username_as_clientid).
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"` // this twin-service's own credential
	Password string `yaml:"password"` // better TWINCHAIN_MQTT_PASSWORD in the environment
	CAFile   string `yaml:"ca_file"`  // ssl://: the broker's CA (PEM); default the system's
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"` // ssl://: a client certificate and key (PEM), instead of or besides the password

	// ParkDir holds the messages rejected for a reason that can go away
	// (park.go); twin-service sets it to {data_dir}/mqtt-parked. Empty: such
	// messages are dropped and counted.
	ParkDir string `yaml:"park_dir"`

	QueueSize int `yaml:"queue_size"` // default 1024
	Workers   int `yaml:"workers"`    // concurrent submitters; default 64
}

// ProbeInterval is how often the client sends its readiness probe; it is
// ready while a probe or a message arrived within 3 of them.
const ProbeInterval = 5 * time.Second

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
	if c.Username == "" && c.CertFile == "" {
		return errors.New("mqtt external: twin-service needs a credential of its own at the broker: username and password (or a client certificate, cert_file)")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("mqtt external: cert_file and key_file go together")
	}
	switch id := c.withDefaults().ClientID; {
	case id == "":
		return errors.New("mqtt external: client_id is required with a certificate and no username")
	case wire.ValidGatewayID(id):
		return fmt.Errorf("mqtt external: client id %q could be a gateway's, which would take over the session: include a character a gateway id cannot have, e.g. %q", id, id+"@twin")
	case strings.ContainsAny(id, "/+#"):
		return fmt.Errorf("mqtt external: client id %q: no /, + or #", id)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = c.Username
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
	cfg        Config
	in         Submitter
	log        *slog.Logger
	queue      chan paho.Message
	client     paho.Client
	probeTopic string
	connected  atomic.Bool   // connected and the subscription confirmed
	probe      atomic.Int64  // the last probe sent: its payload, Unix ns
	flowed     atomic.Int64  // Unix ns when the last probe or message arrived
	waits      atomic.Uint64 // times the handler found the queue full
	failures   atomic.Uint64 // messages left unacknowledged because the store failed
	reconnect  chan struct{}
	park       *parking // nil without ParkDir
	unparked   atomic.Uint64
	recheckMu  sync.Mutex
	rechecks   map[string]bool // gateways changed in the registry since the last pass
	recheck    chan struct{}
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
		probeTopic: wire.ProbeTopic(cfg.ClientID), rechecks: map[string]bool{}, recheck: make(chan struct{}, 1),
		src: ingest.Source{Client: "external-broker", Remote: brokerHost(cfg.URL)}}
	if cfg.ParkDir != "" {
		p, err := openParking(cfg.ParkDir, log)
		if err != nil {
			return nil, err
		}
		s.park = p
	}
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
	if u, _ := url.Parse(cfg.URL); u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ws" {
		tc, err := cfg.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}
	s.client = paho.NewClient(opts)
	return s, nil
}

func (c Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		data, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt external: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("mqtt external: ca_file %s: no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt external: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (s *Subscriber) onConnect(c paho.Client) {
	t := c.Subscribe(wire.GatewayFilter(), 1, s.handle)
	go func() {
		filter := wire.GatewayFilter()
		if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			s.log.Error("mqtt subscribe failed", "filter", filter, "err", t.Error())
			return
		}
		// 0x80 in the SUBACK: the broker refused the filter (its ACL).
		if q, ok := t.(*paho.SubscribeToken).Result()[filter]; !ok || q > 2 {
			s.log.Error("mqtt subscription refused by the broker: its ACL must let twin-service's user read the filter", "filter", filter, "client_id", s.cfg.ClientID)
			return
		}
		s.connected.Store(true)
		s.log.Info("mqtt subscribed", "broker", s.cfg.URL, "filter", filter, "client_id", s.cfg.ClientID)
		s.sendProbe()
	}()
}

// sendProbe publishes a probe (its payload: the time it was sent).
func (s *Subscriber) sendProbe() {
	now := time.Now().UnixNano()
	s.probe.Store(now)
	s.client.Publish(s.probeTopic, 1, false, strconv.FormatInt(now, 10))
}

// handle is paho's message handler: it answers probes and queues the rest.
func (s *Subscriber) handle(_ paho.Client, m paho.Message) {
	if m.Topic() == s.probeTopic {
		if string(m.Payload()) == strconv.FormatInt(s.probe.Load(), 10) {
			s.flowed.Store(time.Now().UnixNano())
		}
		m.Ack()
		return
	}
	s.flowed.Store(time.Now().UnixNano())
	select {
	case s.queue <- m:
	default:
		s.waits.Add(1)
		s.queue <- m
	}
}

// Ready reports whether the client is connected, its subscription was
// confirmed, and its last probe or a message arrived within 3 probe
// intervals.
func (s *Subscriber) Ready() bool {
	return s.connected.Load() && time.Since(time.Unix(0, s.flowed.Load())) < 3*ProbeInterval
}

// Run connects, consumes until ctx ends and disconnects. Messages still
// queued then stay unacknowledged; the broker keeps them for the session.
func (s *Subscriber) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if s.park != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.retryParked(ctx)
		}()
	}
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
	probes := time.NewTicker(ProbeInterval)
	defer probes.Stop()
	for {
		select {
		case <-probes.C:
			if s.connected.Load() {
				s.sendProbe()
			}
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
			out, err := s.in.Submit(s.src, m.Topic(), m.Payload())
			if err == nil && out.Reason.Retry() {
				s.parkOne(out.Reason, m.Topic(), m.Payload())
			}
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

// ParkRetryInterval is how often parked messages rejected as seq_too_far
// or clock_ahead are submitted again; those of a gateway the registry
// changed are submitted at once (Recheck).
const ParkRetryInterval = time.Minute

func (s *Subscriber) parkOne(reason ingest.Reason, topic string, payload []byte) {
	if s.park != nil {
		s.park.put(reason, topic, payload) // false: dropped and counted
	}
}

// Recheck submits the parked messages of gateway id again soon: the
// registry changed it (enrolled, re-keyed, bound). twin-service calls it
// from the registry's Notify.
func (s *Subscriber) Recheck(id string) {
	if s.park == nil || s.park.gauge.Load() == 0 {
		return
	}
	s.recheckMu.Lock()
	if len(s.rechecks) < 4096 {
		s.rechecks[id] = true
	}
	s.recheckMu.Unlock()
	select {
	case s.recheck <- struct{}{}:
	default:
	}
}

// retryParked resubmits parked messages: a changed gateway's on Recheck,
// the time-bound reasons' every ParkRetryInterval.
func (s *Subscriber) retryParked(ctx context.Context) {
	submit := func(topic string, payload []byte) (ingest.Reason, error) {
		out, err := s.in.Submit(s.src, topic, payload)
		return out.Reason, err
	}
	tick := time.NewTicker(ParkRetryInterval)
	defer tick.Stop()
	for {
		var want func(ingest.Reason, string) bool
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			want = func(r ingest.Reason, _ string) bool {
				return r == ingest.ReasonSeqTooFar || r == ingest.ReasonClockAhead
			}
		case <-s.recheck:
			s.recheckMu.Lock()
			ids := s.rechecks
			s.rechecks = map[string]bool{}
			s.recheckMu.Unlock()
			want = func(_ ingest.Reason, gw string) bool { return ids[gw] }
		}
		if n := s.park.retry(want, submit); n > 0 {
			s.unparked.Add(uint64(n))
			s.log.Info("parked messages resolved", "count", n, "still_parked", s.park.gauge.Load())
		}
	}
}

// ParkStats are the parking folder's counters.
type ParkStats struct {
	Parked   int64  // messages in the folder now
	Resolved uint64 // left the folder: stored or rejected for good
	Dropped  uint64 // not parked: the folder was full or not writable
}

// Parked returns the parking folder's counters.
func (s *Subscriber) Parked() ParkStats {
	if s.park == nil {
		return ParkStats{}
	}
	return ParkStats{Parked: s.park.gauge.Load(), Resolved: s.unparked.Load(), Dropped: s.park.dropped.Load()}
}

// brokerHost is the host:port of a broker URL (tcp://host:port), or the URL.
func brokerHost(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return u
}

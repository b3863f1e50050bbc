// Package natslog is the scale-out candidate of docs/scale-out.md, as far
// as it is measured: an embedded nats-server with JetStream and its MQTT
// listener, where the gateways' QoS 1 PUBLISHes are the durable log.
//
// nats-server (v2.15) acknowledges a QoS 1 PUBLISH only after JetStream has
// stored it in the account's "$MQTT_msgs" stream, under the subject
// "$MQTT.msgs." + the topic with '/' turned into '.'. Start creates that
// stream itself before any MQTT client connects, with limits retention (kept
// by age, not deleted when read), so the stream is the ingest log: every
// message a gateway saw acknowledged is in it, in the gateway's publish order
// (one connection, one subject). Consumers read it through durable JetStream
// consumers, filtered per gateway subject.
//
// Nothing in twin-service imports this package (deps_test.go forbids
// github.com/nats-io there): it exists for the measurements and the tests of
// the design.
package natslog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"twinchain/internal/wire"
)

// Stream is the JetStream stream that nats-server's MQTT listener stores
// QoS 1 messages in; Start creates it as the ingest log.
const Stream = "$MQTT_msgs"

// GatewaySubjects is the filter of every gateway message in Stream.
const GatewaySubjects = "$MQTT.msgs." + wire.TopicRoot + ".v1.gw.>"

// GatewaySubject is the filter of one gateway's messages in Stream.
func GatewaySubject(gw string) string {
	// nats-server maps the MQTT topic level separator '/' to '.', and a '.'
	// inside a level to "//".
	return "$MQTT.msgs." + wire.TopicRoot + ".v1.gw." + strings.ReplaceAll(gw, ".", "//") + ".>"
}

// topicOf is the MQTT topic of a stored message's subject: nats-server
// wrote the topic's '/' as '.' and a '.' inside a level as "//".
func topicOf(subject string) string {
	t := strings.TrimPrefix(subject, "$MQTT.msgs.")
	if rest, ok := strings.CutPrefix(subject, partPrefix); ok { // p.<k>.<topic>
		if _, topic, ok := strings.Cut(rest, "."); ok {
			t = topic
		}
	}
	t = strings.ReplaceAll(t, "//", "\x00")
	t = strings.ReplaceAll(t, ".", "/")
	return strings.ReplaceAll(t, "\x00", ".")
}

// Config says how to run the server.
type Config struct {
	Dir      string // JetStream's store directory
	MQTTAddr string // host:port of the MQTT listener
	// SyncAlways fsyncs every write before JetStream acknowledges it (and so
	// before the PUBACK). Without it nats-server fsyncs every SyncInterval
	// (its default: 2 minutes): an acknowledged message is in the page
	// cache, and on a single node a power loss loses it.
	SyncAlways bool
	// Compress stores the log's blocks S2-compressed.
	Compress bool
	// MaxAge is how long the log keeps a message (0: 24 hours).
	MaxAge time.Duration
	// Name is the server's name (default "twinchain-1"); unique in a cluster.
	Name string
	// Cluster, when set, joins this server to a JetStream cluster; the log
	// then has Replicas replicas (Raft), 3 where unset.
	Cluster  *Cluster
	Replicas int
	// Partitions, when above 0, stores each gateway message under
	// PartitionSubjects(k) for k = a hash of its gateway id mod Partitions
	// (a subject transform of the log stream, nats-server's partition()
	// function), so a durable consumer per partition reads one share of the
	// gateways, each gateway whole and in order.
	Partitions int
}

// Cluster says how a server meets its peers.
type Cluster struct {
	Name   string   // the cluster's name, the same on every server
	Listen string   // host:port for the other servers' routes
	Routes []string // host:port of every server's Listen (its own may be included)
}

// Server is a running embedded nats-server with the ingest log.
type Server struct {
	NS *server.Server
	NC *nats.Conn // in-process client connection
	JS jetstream.JetStream
}

// Start starts the server, waits until it accepts connections, and creates
// the log stream.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	host, port, err := net.SplitHostPort(cfg.MQTTAddr)
	if err != nil {
		return nil, fmt.Errorf("natslog: mqtt address: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("natslog: mqtt port: %w", err)
	}
	name := cfg.Name
	if name == "" {
		name = "twinchain-1"
	}
	opts := &server.Options{
		ServerName: name,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		SyncAlways: cfg.SyncAlways,
		DontListen: true, // the NATS protocol only in process; gateways speak MQTT
		NoLog:      true,
		NoSigs:     true,
	}
	opts.MQTT.Host, opts.MQTT.Port = host, p
	replicas := 1
	if c := cfg.Cluster; c != nil {
		replicas = cmp.Or(cfg.Replicas, 3)
		opts.MQTT.StreamReplicas = replicas
		opts.Cluster.Name = c.Name
		h, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("natslog: cluster address: %w", err)
		}
		if opts.Cluster.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("natslog: cluster port: %w", err)
		}
		opts.Cluster.Host = h
		// nats-server starts its routes only after its client listener
		// (none with DontListen): a clustered server listens on a random
		// loopback port too.
		opts.DontListen, opts.Host, opts.Port = false, "127.0.0.1", server.RANDOM_PORT
		for _, r := range c.Routes {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats", Host: r})
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natslog: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natslog: nats-server not ready within 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("natslog: connect in process: %w", err)
	}
	s := &Server{NS: ns, NC: nc}
	if s.JS, err = jetstream.New(nc); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.Cluster != nil {
		// Every server calls this; the stream is created once the cluster
		// has a JetStream meta leader (the first servers to start wait for
		// their peers).
		if err := s.waitForStream(ctx, streamConfig(replicas, cfg)); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	// The same name, subjects, storage and replicas as nats-server would
	// create, but limits retention: a message stays when it is read, so a
	// consumer that restarts or a new partition owner replays from its
	// durable position.
	if _, err := s.JS.CreateOrUpdateStream(ctx, streamConfig(1, cfg)); err != nil {
		s.Close()
		return nil, fmt.Errorf("natslog: create %s: %w", Stream, err)
	}
	return s, nil
}

func streamConfig(replicas int, cfg Config) jetstream.StreamConfig {
	sc := jetstream.StreamConfig{
		Name: Stream, Subjects: []string{"$MQTT.msgs.>"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, MaxAge: cmp.Or(cfg.MaxAge, 24*time.Hour), Replicas: replicas,
	}
	if cfg.Compress {
		sc.Compression = jetstream.S2Compression
	}
	if n := cfg.Partitions; n > 0 {
		// twinchain/v1/gw/<id>/<kind>: the id is token 1 of the source.
		sc.SubjectTransform = &jetstream.SubjectTransformConfig{
			Source:      "$MQTT.msgs." + wire.TopicRoot + ".v1.gw.*.*",
			Destination: fmt.Sprintf("%s{{partition(%d,1)}}.%s.v1.gw.{{wildcard(1)}}.{{wildcard(2)}}", partPrefix, n, wire.TopicRoot),
		}
	}
	return sc
}

// partPrefix starts the subject of a gateway message in a partitioned log.
const partPrefix = "$MQTT.msgs.p."

// PartitionSubjects is the filter of partition k's messages in a log
// started with Config.Partitions.
func PartitionSubjects(k int) string { return partPrefix + strconv.Itoa(k) + ".>" }

// StartCluster starts len(mqtts) servers in one JetStream cluster named
// "twinchain" on loopback, at the same time (each waits for its peers):
// server i is base with the name twinchain-<i+1>, its store in dir/js<i>,
// its MQTT listener at mqtts[i] and its route listener at routes[i]; the
// log has one replica per server. On an error it closes what it started.
func StartCluster(ctx context.Context, base Config, dir string, routes, mqtts []string) ([]*Server, error) {
	n := len(mqtts)
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := base
		cfg.Dir, cfg.MQTTAddr, cfg.Name = filepath.Join(dir, fmt.Sprint("js", i)), mqtts[i], fmt.Sprint("twinchain-", i+1)
		cfg.Cluster, cfg.Replicas = &Cluster{Name: "twinchain", Listen: routes[i], Routes: routes}, n
		wg.Go(func() { servers[i], errs[i] = Start(ctx, cfg) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range servers {
			if s != nil {
				s.Close()
			}
		}
		return nil, err
	}
	return servers, nil
}

// waitForStream creates the log in a cluster, retrying while the cluster
// has no meta leader yet, until ctx ends.
func (s *Server) waitForStream(ctx context.Context, sc jetstream.StreamConfig) error {
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.JS.CreateOrUpdateStream(c, sc)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natslog: create %s (R%d): %w", Stream, sc.Replicas, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Close closes the client and shuts the server down (its store is left as
// it is, to start again over).
func (s *Server) Close() {
	if s.NC != nil {
		s.NC.Close()
	}
	s.NS.Shutdown()
	s.NS.WaitForShutdown()
}

// Consumer returns the durable consumer name, creating it if needed: it
// reads filter (GatewaySubjects, or a gateway's or a partition's subjects)
// in stream order, and an acknowledgement of a message acknowledges every
// earlier one (the consumer applies in order).
func (s *Server) Consumer(ctx context.Context, name, filter string) (jetstream.Consumer, error) {
	return s.JS.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckAllPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1 << 16,
	})
}

// Message is one stored gateway message as a consumer reads it.
type Message struct {
	StreamSeq uint64 // the log position
	Topic     string // the MQTT topic the gateway published to
	Gateway   string
	Epoch     uint64 // the gateway key's epoch (from the signed envelope)
	Seq       uint64 // the gateway's sequence number
	Kind      wire.Kind
	Data      []byte // the signed envelope as the gateway sent it
}

// Read is the stored gateway message m.
func Read(m jetstream.Msg) (Message, error) {
	md, err := m.Metadata()
	if err != nil {
		return Message{}, err
	}
	env, err := wire.Decode(m.Data())
	if err != nil {
		return Message{}, fmt.Errorf("natslog: stream seq %d: %w", md.Sequence.Stream, err)
	}
	return Message{StreamSeq: md.Sequence.Stream, Topic: topicOf(m.Subject()), Gateway: env.Gateway, Epoch: env.Epoch, Seq: env.Seq, Kind: env.Kind, Data: m.Data()}, nil
}

// Drain reads cons from its position until it has read n messages or ctx
// ends, calls fn for each in order, and acknowledges every batch after fn
// returned for all of it (at-least-once to fn; twinchain's ingest makes it
// exactly-once by the gateway sequence number it stores with the message).
func Drain(ctx context.Context, cons jetstream.Consumer, n int, fn func(Message) error) error {
	for read := 0; read < n; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("natslog: drained %d of %d: %w", read, n, err)
		}
		batch, err := cons.FetchNoWait(min(n-read, 1000))
		if err != nil {
			return err
		}
		var last jetstream.Msg
		got := 0
		for m := range batch.Messages() {
			msg, err := Read(m)
			if err != nil {
				return err
			}
			if err := fn(msg); err != nil {
				return err
			}
			last = m
			got++
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if last != nil {
			// Confirmed by the server: the durable position has moved when
			// Drain returns.
			if err := last.DoubleAck(ctx); err != nil {
				return err
			}
		}
		if got == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
		read += got
	}
	return nil
}

package mqttpub

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"twinchain/internal/edge/diskqueue"
	"twinchain/internal/wire"
)

// Queue is the durable queue the publisher needs.
type Queue interface {
	Append(seq uint64, data []byte) error
	Ack(seq uint64) error
	Contains(seq uint64) bool
	After(seq uint64, max int, dst []diskqueue.Entry) ([]diskqueue.Entry, error)
	Len() int
	Dropped() (uint64, [2]uint64)
}

// Sequencer hands out sequence numbers that never go back.
type Sequencer interface {
	Next() (uint64, error)
}

// Stats counts what the publisher did. Safe to read while it runs.
type Stats struct {
	Queued     atomic.Uint64 // messages sealed and appended
	Sent       atomic.Uint64 // PUBLISH packets written (live and replay)
	Replayed   atomic.Uint64 // of Sent, from the backlog
	Acked      atomic.Uint64
	Connects   atomic.Uint64
	Disconnect atomic.Uint64 // sessions that ended in an error
}

type item struct {
	seq  uint64
	data []byte // kind, 0, envelope
}

// Publisher seals, queues and publishes one gateway's messages.
type Publisher struct {
	cfg     Config
	gw      string
	key     ed25519.PrivateKey
	seq     Sequencer
	q       Queue
	version string
	now     func() time.Time
	log     *slog.Logger

	pubMu    sync.Mutex // sequence numbers go into the queue in order
	live     chan item
	overflow atomic.Bool // a live item did not fit; the replay finds it

	mu       sync.Mutex // inflight and queue acks together
	inflight map[uint64]struct{}

	Stats Stats
}

// New returns a Publisher; it connects when Run is called.
func New(cfg Config, gateway string, key ed25519.PrivateKey, seq Sequencer, q Queue, version string,
	now func() time.Time, log *slog.Logger) *Publisher {
	return &Publisher{cfg: cfg, gw: gateway, key: key, seq: seq, q: q, version: version, now: now, log: log,
		live: make(chan item, 1024), inflight: map[uint64]struct{}{}}
}

// Publish seals body as the gateway's next message of kind k, taken at ts,
// and appends it to the queue; Run sends it. It returns the sequence number.
// Safe for concurrent use.
func (p *Publisher) Publish(k wire.Kind, ts time.Time, body any) (uint64, error) {
	p.pubMu.Lock()
	seq, err := p.seq.Next()
	if err != nil {
		p.pubMu.Unlock()
		return 0, err
	}
	env, err := wire.Seal(p.key, p.gw, seq, ts, k, body)
	if err != nil {
		p.pubMu.Unlock()
		return 0, err
	}
	data := make([]byte, 0, len(k)+1+len(env))
	data = append(append(append(data, k...), 0), env...)
	if err := p.q.Append(seq, data); err != nil {
		p.pubMu.Unlock()
		return 0, fmt.Errorf("queue %s message %d: %w", k, seq, err)
	}
	p.pubMu.Unlock()
	p.Stats.Queued.Add(1)
	p.log.Debug("queued", "seq", seq, "kind", k)
	select {
	case p.live <- item{seq, data}:
	default:
		p.overflow.Store(true)
	}
	return seq, nil
}

// Status is the gateway's current status body.
func (p *Publisher) Status(state, reason string) wire.Status {
	n, r := p.q.Dropped()
	st := wire.Status{State: state, AgentVersion: p.version, QueueDepth: p.q.Len(), Dropped: n, Reason: reason}
	if n > 0 {
		st.DroppedSeqs = []uint64{r[0], r[1]}
	}
	return st
}

// Run connects, publishes and reconnects with backoff until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	backoff := p.cfg.BackoffMin
	wasUp := true
	for ctx.Err() == nil {
		start := time.Now()
		err := p.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 10*time.Second {
			backoff = p.cfg.BackoffMin
		}
		if wasUp || errors.Is(err, errSessionLost) {
			p.log.Warn("mqtt: not connected, retrying with backoff", "broker", p.cfg.Broker, "err", err, "queue", p.q.Len())
		}
		wasUp = false
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		backoff = min(2*backoff, p.cfg.BackoffMax)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

var errSessionLost = errors.New("connection lost")

// pending is a PUBLISH waiting for its PUBACK.
type pending struct {
	seq uint64
	tok paho.Token
}

func (p *Publisher) options(lost chan<- error) (*paho.ClientOptions, error) {
	will, err := wire.Seal(p.key, p.gw, 0, p.now(), wire.KindStatus,
		wire.Status{State: wire.StateOffline, AgentVersion: p.version, Reason: "last will: connection lost"})
	if err != nil {
		return nil, err
	}
	o := paho.NewClientOptions().AddBroker(p.cfg.Broker).SetClientID(p.cfg.ClientID).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(p.cfg.KeepAlive).SetConnectTimeout(p.cfg.ConnectTimeout).SetWriteTimeout(p.cfg.ConnectTimeout).
		SetOrderMatters(false).SetStore(noStore{}).
		SetBinaryWill(wire.Topic(p.gw, wire.KindStatus), will, 1, false).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	// Without a configured password the gateway proves itself with a
	// connect password signed by its key, fresh for each connection
	// (twin-service's embedded broker checks it; a broker that
	// authenticates by client certificate ignores it).
	password := p.cfg.Password
	if password == "" {
		password = wire.ConnectPassword(p.key, p.gw, p.now())
	}
	o.SetUsername(p.cfg.Username).SetPassword(password)
	if u, _ := url.Parse(p.cfg.Broker); u != nil && u.Scheme != "tcp" && u.Scheme != "mqtt" {
		tc, err := p.cfg.tlsConfig(p.key)
		if err != nil {
			return nil, err
		}
		o.SetTLSConfig(tc)
	}
	return o, nil
}

// session runs one connection: connect, send live and backlog, until the
// connection fails or ctx ends.
func (p *Publisher) session(ctx context.Context) error {
	lost := make(chan error, 1)
	opts, err := p.options(lost)
	if err != nil {
		return err
	}
	client := paho.NewClient(opts)
	tok := client.Connect()
	if !tok.WaitTimeout(p.cfg.ConnectTimeout + time.Second) {
		client.Disconnect(0)
		return errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	p.Stats.Connects.Add(1)
	p.log.Info("mqtt connected", "broker", p.cfg.Broker, "client_id", p.cfg.ClientID, "backlog", p.q.Len())

	sctx, cancel := context.WithCancel(ctx)
	acks := make(chan pending, p.cfg.MaxInflight)
	ackErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.collect(sctx, acks, ackErr)
	}()
	defer func() {
		cancel()
		wg.Wait()
		client.Disconnect(250)
		p.mu.Lock()
		clear(p.inflight) // what was in flight stays queued and is replayed
		p.mu.Unlock()
	}()

	// Items queued while disconnected are replayed in order from the queue.
	for len(p.live) > 0 {
		<-p.live
	}
	p.overflow.Store(false)
	if _, err := p.Publish(wire.KindStatus, p.now(), p.Status(wire.StateOnline, "connected")); err != nil {
		p.log.Warn("queue online status", "err", err)
	}

	send := func(it item) error {
		p.mu.Lock()
		if _, busy := p.inflight[it.seq]; busy || !p.q.Contains(it.seq) {
			p.mu.Unlock()
			return nil
		}
		p.inflight[it.seq] = struct{}{}
		p.mu.Unlock()
		i := bytes.IndexByte(it.data, 0)
		if i < 0 {
			return fmt.Errorf("queued message %d has no kind", it.seq)
		}
		t := client.Publish(wire.Topic(p.gw, wire.Kind(it.data[:i])), 1, false, it.data[i+1:])
		p.Stats.Sent.Add(1)
		select {
		case acks <- pending{it.seq, t}:
			return nil
		case err := <-lost:
			return fmt.Errorf("%w: %v", errSessionLost, err)
		case err := <-ackErr:
			return err
		case <-ctx.Done():
			return nil
		}
	}

	bucket := tokenBucket{rate: float64(p.cfg.ReplayRate), burst: max(1, float64(p.cfg.ReplayRate)/20), last: time.Now()}
	var backlog []diskqueue.Entry
	var cursor uint64
	scan := true
	recheck := time.NewTicker(time.Second)
	defer recheck.Stop()
	status := time.NewTicker(p.cfg.StatusInterval)
	defer status.Stop()
	for {
		// Live messages first.
		select {
		case it := <-p.live:
			if err := send(it); err != nil {
				return err
			}
			continue
		default:
		}
		if ctx.Err() != nil {
			p.goodbye(client)
			return nil
		}
		if p.overflow.Swap(false) {
			scan = true
		}
		if len(backlog) == 0 && scan {
			backlog, err = p.q.After(cursor, 256, backlog[:0])
			if err != nil {
				return fmt.Errorf("read backlog: %w", err)
			}
			scan = len(backlog) > 0
		}
		var wake <-chan time.Time
		if len(backlog) > 0 {
			if wait := bucket.take(time.Now()); wait == 0 {
				e := backlog[0]
				backlog = backlog[1:]
				cursor = e.Seq
				before := p.Stats.Sent.Load()
				if err := send(item{e.Seq, e.Data}); err != nil {
					return err
				}
				if p.Stats.Sent.Load() != before {
					p.Stats.Replayed.Add(1)
				} else {
					bucket.refund()
				}
				continue
			} else {
				wake = time.After(wait)
			}
		}
		select {
		case it := <-p.live:
			if err := send(it); err != nil {
				return err
			}
		case <-wake:
		case <-recheck.C:
			scan = true
		case <-status.C:
			if _, err := p.Publish(wire.KindStatus, p.now(), p.Status(wire.StateOnline, "")); err != nil {
				p.log.Warn("queue status", "err", err)
			}
		case err := <-lost:
			p.Stats.Disconnect.Add(1)
			return fmt.Errorf("%w: %v", errSessionLost, err)
		case err := <-ackErr:
			p.Stats.Disconnect.Add(1)
			return err
		case <-ctx.Done():
			p.goodbye(client)
			return nil
		}
	}
}

// goodbye publishes an "offline" status on a clean shutdown (the broker does
// not send the last will then) and waits briefly for it to be acknowledged.
func (p *Publisher) goodbye(client paho.Client) {
	seq, err := p.Publish(wire.KindStatus, p.now(), p.Status(wire.StateOffline, "agent stopped"))
	if err != nil {
		return
	}
	select { // the item just queued is sent here, not by the session loop
	case <-p.live:
	default:
	}
	es, err := p.q.After(seq-1, 1, nil)
	if err != nil || len(es) == 0 || es[0].Seq != seq {
		return
	}
	i := bytes.IndexByte(es[0].Data, 0)
	t := client.Publish(wire.Topic(p.gw, wire.KindStatus), 1, false, es[0].Data[i+1:])
	if t.WaitTimeout(2*time.Second) && t.Error() == nil {
		p.mu.Lock()
		err := p.q.Ack(seq)
		p.mu.Unlock()
		if err != nil {
			p.log.Error("queue ack", "seq", seq, "err", err)
		}
		p.Stats.Acked.Add(1)
	}
}

// collect waits for PUBACKs in publish order and removes acknowledged
// messages from the queue.
func (p *Publisher) collect(ctx context.Context, acks <-chan pending, errc chan<- error) {
	for {
		var pd pending
		select {
		case <-ctx.Done():
			return
		case pd = <-acks:
		}
		select {
		case <-ctx.Done():
			return
		case <-pd.tok.Done():
		}
		if err := pd.tok.Error(); err != nil {
			select {
			case errc <- fmt.Errorf("publish %d: %w", pd.seq, err):
			default:
			}
			return
		}
		p.mu.Lock()
		err := p.q.Ack(pd.seq)
		delete(p.inflight, pd.seq)
		p.mu.Unlock()
		if err != nil {
			p.log.Error("queue ack", "seq", pd.seq, "err", err)
		}
		p.Stats.Acked.Add(1)
	}
}

// tokenBucket bounds the backlog replay rate.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// take takes a token and returns 0, or returns how long until one is there.
func (b *tokenBucket) take(now time.Time) time.Duration {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

func (b *tokenBucket) refund() { b.tokens++ }

// noStore is a paho store that keeps nothing: the disk queue is the store,
// and a new client per connection never resends from paho's memory.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

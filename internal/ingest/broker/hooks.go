package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"twinchain/internal/ingest"
	"twinchain/internal/latency"
)

// ingestHook submits every message under the gateway subtree to the ingest
// before the broker acknowledges it:
//   - stored or duplicate: acknowledged (and routed to subscribers when new);
//   - rejected for a final reason: acknowledged and dropped, so the client
//     does not retry it;
//   - not stored (store failure, shutdown, or a rejection the agent must
//     retry: ingest.Reason.Retry): not acknowledged, and the connection is
//     closed so the client sends it again after reconnecting.
//
// The last will (which mochi does not pass through OnPublish) is submitted
// when it is sent, except when the broker itself is shutting down.
type ingestHook struct {
	mqtt.HookBase
	in        Submitter
	log       *slog.Logger
	now       func() time.Time
	pipelined bool
	window    int
	stopping  atomic.Bool // the broker is closing every connection
	limit     *limiter
	inflight  *inflight
	// answered times gateway messages from their read to the ingest's
	// answer, before the PUBACK is written (Stats.Answer).
	answered latency.Histogram
	// life ends when the broker stops: waits for room in flight end.
	life    context.Context
	endLife context.CancelFunc

	mu    sync.Mutex
	pipes map[*mqtt.Client]*pipe // pipelined: each connection's acknowledgements
	next  int                    // the check worker of the next new connection

	workers   []chan checkJob // pipelined: the check workers (startWorkers)
	workersWG sync.WaitGroup
}

func newIngestHook(in Submitter, log *slog.Logger, limit *limiter, cfg Config) *ingestHook {
	h := &ingestHook{in: in, log: log, limit: limit, pipelined: cfg.Ack == AckPipelined, window: cfg.AckWindow, pipes: map[*mqtt.Client]*pipe{},
		inflight: newInflight(cfg.MaxInflightBytes, cfg.MaxInflightBytesTotal)}
	h.life, h.endLife = context.WithCancel(context.Background())
	return h
}

func (h *ingestHook) ID() string { return "twinchain-ingest" }

func (h *ingestHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnWillSent || b == mqtt.OnDisconnect || b == mqtt.OnPacketProcessed
}

// claim takes the room the listener reserved for cl's PUBLISH before
// reading it (conn.admit): the hook gives it back (inflight.give) when the
// ingest has answered. Every gateway connection comes through the
// listener; only the service's own inline client has none, and it
// publishes no gateway messages.
func claim(cl *mqtt.Client) room {
	c, ok := cl.Net.Conn.(*conn)
	if !ok {
		return room{}
	}
	return room{budget: c.budget, n: c.claim()}
}

// OnPacketProcessed gives back the room reserved for a PUBLISH that mochi
// handled without OnPublish (not allowed, an invalid topic) or that was
// not the ingest's: nothing claimed it.
func (h *ingestHook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	if c, ok := cl.Net.Conn.(*conn); ok && pk.FixedHeader.Type == packets.Publish {
		c.unclaimed()
	}
}

func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !strings.HasPrefix(pk.TopicName, gatewayPrefix) {
		return pk, nil
	}
	r := claim(cl)
	read := time.Now()
	if h.pipelined && pk.FixedHeader.Qos == 1 && !cl.Net.Inline {
		return h.publishPipelined(cl, pk, r, read)
	}
	out, err := h.in.Submit(source(cl), pk.TopicName, pk.Payload)
	h.answered.Observe(time.Since(read))
	h.inflight.give(r)
	if err == nil && !out.Ack() {
		err = retryError(out)
	}
	if err != nil {
		h.storeFailed(cl.ID, err)
		cl.Stop(err)
		return pk, packets.ErrRejectPacket
	}
	if !out.Accepted() {
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

func (h *ingestHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if !strings.HasPrefix(pk.TopicName, gatewayPrefix) {
		return
	}
	if h.stopping.Load() {
		return // twin-service is stopping, not the gateway: it is not offline
	}
	if _, err := h.in.Submit(source(cl), pk.TopicName, bytes.Clone(pk.Payload)); err != nil {
		h.storeFailed(cl.ID, err)
	}
}

// source is the ingest's name for a client: its id, which the broker binds
// to its credential, and its remote address.
func source(cl *mqtt.Client) ingest.Source {
	return ingest.Source{Client: cl.ID, Remote: cl.Net.Remote}
}

// errRetry marks a message rejected for a reason the agent must retry.
var errRetry = errors.New("rejected for the agent to send again")

// retryError is why a message the agent must keep was not acknowledged.
func retryError(out ingest.Outcome) error {
	return fmt.Errorf("%w: %s: %v", errRetry, out.Reason, out.Err)
}

// storeFailed logs that a message was not stored.
func (h *ingestHook) storeFailed(client string, err error) {
	level := slog.LevelError
	switch {
	case errors.Is(err, ingest.ErrClosed):
		level = slog.LevelInfo
	case errors.Is(err, errRetry):
		level = slog.LevelWarn
	}
	h.logLimited(level, "message not stored, not acknowledged; disconnecting client", "client", client, "err", err)
}

// logLimited logs at most one line a second: a full disk fails every
// message, a broken network every acknowledgement.
func (h *ingestHook) logLimited(level slog.Level, msg string, args ...any) {
	h.limit.log(h.log, level, msg, args...)
}

// limiter lets through one log line a second.
type limiter struct {
	now  func() time.Time
	mu   sync.Mutex
	last time.Time
}

func (l *limiter) log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	l.mu.Lock()
	now := l.now()
	ok := now.Sub(l.last) >= time.Second
	if ok {
		l.last = now
	}
	l.mu.Unlock()
	if ok {
		log.Log(context.Background(), level, msg, args...)
	}
}

// pipe carries one connection's acknowledgements in pipelined mode: at most
// cap(slots) messages are between the read and their PUBACK (their bytes
// are the listener's to bound: conn.admit), and acks never blocks the
// ingest's writer (it has room for all of them). life ends when the
// connection does (OnDisconnect): what waits for room stops waiting.
type pipe struct {
	slots chan struct{}
	check chan<- checkJob // the worker that checks this connection's messages, in order
	life  context.Context
	end   context.CancelFunc

	// acks are the answers not yet written, in order; writing is set while
	// a writeAcks goroutine writes them. A slice that grows as needed, not a
	// channel of the window's size (12,500 connections x 256 x 24 bytes
	// would be 77 MB held for nothing), and a goroutine only while there is
	// something to write, not one per connection (its stack, ~8 KB, for
	// each of 12,500 mostly idle connections).
	mu      sync.Mutex
	acks    []pipedAck
	writing bool
}

// checkJob is one message for a check worker to hand to the ingest.
type checkJob struct {
	src     ingest.Source
	topic   string
	payload []byte
	done    func(ingest.Outcome, error)
}

// checkWorker hands its connections' messages to the ingest, in order,
// until the broker stops (then what is queued, and returns). The ingest's check (JSON decoding, Ed25519) runs
// here, not on the connections' read goroutines: its deep stack would
// grow each of those to ~32 KB and keep it (16 KB more per connection
// measured with 10-sample messages: ~200 MB with 12,500 gateways).
func (h *ingestHook) checkWorker(jobs <-chan checkJob) {
	for {
		select {
		case j := <-jobs:
			h.in.SubmitAsync(j.src, j.topic, j.payload, j.done)
		case <-h.life.Done():
			for {
				select {
				case j := <-jobs:
					h.in.SubmitAsync(j.src, j.topic, j.payload, j.done)
				default:
					return
				}
			}
		}
	}
}

// startWorkers starts the check workers (Broker.Run); they end when the
// broker stops (endLife), and stopWorkers waits for them. A message a
// connection still queues then is not answered: its connection is closed.
func (h *ingestHook) startWorkers(n int) {
	h.workers = make([]chan checkJob, n)
	for i := range h.workers {
		h.workers[i] = make(chan checkJob, 64)
		h.workersWG.Add(1)
		go func() {
			defer h.workersWG.Done()
			h.checkWorker(h.workers[i])
		}()
	}
}

func (h *ingestHook) stopWorkers() {
	h.endLife()
	h.workersWG.Wait()
}

type pipedAck struct {
	id  uint16
	err error
}

func (h *ingestHook) pipeOf(cl *mqtt.Client) *pipe {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pipes[cl]
	if p == nil {
		p = &pipe{slots: make(chan struct{}, h.window), check: h.workers[h.next%len(h.workers)]}
		h.next++
		p.life, p.end = context.WithCancel(h.life)
		h.pipes[cl] = p
	}
	return p
}

// publishPipelined hands the message to the ingest and returns at once; the
// broker does not acknowledge it (ErrRejectPacket): ackLoop writes the
// PUBACK after the message is stored or rejected, or closes the connection
// if it could not be stored. Its bytes are in flight already (r: the
// listener reserved them before reading it). A full window blocks this
// connection only (its socket is not read meanwhile), before the ingest
// decodes the message.
func (h *ingestHook) publishPipelined(cl *mqtt.Client, pk packets.Packet, r room, read time.Time) (packets.Packet, error) {
	p := h.pipeOf(cl)
	select {
	case p.slots <- struct{}{}:
	case <-p.life.Done():
		h.inflight.give(r)
		return pk, packets.ErrRejectPacket
	}
	id := pk.PacketID
	job := checkJob{src: source(cl), topic: pk.TopicName, payload: pk.Payload, done: func(out ingest.Outcome, err error) {
		h.answered.Observe(time.Since(read))
		h.inflight.give(r) // the ingest holds the message no more
		if err == nil && !out.Ack() {
			err = retryError(out)
		}
		h.answer(cl, p, pipedAck{id: id, err: err})
	}}
	select {
	case p.check <- job:
	case <-p.life.Done():
		h.inflight.give(r)
		<-p.slots
	}
	return pk, packets.ErrRejectPacket
}

// answer queues one PUBACK (or a failure) and starts a writeAcks
// goroutine unless one is running; it never blocks (the ingest's writer
// calls it).
func (h *ingestHook) answer(cl *mqtt.Client, p *pipe, a pipedAck) {
	p.mu.Lock()
	p.acks = append(p.acks, a)
	start := !p.writing
	p.writing = true
	p.mu.Unlock()
	if start {
		go h.writeAcks(cl, p)
	}
}

// writeAcks writes the queued answers in order until none is left. A
// write to a closed connection fails at once, so it ends then too.
func (h *ingestHook) writeAcks(cl *mqtt.Client, p *pipe) {
	var acks []pipedAck
	for {
		p.mu.Lock()
		if len(p.acks) == 0 {
			p.writing = false
			p.mu.Unlock()
			return
		}
		acks, p.acks = p.acks, acks[:0]
		p.mu.Unlock()
		for _, a := range acks {
			if a.err != nil {
				h.storeFailed(cl.ID, a.err)
				cl.Stop(a.err)
			} else if err := cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: a.id}); err != nil &&
				!errors.Is(err, mqtt.ErrConnectionClosed) {
				// The message is stored: the client sends it again after it
				// reconnects and gets the duplicate acknowledged. A failed write
				// may have left part of a packet on the connection: close it.
				h.logLimited(slog.LevelWarn, "message stored, acknowledgement not sent; disconnecting client", "client", cl.ID, "err", err)
				cl.Stop(err)
			}
			<-p.slots
		}
		clear(acks)
	}
}

func (h *ingestHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.mu.Lock()
	p := h.pipes[cl]
	delete(h.pipes, cl)
	h.mu.Unlock()
	if p != nil {
		p.end()
	}
}

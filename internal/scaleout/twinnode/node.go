// Package twinnode is a twin-service node of the scale-out design
// (docs/scale-out.md, issue 17 item 2) on NATS JetStream: nodes share the
// partitions of the gateway log (natslog with Config.Partitions) by
// rendezvous hashing over the live nodes, each partition read through one
// durable consumer into the node's own ingest and store, and every node
// folds the changes of all partitions into one read model (Model).
//
// Exactly once: a node's store drops a message it already holds by (gateway,
// epoch, seq), as ingest does for MQTT. A node publishes each message it
// applied (or found it had applied) to the changes stream with the message
// id gateway/epoch/seq before it acknowledges the log; when it dies between the two, the partition's new
// owner applies the message again in its own store and JetStream drops the
// second change as a duplicate (within ChangesDedupe). The read model folds
// the changes stream, so it sees each message once.
//
// Nothing in twin-service imports this package yet (deps_test.go): the
// single node stays on the embedded mochi broker until the switch.
package twinnode

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"twinchain/internal/ingest"
	"twinchain/internal/scaleout/natslog"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

const (
	// ChangesStream holds every applied message's change, subject
	// ChangesSubject(k) for partition k.
	ChangesStream = "TWIN_CHANGES"
	// ChangesDedupe is how long JetStream remembers a change's id: a
	// partition must have a new owner within it.
	ChangesDedupe = 10 * time.Minute
	// NodesBucket is the KV bucket of node heartbeats.
	NodesBucket = "twin_nodes"
)

// ChangesSubject is the subject of partition k's changes.
func ChangesSubject(k int) string { return "twin.changes." + strconv.Itoa(k) }

// Setup creates the changes stream and the heartbeat bucket (every node may
// call it; it is idempotent) with replicas copies; a node is live while its
// heartbeat is younger than lease.
func Setup(ctx context.Context, js jetstream.JetStream, replicas int, lease time.Duration) error {
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: ChangesStream, Subjects: []string{"twin.changes.>"}, Storage: jetstream.FileStorage,
		Duplicates: ChangesDedupe, Replicas: replicas,
	}); err != nil {
		return fmt.Errorf("twinnode: create %s: %w", ChangesStream, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: NodesBucket, TTL: lease, Replicas: replicas, Storage: jetstream.MemoryStorage}); err != nil {
		return fmt.Errorf("twinnode: create %s: %w", NodesBucket, err)
	}
	return nil
}

// Config says what a node is.
type Config struct {
	ID         string        // unique among the nodes
	Dir        string        // the node's own data directory (twins.db)
	Partitions int           // the log's partition count (natslog.Config.Partitions)
	Lease      time.Duration // as given to Setup (default 3s)
	Batch      int           // messages per fetch (default 500)
}

// Node is one twin-service node. Open it, then Run it.
type Node struct {
	cfg   Config
	js    jetstream.JetStream
	store *twinstore.Store
	in    *ingest.Ingest
	log   *slog.Logger
	Model *Model

	mu    sync.Mutex
	owned map[int]func() // partition -> stop its worker and wait
}

// Open opens the node's store and ingest over js; gws verifies the
// gateways' messages.
func Open(cfg Config, js jetstream.JetStream, gws ingest.Gateways, log *slog.Logger) (*Node, error) {
	if cfg.ID == "" || cfg.Partitions < 1 {
		return nil, fmt.Errorf("twinnode: id %q, %d partitions: want an id and at least one partition", cfg.ID, cfg.Partitions)
	}
	cfg.Lease = cmp.Or(cfg.Lease, 3*time.Second)
	cfg.Batch = cmp.Or(cfg.Batch, 500)
	store, err := twinstore.Open(filepath.Join(cfg.Dir, "twins.db"), twinstore.Options{})
	if err != nil {
		return nil, err
	}
	in, err := ingest.New(ingest.Config{}, store, gws, log.With("component", "ingest"), nil)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	return &Node{cfg: cfg, js: js, store: store, in: in, log: log, Model: NewModel(), owned: map[int]func(){}}, nil
}

// Store is the node's store.
func (n *Node) Store() *twinstore.Store { return n.store }

// Owned is the partitions the node reads now, in order.
func (n *Node) Owned() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	ks := make([]int, 0, len(n.owned))
	for k := range n.owned {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Run runs ingest, the heartbeat and the partition workers, and folds the
// read model, until ctx ends; then it closes the store.
func (n *Node) Run(ctx context.Context) error {
	defer n.store.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() { errc <- n.in.Run(ctx); cancel() }) // a node without its store stops
	wg.Go(func() {
		errc <- n.Model.Fold(ctx, n.js, n.log.With("component", "model"))
	})
	err := n.own(ctx)
	cancel()
	n.mu.Lock()
	for k, stop := range n.owned {
		stop()
		delete(n.owned, k)
	}
	n.mu.Unlock()
	wg.Wait()
	close(errc)
	for e := range errc {
		if e != nil && !errors.Is(e, context.Canceled) && err == nil {
			err = e
		}
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// own heartbeats and keeps the owned partitions those that rendezvous
// hashing gives this node among the live ones, until ctx ends.
func (n *Node) own(ctx context.Context) error {
	kv, err := n.js.KeyValue(ctx, NodesBucket)
	if err != nil {
		return fmt.Errorf("twinnode: %s: %w", NodesBucket, err)
	}
	tick := time.NewTicker(n.cfg.Lease / 3)
	defer tick.Stop()
	for {
		if _, err := kv.Put(ctx, n.cfg.ID, nil); err != nil && ctx.Err() == nil {
			n.log.Warn("heartbeat", "err", err)
		}
		if live, err := kv.Keys(ctx); err == nil {
			n.assign(ctx, live)
		} else if ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
			n.log.Warn("list nodes", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Owner is the node among live that owns partition k: the highest
// rendezvous hash of (node, k).
func Owner(k int, live []string) string {
	best, bestH := "", uint64(0)
	for _, id := range live {
		sum := sha256.Sum256([]byte(id + "/" + strconv.Itoa(k)))
		if v := binary.BigEndian.Uint64(sum[:]); best == "" || v > bestH || (v == bestH && id < best) {
			best, bestH = id, v
		}
	}
	return best
}

func (n *Node) assign(ctx context.Context, live []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k := range n.cfg.Partitions {
		mine := Owner(k, live) == n.cfg.ID
		stop, running := n.owned[k]
		switch {
		case mine && !running:
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for wctx.Err() == nil {
					if err := n.work(wctx, k); err != nil && wctx.Err() == nil {
						n.log.Warn("partition worker", "partition", k, "err", err)
						time.Sleep(time.Second)
					}
				}
			}()
			n.owned[k] = func() { cancel(); <-done }
			n.log.Info("took partition", "partition", k)
		case !mine && running:
			stop()
			delete(n.owned, k)
			n.log.Info("gave partition up", "partition", k)
		}
	}
}

// takeover makes partition k's durable consumer deliver from its ack
// floor: the previous owner's unacknowledged deliveries are forgotten, so
// nothing after them is delivered first and no later acknowledgement (ack
// all) covers them.
func (n *Node) takeover(ctx context.Context, k int) (jetstream.Consumer, error) {
	name := "twin-p" + strconv.Itoa(k)
	cc := jetstream.ConsumerConfig{
		Durable: name, FilterSubject: natslog.PartitionSubjects(k), AckPolicy: jetstream.AckAllPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1 << 16, AckWait: time.Minute,
	}
	if c, err := n.js.Consumer(ctx, natslog.Stream, name); err == nil {
		info, err := c.Info(ctx)
		if err != nil {
			return nil, err
		}
		if err := n.js.DeleteConsumer(ctx, natslog.Stream, name); err != nil {
			return nil, err
		}
		if f := info.AckFloor.Stream; f > 0 {
			cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f+1
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	return n.js.CreateConsumer(ctx, natslog.Stream, cc)
}

// work reads partition k until ctx ends or a step fails: each batch goes
// through ingest (one group commit), its changes are published and
// confirmed, and only then is the batch acknowledged.
func (n *Node) work(ctx context.Context, k int) error {
	cons, err := n.takeover(ctx, k)
	if err != nil {
		return err
	}
	src := ingest.Source{Client: "nats-p" + strconv.Itoa(k)}
	subject := ChangesSubject(k)
	type result struct {
		out ingest.Outcome
		err error
	}
	var msgs []natslog.Message
	var results []result
	for ctx.Err() == nil {
		batch, err := cons.Fetch(n.cfg.Batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		msgs = msgs[:0]
		var last jetstream.Msg
		for m := range batch.Messages() {
			msg, err := natslog.Read(m)
			if err != nil {
				n.log.Warn("unreadable log entry", "err", err) // acknowledged with the batch, counted nowhere else
			} else {
				msgs = append(msgs, msg)
			}
			last = m
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if last == nil {
			continue
		}
		results = slices.Grow(results[:0], len(msgs))[:len(msgs)]
		var wg sync.WaitGroup
		wg.Add(len(msgs))
		for i, m := range msgs {
			n.in.SubmitAsync(src, m.Topic, m.Data, func(out ingest.Outcome, err error) {
				results[i] = result{out, err}
				wg.Done()
			})
		}
		wg.Wait()
		var acks []jetstream.PubAckFuture
		for i, m := range msgs {
			r := results[i]
			if r.err != nil {
				return r.err // not stored: not acknowledged, read again
			}
			// A duplicate is published again: this node may have stored it
			// as an earlier owner of the partition and lost it before
			// publishing; JetStream drops the change if it is there.
			if !r.out.Accepted() && r.out.Reason != ingest.ReasonDuplicate {
				continue // rejected for good (counted by ingest)
			}
			data, err := changeOf(n.cfg.ID, k, m)
			if err != nil {
				return err
			}
			f, err := n.js.PublishAsync(subject, data, jetstream.WithMsgID(m.Gateway+"/"+strconv.FormatUint(m.Epoch, 10)+"/"+strconv.FormatUint(m.Seq, 10)))
			if err != nil {
				return err
			}
			acks = append(acks, f)
		}
		for _, f := range acks {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("twinnode: publish change: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := last.DoubleAck(ctx); err != nil {
			return err
		}
		n.log.Debug("applied", "partition", k, "read", len(msgs), "changes", len(acks))
	}
	return nil
}

// Close is for a node that was opened and never run.
func (n *Node) Close() error { return n.store.Close() }

// identity is the GPU UUIDs of a firmware (inventory) message (nil for any other
// kind: telemetry is not decoded twice).
func identity(m natslog.Message) ([]string, error) {
	if m.Kind != wire.KindFirmware {
		return nil, nil
	}
	env, err := wire.Decode(m.Data)
	if err != nil {
		return nil, err
	}
	inv, err := wire.DecodeBody[wire.Inventory](&env)
	if err != nil {
		return nil, err
	}
	uuids := make([]string, 0, len(inv.GPUs))
	for _, g := range inv.GPUs {
		uuids = append(uuids, g.UUID)
	}
	return uuids, nil
}

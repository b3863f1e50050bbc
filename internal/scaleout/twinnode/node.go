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
	"strings"
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
	// ChangesSubject(k) for partition k, and the declared shipments
	// (ShipmentsSubject).
	ChangesStream = "TWIN_CHANGES"
	// ChangesDedupe is how long JetStream remembers a change's id: a
	// partition must have a new owner within it.
	ChangesDedupe = 10 * time.Minute
	// NodesBucket is the KV bucket of node heartbeats.
	NodesBucket = "twin_nodes"
	// LeasesBucket is the KV bucket of partition leases: key p<k> holds
	// the id of the one node that may read partition k.
	LeasesBucket = "twin_leases"
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
	for _, b := range []string{NodesBucket, LeasesBucket} {
		if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b, TTL: lease, Replicas: replicas, Storage: jetstream.MemoryStorage}); err != nil {
			return fmt.Errorf("twinnode: create %s: %w", b, err)
		}
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
	// Places says where each gateway stands, for the read model's
	// impossible-travel check; TravelSpeedMS is the fastest believable
	// travel between sites (default DefaultTravelSpeedMS).
	Places        map[string]Place
	TravelSpeedMS float64
	// Anchoring, when set, anchors the node's events into the one ledger
	// on the node's own chain.
	Anchoring *Anchoring
}

// Node is one twin-service node. Open it, then Run it.
type Node struct {
	cfg   Config
	js    jetstream.JetStream
	store *twinstore.Store
	in    *ingest.Ingest
	log   *slog.Logger
	anc   *anchoring // nil: the node does not anchor
	Model *Model

	mu    sync.Mutex
	owned map[int]*claim // partition -> its lease and worker
}

// claim is a partition this node holds the lease of and reads.
type claim struct {
	lease *lease
	stop  func() // stops the worker and waits for it
}

// lease is a node's hold on a partition: the revision of its key in
// LeasesBucket and until when the hold is sure. The bucket drops the key
// Config.Lease after the write that set it; until is that long after the
// write was sent, less a margin, so it ends before any other node can take
// the key.
type lease struct {
	mu    sync.Mutex
	rev   uint64
	until time.Time
}

func (l *lease) set(rev uint64, sent time.Time, ttl time.Duration) {
	l.mu.Lock()
	l.rev, l.until = rev, sent.Add(ttl-ttl/4)
	l.mu.Unlock()
}

func (l *lease) revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// valid reports whether the hold is sure now.
func (l *lease) valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.until)
}

// errLeaseExpired stops a worker whose lease was not renewed in time: it
// waits, without publishing or acknowledging, until the lease is renewed
// or the partition is taken from it.
var errLeaseExpired = errors.New("twinnode: partition lease expired")

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
	n := &Node{cfg: cfg, js: js, store: store, in: in, log: log, Model: NewModel(cfg.Places, cfg.TravelSpeedMS), owned: map[int]*claim{}}
	if cfg.Anchoring != nil {
		if n.anc, err = n.openAnchoring(cfg.Anchoring, cfg.Dir); err != nil {
			_ = store.Close() // the anchoring's error says more
			return nil, err
		}
	}
	return n, nil
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

// Run runs ingest, the heartbeat and the partition workers, anchoring if
// the node anchors, and folds the read model, until ctx ends; then it
// closes the store (and the event tree and anchor queue).
func (n *Node) Run(ctx context.Context) error {
	defer func() { _ = n.Close() }() // the store has committed each batch
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() { errc <- n.in.Run(ctx); cancel() }) // a node without its store stops
	wg.Go(func() {
		errc <- n.Model.Fold(ctx, n.js, n.log.With("component", "model"))
	})
	if n.anc != nil {
		// Anchoring ends only with ctx or on tampered data; the node
		// goes on ingesting either way (the event log keeps the events).
		wg.Go(func() {
			err := n.anc.anchorer.Run(ctx)
			if err != nil {
				n.log.Error("anchoring stopped", "err", err)
			}
			errc <- err
		})
	}
	err := n.own(ctx)
	cancel()
	n.release()
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

// release stops every worker and hands its partition over (deletes the
// lease), so the next owner need not wait for it to expire.
func (n *Node) release() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.owned {
		c.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Lease)
	defer cancel()
	leases, err := n.js.KeyValue(ctx, LeasesBucket)
	for k, c := range n.owned {
		delete(n.owned, k)
		if err == nil {
			_ = leases.Delete(ctx, leaseKey(k), jetstream.LastRevision(c.lease.revision())) // or it expires
		}
	}
}

func leaseKey(k int) string { return "p" + strconv.Itoa(k) }

// own heartbeats and keeps the owned partitions those that rendezvous
// hashing gives this node among the live ones, until ctx ends.
func (n *Node) own(ctx context.Context) error {
	kv, err := n.js.KeyValue(ctx, NodesBucket)
	if err != nil {
		return fmt.Errorf("twinnode: %s: %w", NodesBucket, err)
	}
	leases, err := n.js.KeyValue(ctx, LeasesBucket)
	if err != nil {
		return fmt.Errorf("twinnode: %s: %w", LeasesBucket, err)
	}
	tick := time.NewTicker(n.cfg.Lease / 3)
	defer tick.Stop()
	for {
		n.round(ctx, kv, leases)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// round heartbeats, lists the live nodes and assigns the partitions, all
// within half a lease: a cluster that does not answer (a server lost, a
// leader being elected) must not hold the loop, or every lease this node
// holds would expire unrenewed.
func (n *Node) round(ctx context.Context, kv, leases jetstream.KeyValue) {
	op, cancel := context.WithTimeout(ctx, n.cfg.Lease/2)
	defer cancel()
	if _, err := kv.Put(op, n.cfg.ID, nil); err != nil && ctx.Err() == nil {
		n.log.Warn("heartbeat", "err", err)
	}
	live, err := liveNodes(op, kv)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("list nodes", "err", err)
		}
		return
	}
	n.assign(ctx, op, leases, live)
}

// liveNodes is the keys of the heartbeat bucket, or an error if ctx ends
// before the list is whole (kv.Keys waits for the whole list whatever ctx
// says).
func liveNodes(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	l, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Stop() }()
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("twinnode: list %s: %w", NodesBucket, err)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
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

// assign takes the lease of each partition rendezvous hashing gives this
// node (once its previous holder has handed it over or its lease has
// expired), renews the leases it holds, and hands over the partitions it
// no longer owns: at most one node reads a partition at a time.
// The workers run until ctx ends; the lease operations until op ends.
func (n *Node) assign(ctx, op context.Context, leases jetstream.KeyValue, live []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k := range n.cfg.Partitions {
		mine := Owner(k, live) == n.cfg.ID
		c, running := n.owned[k]
		sent := time.Now()
		switch {
		case mine && !running:
			rev, err := leases.Create(op, leaseKey(k), []byte(n.cfg.ID))
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, jetstream.ErrKeyExists) {
					n.log.Warn("take partition lease", "partition", k, "err", err)
				}
				continue // held: its holder hands it over or lets it expire
			}
			l := &lease{}
			l.set(rev, sent, n.cfg.Lease)
			n.owned[k] = &claim{lease: l, stop: n.start(ctx, k, l)}
			n.log.Info("took partition", "partition", k, "lease", rev)
		case mine && running:
			rev, err := leases.Update(op, leaseKey(k), []byte(n.cfg.ID), c.lease.revision())
			switch {
			case err == nil:
				c.lease.set(rev, sent, n.cfg.Lease)
			case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
				// Expired (and maybe taken): the worker has paused since
				// the lease's end; it stops, and the next round takes
				// the lease again if it is free.
				c.stop()
				delete(n.owned, k)
				n.log.Warn("lost partition lease", "partition", k, "err", err)
			case ctx.Err() == nil:
				n.log.Warn("renew partition lease", "partition", k, "err", err) // the worker pauses when it ends
			}
		case !mine && running:
			c.stop()
			delete(n.owned, k)
			if err := leases.Delete(op, leaseKey(k), jetstream.LastRevision(c.lease.revision())); err != nil && ctx.Err() == nil {
				n.log.Warn("hand partition over", "partition", k, "err", err) // it expires
			}
			n.log.Info("gave partition up", "partition", k)
		}
	}
}

// start runs partition k's worker while l is valid, until ctx ends or the
// returned stop is called (which waits for it).
func (n *Node) start(ctx context.Context, k int, l *lease) func() {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wctx.Err() == nil {
			err := errLeaseExpired
			if l.valid() {
				err = n.work(wctx, k, l)
			}
			if err == nil || wctx.Err() != nil {
				continue
			}
			if errors.Is(err, errLeaseExpired) {
				n.log.Debug("partition lease expired: paused", "partition", k)
			} else {
				n.log.Warn("partition worker", "partition", k, "err", err)
			}
			select {
			case <-wctx.Done():
			case <-time.After(n.cfg.Lease / 6):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// consumerPrefix starts the names of partition k's durable consumers: each
// holder of the lease reads through a consumer of its own, so an
// acknowledgement or a pull request of an earlier holder (ack all by
// consumer name) never moves or drains the current one.
func consumerPrefix(k int) string { return "twin-p" + strconv.Itoa(k) + "-" }

// takeover deletes partition k's earlier consumers and creates this
// holder's, delivering from the highest of their ack floors: nothing after
// an earlier holder's unacknowledged deliveries is skipped, and they are
// read again (applied again in this node's store if it is new to them;
// their changes are dropped as duplicates).
func (n *Node) takeover(ctx context.Context, k int) (jetstream.Consumer, error) {
	st, err := n.js.Stream(ctx, natslog.Stream)
	if err != nil {
		return nil, err
	}
	var floor uint64
	names := st.ConsumerNames(ctx)
	var earlier []string
	for name := range names.Name() {
		if strings.HasPrefix(name, consumerPrefix(k)) {
			earlier = append(earlier, name)
		}
	}
	if err := names.Err(); err != nil {
		return nil, err
	}
	for _, name := range earlier {
		c, err := st.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		// A consumer that acknowledged nothing may report an ack floor
		// of 0 (a replicated one after a leader change): it started
		// after its predecessor's floor.
		info := c.CachedInfo()
		floor = max(floor, info.AckFloor.Stream, info.Config.OptStartSeq-min(info.Config.OptStartSeq, 1))
		if err := st.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable:       consumerPrefix(k) + strconv.FormatInt(time.Now().UnixNano(), 36),
		Description:   "partition " + strconv.Itoa(k) + " read by " + n.cfg.ID,
		FilterSubject: natslog.PartitionSubjects(k), AckPolicy: jetstream.AckAllPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1 << 16, AckWait: time.Minute,
	}
	if floor > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
	}
	n.log.Debug("partition consumer", "partition", k, "name", cc.Durable, "from", floor+1, "earlier", len(earlier))
	return st.CreateConsumer(ctx, cc)
}

// work reads partition k until ctx ends or a step fails: each batch goes
// through ingest (one group commit), its changes are published and
// confirmed, and only then is the batch acknowledged; nothing is published
// or acknowledged once l has expired.
func (n *Node) work(ctx context.Context, k int, l *lease) error {
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
	var delivered uint64 // the consumer's last delivery sequence received
	for ctx.Err() == nil {
		batch, err := cons.Fetch(n.cfg.Batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		msgs = msgs[:0]
		var last jetstream.Msg
		var gap error
		for m := range batch.Messages() {
			// A delivery this worker did not receive (a pull that ended
			// on the client side as the server sent into it) would be
			// covered by the next ack-all: read again from the ack floor.
			if meta, err := m.Metadata(); err == nil && gap == nil {
				if meta.Sequence.Consumer != delivered+1 {
					gap = fmt.Errorf("twinnode: partition %d: delivery %d after %d: read again from the ack floor", k, meta.Sequence.Consumer, delivered)
				}
				delivered = meta.Sequence.Consumer
			}
			msg, err := natslog.Read(m)
			if err != nil {
				n.log.Warn("unreadable log entry", "err", err) // acknowledged with the batch, counted nowhere else
			} else {
				msgs = append(msgs, msg)
			}
			last = m
		}
		if gap != nil {
			return gap
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
		if !l.valid() {
			return errLeaseExpired
		}
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
		if !l.valid() {
			return errLeaseExpired
		}
		if err := last.DoubleAck(ctx); err != nil {
			return err
		}
		n.log.Debug("applied", "partition", k, "read", len(msgs), "changes", len(acks))
	}
	return nil
}

// Close closes what Open opened, for a node that was opened and never run
// (Run closes it when it ends).
func (n *Node) Close() error {
	var err error
	if n.anc != nil {
		err = n.anc.close()
	}
	return errors.Join(err, n.store.Close())
}

// identity is the GPU UUIDs and the reading time of a firmware (inventory)
// message (nothing for any other kind: telemetry is not decoded twice).
func identity(m natslog.Message) ([]string, time.Time, error) {
	if m.Kind != wire.KindFirmware {
		return nil, time.Time{}, nil
	}
	env, err := wire.Decode(m.Data)
	if err != nil {
		return nil, time.Time{}, err
	}
	inv, err := wire.DecodeBody[wire.Inventory](&env)
	if err != nil {
		return nil, time.Time{}, err
	}
	uuids := make([]string, 0, len(inv.GPUs))
	for _, g := range inv.GPUs {
		uuids = append(uuids, g.UUID)
	}
	return uuids, env.Time, nil
}

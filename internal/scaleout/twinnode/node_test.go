package twinnode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"twinchain/internal/registry"
	"twinchain/internal/scaleout/natslog"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/sim/load"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

const partitions = 6

// logOut is where the nodes log: TWINCHAIN_SCALEOUT_LOG=1 to watch them.
var logOut io.Writer = io.Discard

func init() {
	if os.Getenv("TWINCHAIN_SCALEOUT_LOG") != "" {
		logOut = os.Stderr
	}
}

// cluster is a 3-server JetStream cluster with a partitioned log.
type cluster struct {
	servers []*natslog.Server
	mqtts   []string
	urls    string // the servers' NATS client URLs
}

func startCluster(ctx context.Context, t testing.TB, lease time.Duration) *cluster {
	t.Helper()
	c := &cluster{}
	routes := make([]string, 3)
	c.mqtts = make([]string, 3)
	for i := range routes {
		routes[i], c.mqtts[i] = testsvc.Addr(testsvc.FreePort(t)), testsvc.Addr(testsvc.FreePort(t))
	}
	var err error
	c.servers, err = natslog.StartCluster(ctx, natslog.Config{SyncAlways: true, Partitions: partitions}, t.TempDir(), routes, c.mqtts)
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, s := range c.servers {
		t.Cleanup(s.Close)
		urls = append(urls, s.NS.ClientURL())
	}
	c.urls = strings.Join(urls, ",")
	if err := Setup(ctx, c.servers[0].JS, 3, lease); err != nil {
		t.Fatal(err)
	}
	return c
}

// runner is a node running in process with its own connection, as a
// separate process would have; kill ends it without a clean hand-over.
type runner struct {
	node *Node
	nc   *nats.Conn
	stop context.CancelFunc
	done chan error
}

func (c *cluster) startNode(ctx context.Context, t testing.TB, id string, reg *registry.Registry, lease time.Duration) *runner {
	t.Helper()
	nc, err := nats.Connect(c.urls, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Open(Config{ID: id, Dir: t.TempDir(), Partitions: partitions, Lease: lease, Places: faultPlaces(reg)}, js, reg, slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", id))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	r := &runner{node: n, nc: nc, stop: stop, done: make(chan error, 1)}
	go func() { r.done <- n.Run(rctx) }()
	t.Cleanup(r.kill)
	return r
}

// kill closes the node's connection first (what it had in flight is
// neither published nor acknowledged), then stops it.
func (r *runner) kill() {
	r.nc.Close()
	r.stop()
	<-r.done
	r.done <- nil // kill again returns at once
}

// waitFor polls cond until it holds or ctx ends (then the test fails with what).
func waitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// owners reports whether the nodes own every partition once, as
// rendezvous hashing over exactly them says.
func owners(nodes []*runner) bool {
	var ids []string
	for _, r := range nodes {
		ids = append(ids, r.node.cfg.ID)
	}
	count := 0
	for _, r := range nodes {
		for _, k := range r.node.Owned() {
			if Owner(k, ids) != r.node.cfg.ID {
				return false
			}
			count++
		}
	}
	return count == partitions
}

// publish stores a signed gateway message in the log as the MQTT listener
// would (the same subject), acknowledged by JetStream.
func publish(ctx context.Context, t testing.TB, js jetstream.JetStream, g *fleet.Gateway, body *wire.Inventory) {
	t.Helper()
	data, topic, _, err := g.Seal(wire.KindFirmware, time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	retry(ctx, t, "publish", func() error { // stored twice at worst: the nodes drop the second as a duplicate
		_, err := js.Publish(ctx, "$MQTT.msgs."+strings.ReplaceAll(topic, "/", "."), data)
		return err
	})
}

// retry calls fn until it succeeds or ctx ends (then the test fails with
// what): the cluster's API may not answer for a while under load or while
// it elects a leader.
func retry(ctx context.Context, t testing.TB, what string, fn func() error) {
	t.Helper()
	for {
		err := fn()
		if err == nil {
			return
		}
		t.Logf("%s: %v (trying again)", what, err)
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v: %v", what, err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// faultConfig is the load of the fault tests: the same seed, so the same
// gateway keys and GPUs, wherever it is built (a node process builds its
// registry from it).
func faultConfig(mqtts []string) load.Config {
	return load.Config{Brokers: mqtts, Gateways: 12, GPUs: 8, Rate: 120, Duration: 6 * time.Second, Window: 16, Seed: 1}
}

func faultRegistry(t testing.TB) (*fleet.Fleet, *registry.Registry) {
	t.Helper()
	f, err := load.Fleet(faultConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	return f, registry.New(f.Registry().Gateways...)
}

// faultPlaces puts the fault tests' gateways at two sites 424 km apart:
// the even ones (in id order) in Berlin, the odd ones in
// Frankfurt.
func faultPlaces(reg *registry.Registry) map[string]Place {
	places := map[string]Place{}
	for i, g := range reg.List() {
		places[g.ID] = []Place{{Site: "ber", Lat: 52.5200, Lon: 13.4050}, {Site: "fra", Lat: 50.1109, Lon: 8.6821}}[i%2]
	}
	return places
}

// faultLoad is a fleet under load: each gateway's inventory is published
// first (at invSeq), then its telemetry through the MQTT listeners.
type faultLoad struct {
	cfg    load.Config
	l      *load.Load
	f      *fleet.Fleet
	invSeq uint64
}

func newFaultLoad(t testing.TB, mqtts []string) *faultLoad {
	t.Helper()
	fl := &faultLoad{cfg: faultConfig(mqtts)}
	if err := fl.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	fl.invSeq = uint64(time.Now().UnixMilli()) - 1 // below the load's first sequence number, within its window
	var err error
	if fl.l, err = load.Presign(fl.cfg); err != nil {
		t.Fatal(err)
	}
	fl.f, _ = faultRegistry(t)
	return fl
}

// begin publishes the inventories and connects the gateways.
func (fl *faultLoad) begin(ctx context.Context, t testing.TB, js jetstream.JetStream) {
	t.Helper()
	for _, g := range fl.f.Gateways { // each gateway's identity first
		g.SetSeq(fl.invSeq - 1)
		publish(ctx, t, js, g, g.Inventory())
	}
	// The MQTT listeners answer once the cluster has set up their streams.
	retry(ctx, t, "connect the gateways", func() error { return fl.l.Connect(ctx) })
}

// leasesHeld reports whether each partition's lease is held by the node
// rendezvous hashing over ids gives it.
func leasesHeld(ctx context.Context, js jetstream.JetStream, ids []string) bool {
	kv, err := js.KeyValue(ctx, LeasesBucket)
	if err != nil {
		return false
	}
	for k := range partitions {
		e, err := kv.Get(ctx, leaseKey(k))
		if err != nil || string(e.Value()) != Owner(k, ids) {
			return false
		}
	}
	return true
}

// viewer is a node's read model as a client sees it.
type viewer struct {
	id   string
	view func() (View, error)
}

// TestNodeLossUnderLoad: three nats-servers hold the partitioned log (R3);
// three nodes share its partitions; gateways publish through the servers'
// MQTT listeners and one node is killed under load. Its partitions move to
// the survivors, which resume at the partitions' acknowledged positions.
// Then verify's promises hold.
func TestNodeLossUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-server JetStream cluster and 3 nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const lease = 3 * time.Second
	c := startCluster(ctx, t, lease)
	fl := newFaultLoad(t, c.mqtts)
	_, reg := faultRegistry(t)

	var nodes []*runner
	for i := range 3 {
		nodes = append(nodes, c.startNode(ctx, t, fmt.Sprint("node-", i+1), reg, lease))
	}
	waitFor(ctx, t, "the three nodes own the partitions", func() bool { return owners(nodes) })
	js := c.servers[0].JS
	fl.begin(ctx, t, js)

	victim := nodes[1]
	t0 := time.Now().Add(50 * time.Millisecond)
	killed := time.AfterFunc(time.Until(t0.Add(fl.cfg.Duration/3)), victim.kill)
	defer killed.Stop()
	if err := fl.l.Run(ctx, t0, 30*time.Second); err != nil {
		t.Fatalf("load: %v (%d connections failed)", err, fl.l.Errors())
	}
	<-victim.done // the kill has happened
	victim.done <- nil
	survivors := []*runner{nodes[0], nodes[2]}
	waitFor(ctx, t, "the survivors take the killed node's partitions", func() bool { return owners(survivors) })
	waitFor(ctx, t, "the survivors hold the leases", func() bool {
		return leasesHeld(ctx, js, []string{nodes[0].node.cfg.ID, nodes[2].node.cfg.ID})
	})
	var views []viewer
	for _, r := range survivors {
		views = append(views, viewer{r.node.cfg.ID, func() (View, error) { return r.node.Model.View(), nil }})
	}
	verify(ctx, t, js, fl, fl.l.AckedBy(), victim.node.cfg.ID, views)
}

// verify checks what the fault tests promise, after the load: every
// message a gateway saw acknowledged has been applied once (the changes
// stream has each gateway's sequence numbers strictly increasing: none
// twice, none out of order, none missing), the killed node had applied
// some, each survivor's fleet view holds every gateway with exactly the
// stream's messages, and an inventory that shows one gateway's GPU under a
// gateway of another partition raises the clone alert on every survivor.
func verify(ctx context.Context, t *testing.T, js jetstream.JetStream, fl *faultLoad, acked map[string]int64, victim string, survivors []viewer) {
	t.Helper()
	view := func(v viewer) View {
		var got View
		retry(ctx, t, v.id+"'s view", func() (err error) { got, err = v.view(); return err })
		return got
	}
	// Each survivor's view has at least the inventory and the acknowledged
	// telemetry of every gateway.
	// If one does not get there, the changes stream below says what is
	// missing.
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for _, v := range survivors {
		var missing []string
		for {
			fleet := view(v).Fleet
			missing = missing[:0]
			for gw, a := range acked {
				if int64(fleet[gw].Applied) < a+1 {
					missing = append(missing, fmt.Sprintf("%s %d of %d", gw, fleet[gw].Applied, a+1))
				}
			}
			if len(missing) == 0 || wctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(missing) > 0 {
			t.Errorf("%s's fleet view is incomplete (applied of acknowledged+1): %v", v.id, missing)
		}
	}

	// The changes stream, read whole.
	var info *jetstream.StreamInfo
	var seqs map[string][]uint64
	var byNode map[string]int
	retry(ctx, t, "read the changes", func() error {
		st, err := js.Stream(ctx, ChangesStream)
		if err != nil {
			return err
		}
		if info, err = st.Info(ctx); err != nil {
			return err
		}
		seqs, byNode, err = readChanges(ctx, js, info.State.Msgs)
		return err
	})
	var base uint64
	for _, ss := range seqs {
		if base == 0 || ss[1] < base {
			base = ss[1] // ss[0] is the inventory
		}
	}
	total := int64(0)
	for gw, a := range acked {
		total += a
		if a == 0 {
			t.Errorf("%s: no message acknowledged", gw)
			continue
		}
		ss := seqs[gw]
		for i := 1; i < len(ss); i++ {
			if ss[i] <= ss[i-1] {
				t.Errorf("%s: seq %d after %d: applied twice or out of order", gw, ss[i], ss[i-1])
			}
		}
		if len(ss) < int(a)+1 || ss[0] != fl.invSeq {
			t.Fatalf("%s: %d changes (first seq %d), want the inventory (%d) and %d acknowledged", gw, len(ss), ss[0], fl.invSeq, a)
		}
		if last := ss[a]; last != base+uint64(a)-1 {
			t.Errorf("%s: acknowledged seq %d..%d, the %dth change is %d: one is missing", gw, base, base+uint64(a)-1, a, last)
		}
	}
	t.Logf("%d acknowledged, %d changes; applied by node: %v", total, info.State.Msgs, byNode)
	if byNode[victim] == 0 {
		t.Errorf("the killed node applied nothing before it died: the test did not kill it under load")
	}

	// Any node serves the same fleet: every survivor, at the same position.
	for _, v := range survivors {
		waitFor(ctx, t, v.id+" folds to the end", func() bool { return view(v).Pos >= info.State.LastSeq })
		for gw, g := range view(v).Fleet {
			if g.Applied != len(seqs[gw]) || g.Late != 0 || g.Seq != seqs[gw][len(seqs[gw])-1] {
				t.Errorf("%s's view of %s: %+v; the changes stream has %d, newest %d", v.id, gw, g, len(seqs[gw]), seqs[gw][len(seqs[gw])-1])
			}
		}
	}

	// A GPU of one partition's gateway (site 1) reported minutes later by
	// a gateway of another partition at site 2, 424 km away: a clone and
	// an impossible travel.
	fleetView := view(survivors[0]).Fleet
	_, reg := faultRegistry(t)
	places := faultPlaces(reg)
	var a, b *fleet.Gateway
	for _, g := range fl.f.Gateways {
		switch {
		case a == nil:
			a = g
		case b == nil && fleetView[g.ID].Partition != fleetView[a.ID].Partition && places[g.ID].Site != places[a.ID].Site:
			b = g
		}
	}
	if b == nil {
		t.Fatalf("no gateway at another site and in another partition than %s", a.ID)
	}
	inv := b.Inventory()
	inv.GPUs[0].UUID = a.Inventory().GPUs[0].UUID
	b.SetSeq(fleetView[b.ID].Seq)
	publish(ctx, t, js, b, inv)
	for _, v := range survivors {
		waitFor(ctx, t, v.id+" raises the alerts", func() bool { return len(view(v).Alerts) > 1 })
		got := view(v).Alerts
		want := a.ID + "," + b.ID
		if len(got) != 2 || got[0].Type != "impossible_travel" || got[1].Type != "clone" ||
			got[0].UUID != inv.GPUs[0].UUID || got[1].UUID != inv.GPUs[0].UUID ||
			strings.Join(got[0].Gateways, ",") != want || strings.Join(got[1].Gateways, ",") != want {
			t.Errorf("%s's alerts: %+v, want an impossible travel and a clone of %s seen at %s", v.id, got, inv.GPUs[0].UUID, want)
		}
	}

	// Another GPU of a's shipped to b's site, declared through the
	// cluster, then reported by b: its arrival on every survivor, no
	// clone (its travel, seconds for 424 km, is still impossible).
	cloned, moved := inv.GPUs[0].UUID, a.Inventory().GPUs[1].UUID
	var declared Shipment
	retry(ctx, t, "declare a shipment", func() (err error) {
		declared, err = DeclareShipment(ctx, js, Shipment{UUIDs: []string{moved}, From: places[a.ID].Site, To: places[b.ID].Site, By: "fault test"})
		return err
	})
	inv = b.Inventory()
	inv.GPUs[1].UUID = moved
	publish(ctx, t, js, b, inv)
	for _, v := range survivors {
		waitFor(ctx, t, v.id+" folds the shipment's arrival", func() bool {
			s := view(v).Shipments
			return len(s) == 1 && len(s[0].Arrived) == 1
		})
		vw := view(v)
		if s := vw.Shipments[0]; s.ID != declared.ID || s.Arrived[0].UUID != moved || s.Arrived[0].Gateway != b.ID {
			t.Errorf("%s's shipment: %+v, want %s's arrival of %s at %s", v.id, s, declared.ID, moved, b.ID)
		}
		var types []string
		for _, al := range vw.Alerts {
			types = append(types, al.Type+" "+al.UUID)
		}
		if want := []string{"impossible_travel " + cloned, "clone " + cloned, "impossible_travel " + moved}; !slices.Equal(types, want) {
			t.Errorf("%s's alerts after the shipment: %v, want %v (no clone of the shipped GPU)", v.id, types, want)
		}
	}

	// The clone alert acknowledged through the cluster, then again by
	// someone else: every survivor shows the first.
	alerts := view(survivors[0]).Alerts
	if len(alerts) < 2 || alerts[1].Type != "clone" {
		t.Fatalf("%s's alerts: %+v, want the clone second", survivors[0].id, alerts)
	}
	clone := alerts[1]
	for _, by := range []string{"security-1", "security-2"} {
		retry(ctx, t, "acknowledge the clone alert", func() error {
			_, err := AckAlert(ctx, js, AlertAck{Alert: clone.ID, By: by})
			return err
		})
	}
	for _, v := range survivors {
		waitFor(ctx, t, v.id+" folds the acknowledgement", func() bool { return view(v).Alerts[1].Acked != nil })
		if a := view(v).Alerts[1]; a.ID != clone.ID || a.Acked.By != "security-1" {
			t.Errorf("%s's clone alert: %+v acked %+v, want %s acknowledged by security-1", v.id, a, a.Acked, clone.ID)
		}
	}
}

// readChanges reads n changes from the start: each gateway's sequence
// numbers in stream order, and how many each node applied.
func readChanges(ctx context.Context, js jetstream.JetStream, n uint64) (map[string][]uint64, map[string]int, error) {
	cons, err := js.OrderedConsumer(ctx, ChangesStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, nil, err
	}
	seqs, byNode := map[string][]uint64{}, map[string]int{}
	for read := uint64(0); read < n; {
		batch, err := cons.Fetch(int(min(n-read, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, nil, err
		}
		for m := range batch.Messages() {
			var ch Change
			if err := json.Unmarshal(m.Data(), &ch); err != nil {
				return nil, nil, err
			}
			seqs[ch.Gateway] = append(seqs[ch.Gateway], ch.Seq)
			byNode[ch.Node]++
			read++
		}
		if err := batch.Error(); err != nil {
			return nil, nil, err
		}
	}
	return seqs, byNode, nil
}

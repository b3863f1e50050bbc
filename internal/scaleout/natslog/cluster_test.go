package natslog

import (
	"context"
	"testing"
	"time"

	"twinchain/internal/sim/load"
	"twinchain/internal/testsvc"
)

// TestClusterLeaderLoss: three nats-servers in one JetStream cluster hold
// the log with three replicas. Gateways publish through the MQTT listeners
// of the two servers that do not lead the log's stream; mid-load the
// leader shuts down. Afterwards every message a gateway saw acknowledged is
// in the log on the surviving servers, no message is there twice, and each
// gateway's messages are in its order. (In process, the leader is stopped
// cleanly, not killed: a power loss is not what this shows.)
func TestClusterLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-server JetStream cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	servers, mqtts := startCluster(ctx, t, t.TempDir(), 3, false)
	st, err := servers[0].JS.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("log stream: %d replicas, cluster %+v; want 3 with a leader", info.Config.Replicas, info.Cluster)
	}
	leader := -1
	var brokers []string
	var survivor *Server
	for i, s := range servers {
		if s.NS.Name() == info.Cluster.Leader {
			leader = i
			continue
		}
		brokers = append(brokers, mqtts[i])
		survivor = s
	}
	if leader < 0 {
		t.Fatalf("leader %q is none of the servers", info.Cluster.Leader)
	}

	cfg := load.Config{Brokers: brokers, Gateways: 6, GPUs: 8, Rate: 300, Duration: 4 * time.Second, Window: 16}
	l, err := load.Presign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	connect(ctx, t, l)
	t0 := time.Now().Add(50 * time.Millisecond)
	stop := time.AfterFunc(time.Until(t0.Add(1500*time.Millisecond)), func() { servers[leader].Close() })
	defer stop.Stop()
	// Connections nats-server closes while the stream elects a new leader
	// (a store not acknowledged within 5 s) end that gateway's load: what it
	// had acknowledged must still be there.
	if err := l.Run(ctx, t0, 30*time.Second); err != nil {
		t.Logf("load: %v (%d connections failed)", err, l.Errors())
	}
	acked := l.AckedBy()
	total := int64(0)
	for _, a := range acked {
		total += a
	}
	if total == 0 {
		t.Fatal("nothing acknowledged")
	}
	t.Logf("leader %s stopped at 1.5 s; %d sent, %d acknowledged", info.Cluster.Leader, l.Sent.Load(), total)

	cons, err := survivor.Consumer(ctx, "ingest", GatewaySubjects)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := int(ci.NumPending)
	if int64(stored) < total {
		t.Fatalf("the log holds %d messages, fewer than the %d acknowledged", stored, total)
	}
	seqs := map[string][]uint64{}
	if err := Drain(ctx, cons, stored, func(m Message) error {
		seqs[m.Gateway] = append(seqs[m.Gateway], m.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Every gateway's sequence starts at the same number (the load's base).
	var base uint64
	for _, ss := range seqs {
		if base == 0 || ss[0] < base {
			base = ss[0]
		}
	}
	holes, after := 0, 0
	for gw, a := range acked {
		ss := seqs[gw]
		in := map[uint64]bool{}
		for i, q := range ss {
			if i > 0 && q <= ss[i-1] {
				t.Errorf("%s: seq %d after %d: stored twice or out of order", gw, q, ss[i-1])
			}
			in[q] = true
		}
		// The acknowledged messages are the gateway's first a: each must be
		// in the log.
		for q := base; q < base+uint64(a); q++ {
			if !in[q] {
				t.Errorf("%s: seq %d was acknowledged and is not in the log", gw, q)
			}
		}
		for i := 1; i < len(ss); i++ {
			if ss[i] != ss[i-1]+1 {
				holes++
				after += len(ss) - i
				break
			}
		}
	}
	// A store in flight when the leader stopped can fail while the next
	// ones (pipelined) succeed: the log then has a hole, the messages after
	// it were never acknowledged (the PUBACKs stop at the failed one and
	// the connection closes), and a real gateway resends them all: ingest
	// takes the late one within its sequence window and drops the copies as
	// duplicates.
	t.Logf("%d of %d gateways have a hole in the log, with %d unacknowledged messages stored after it", holes, len(acked), after)
}

// startCluster starts n servers in one JetStream cluster on loopback, their
// stores under dir, the log with n replicas (S2-compressed with compress); t.Cleanup closes them.
func startCluster(ctx context.Context, t testing.TB, dir string, n int, compress bool) (servers []*Server, mqtts []string) {
	t.Helper()
	routes := make([]string, n)
	mqtts = make([]string, n)
	for i := range n {
		routes[i] = testsvc.Addr(testsvc.FreePort(t))
		mqtts[i] = testsvc.Addr(testsvc.FreePort(t))
	}
	servers, err := StartCluster(ctx, Config{SyncAlways: true, Compress: compress}, dir, routes, mqtts)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		t.Cleanup(s.Close) // Close again after a test closed it returns at once
	}
	return servers, mqtts
}

// connect connects the load's gateways. A server's MQTT listener answers
// its first CONNECTs only once the account's MQTT streams are set up across
// the cluster; until then it closes them. Connecting again takes over the
// sessions that did connect.
func connect(ctx context.Context, t testing.TB, l *load.Load) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := l.Connect(ctx)
		if err == nil {
			return
		}
		if attempt == 20 {
			t.Fatal(err)
		}
		t.Logf("connect (attempt %d): %v", attempt, err)
		time.Sleep(time.Second)
	}
}

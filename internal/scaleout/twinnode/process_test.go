package twinnode

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/anchor"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/registry"
	"twinchain/internal/scaleout/ledgerlink"
	"twinchain/internal/scaleout/natslog"
	"twinchain/internal/sim/load"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
)

// The fault test's servers and nodes are this test binary run again as a
// child process: TWINNODE_CHILD says which ("server" or "node") and
// TWINNODE_CHILD_CONFIG (a childConfig in JSON) how.
const (
	childEnv       = "TWINNODE_CHILD"
	childConfigEnv = "TWINNODE_CHILD_CONFIG"
)

type childConfig struct {
	// server
	Name   string   `json:"name,omitempty"`
	MQTT   string   `json:"mqtt,omitempty"`
	Route  string   `json:"route,omitempty"`
	Routes []string `json:"routes,omitempty"`
	// node
	ID   string `json:"id,omitempty"`
	URLs string `json:"urls,omitempty"`
	// KeySeed is the node's key (its checkpoints); LedgerSeed, on the
	// ledger node only, the embedded ledger's key (its blocks).
	KeySeed    []byte `json:"key_seed,omitempty"`
	LedgerSeed []byte `json:"ledger_seed,omitempty"`

	Dir   string        `json:"dir"`
	Lease time.Duration `json:"lease"`
}

func TestMain(m *testing.M) {
	role := os.Getenv(childEnv)
	if role == "" {
		os.Exit(m.Run())
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(os.Getenv(childConfigEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// SIGTERM stops it cleanly; so does its parent's end (stdin closes).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", cmpOr(cfg.ID, cfg.Name))
	var err error
	switch role {
	case "server":
		err = runServer(ctx, cfg)
	case "node":
		err = runNode(ctx, cfg, log)
	default:
		err = fmt.Errorf("%s=%q: want server or node", childEnv, role)
	}
	if err != nil {
		log.Error("child", "err", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// runServer runs one nats-server of the cluster and prints "READY <client
// URL>" once the log stream exists.
func runServer(ctx context.Context, cfg childConfig) error {
	s, err := natslog.Start(ctx, natslog.Config{
		Dir: cfg.Dir, MQTTAddr: cfg.MQTT, SyncAlways: true, Partitions: partitions, Name: cfg.Name,
		Cluster: &natslog.Cluster{Name: "twinchain", Listen: cfg.Route, Routes: cfg.Routes}, Replicas: len(cfg.Routes),
	})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Println("READY", s.NS.ClientURL())
	<-ctx.Done()
	return nil
}

// runNode runs one twin-service node and serves its read model over HTTP
// on a free loopback port; it prints "READY <host:port>" once it listens.
func runNode(ctx context.Context, cfg childConfig, log *slog.Logger) error {
	nc, err := nats.Connect(cfg.URLs, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	f, err := load.Fleet(faultConfig(nil))
	if err != nil {
		return err
	}
	reg := registry.New(f.Registry().Gateways...)
	anc := &Anchoring{Gateways: reg, Key: ed25519.NewKeyFromSeed(cfg.KeySeed), Config: anchor.Config{Interval: 200 * time.Millisecond, RetryMax: time.Second}}
	var serve func(context.Context) error
	if cfg.LedgerSeed != nil {
		// The ledger node: its embedded ledger, served to the others.
		led, fl, err := fileledger.OpenLedger(fileledger.Options{Dir: filepath.Join(cfg.Dir, "ledger"), Key: ed25519.NewKeyFromSeed(cfg.LedgerSeed), Log: log})
		if err != nil {
			return err
		}
		defer led.Close()
		anc.Ledger, anc.Blocks = led, fl
		serve = ledgerlink.NewServer(nc, fl, log.With("component", "ledgerlink")).Run
	} else {
		link := ledgerlink.NewClient(nc)
		anc.Ledger, anc.Blocks = ledger.New(link), link
	}
	n, err := Open(Config{ID: cfg.ID, Dir: cfg.Dir, Partitions: partitions, Lease: cfg.Lease, Places: faultPlaces(reg), Anchoring: anc}, js, reg, log)
	if err != nil {
		return err
	}
	if serve != nil {
		go func() {
			if err := serve(ctx); err != nil {
				log.Error("ledger link", "err", err)
			}
		}()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = n.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", n.Model.Handler())
	mux.Handle("GET /anchoring", n.ProofHandler())
	mux.Handle("GET /proof/", n.ProofHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends with Close
	defer srv.Close()
	fmt.Println("READY", ln.Addr())
	return n.Run(ctx)
}

// child is a server or node process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready string     // what follows READY
	wait  chan error // the READY line read, or the child gone
}

// waitReady waits for the child's READY line.
func (c *child) waitReady(ctx context.Context) error {
	select {
	case err := <-c.wait:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startServers starts the three nats-server processes: their MQTT
// listeners and client URLs. A port found free may be taken before the
// server binds it (other tests run beside this one): then it starts all
// three again on other ports, at most three times.
func startServers(ctx context.Context, t testing.TB, dir string) (servers []*child, mqtts, urls []string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		routes, mqtts := make([]string, 3), make([]string, 3)
		for i := range routes {
			routes[i], mqtts[i] = testsvc.Addr(testsvc.FreePort(t)), testsvc.Addr(testsvc.FreePort(t))
		}
		servers := make([]*child, 3)
		for i := range servers {
			servers[i] = startChild(ctx, t, "server", childConfig{
				Name: fmt.Sprint("twinchain-", i+1), MQTT: mqtts[i], Route: routes[i], Routes: routes,
				Dir: fmt.Sprintf("%s/a%d-js%d", dir, attempt, i),
			})
		}
		var errs []error
		urls := make([]string, 3)
		for i, s := range servers {
			errs = append(errs, s.waitReady(ctx))
			urls[i] = s.ready
		}
		err := errors.Join(errs...)
		if err == nil {
			return servers, mqtts, urls
		}
		for _, s := range servers {
			s.stop()
		}
		if attempt == 3 || ctx.Err() != nil {
			t.Fatal(err)
		}
		t.Logf("start the servers: %v (trying again)", err)
	}
}

// startChild starts this binary as a child and waits for its READY line.
func startChild(ctx context.Context, t testing.TB, role string, cfg childConfig) *child {
	t.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childConfigEnv+"="+string(data))
	cmd.Stderr = logOut
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(c.stop)
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "READY"); ok {
				c.ready = strings.TrimSpace(rest)
				ready <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- fmt.Errorf("%s %s exited before it was ready", role, cmpOr(cfg.ID, cfg.Name))
	}()
	c.wait = ready
	return c
}

// stop ends the child cleanly (SIGTERM, then SIGKILL) and reaps it.
func (c *child) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// kill ends the child with SIGKILL: nothing of it runs on.
func (c *child) kill(t testing.TB) {
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Error(err)
	}
}

// TestProcessesKilled: three nats-server processes hold the partitioned log
// (R3, fsync always), three node processes share its partitions and serve
// their read models over HTTP; under load one node process is killed with
// SIGKILL, and later the nats-server process that leads the log. The survivors take the dead
// node's partitions, the cluster goes on with two servers, and verify's
// promises hold, checked through the survivors' HTTP read models. Gateways
// connected to the killed server's MQTT listener lose their connection:
// what they saw acknowledged before must be there.
func TestProcessesKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 nats-server and 3 node processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const lease = 3 * time.Second
	dir := t.TempDir()

	servers, mqtts, urls := startServers(ctx, t, dir)
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	retry(ctx, t, "set up", func() error { return Setup(ctx, js, 3, lease) })

	fl := newFaultLoad(t, mqtts)
	ids := []string{"node-1", "node-2", "node-3"}
	nodes := make([]*child, 3)
	keys := make([]ed25519.PrivateKey, 3)
	ledgerSeed := bytes.Repeat([]byte{0x4c}, ed25519.SeedSize)
	for i, id := range ids {
		cfg := childConfig{ID: id, URLs: strings.Join(urls, ","), Dir: fmt.Sprintf("%s/%s", dir, id), Lease: lease,
			KeySeed: bytes.Repeat([]byte{byte(0x60 + i)}, ed25519.SeedSize)}
		if i == 0 {
			cfg.LedgerSeed = ledgerSeed // node-1 keeps the one ledger
		}
		keys[i] = ed25519.NewKeyFromSeed(cfg.KeySeed)
		nodes[i] = startChild(ctx, t, "node", cfg)
	}
	for _, n := range nodes {
		if err := n.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "the three nodes hold the leases", func() bool { return leasesHeld(ctx, js, ids) })
	fl.begin(ctx, t, js)

	// The server killed is the log's Raft leader at that moment (the
	// hardest case for the log): JetStream elects another among the two
	// left.
	var ackedAtKill atomic.Int64
	var leader atomic.Int32
	leader.Store(-1)
	killLeader := func() {
		var name string // (not retry: this runs outside the test's goroutine)
		for name == "" && ctx.Err() == nil {
			if st, err := js.Stream(ctx, natslog.Stream); err == nil && st.CachedInfo().Cluster != nil {
				name = st.CachedInfo().Cluster.Leader
			}
		}
		for i := range servers {
			if name == fmt.Sprint("twinchain-", i+1) {
				ackedAtKill.Store(fl.l.Acked.Load())
				leader.Store(int32(i))
				servers[i].kill(t)
			}
		}
	}
	t0 := time.Now().Add(50 * time.Millisecond)
	killNode := time.AfterFunc(time.Until(t0.Add(fl.cfg.Duration/3)), func() { nodes[1].kill(t) })
	defer killNode.Stop()
	killServer := time.AfterFunc(time.Until(t0.Add(2*fl.cfg.Duration/3)), killLeader)
	defer killServer.Stop()
	if err := fl.l.Run(ctx, t0, 30*time.Second); err != nil {
		// Gateway i is connected to server i%3: those on the killed one
		// lose their connection.
		t.Logf("load: %v (%d connections failed)", err, fl.l.Errors())
	}
	_ = nodes[1].cmd.Wait() // the kills have happened (stop, at cleanup, finds them reaped)
	waitFor(ctx, t, "the log's leader killed", func() bool { return leader.Load() >= 0 })
	_ = servers[leader.Load()].cmd.Wait()
	acked := fl.l.AckedBy()
	t.Logf("acknowledged: %d of %d, %d after twinchain-%d (the log's leader) was killed; per gateway: %v",
		fl.l.Acked.Load(), fl.l.Sent.Load(), fl.l.Acked.Load()-ackedAtKill.Load(), leader.Load()+1, acked)

	survivors := []string{ids[0], ids[2]}
	waitFor(ctx, t, "the survivors hold the leases", func() bool { return leasesHeld(ctx, js, survivors) })
	var views []viewer
	for _, i := range []int{0, 2} {
		url := "http://" + nodes[i].ready + "/view"
		views = append(views, viewer{ids[i], func() (View, error) { return getView(ctx, url) }})
	}
	verify(ctx, t, js, fl, acked, ids[1], views)

	// Every survivor anchored its own event log on its own chain of the
	// one ledger (node-1's): bundles of its events verify offline under
	// the survivor's key and the ledger node's, both pinned here.
	ledgerPub := ed25519.NewKeyFromSeed(ledgerSeed).Public().(ed25519.PublicKey)
	for _, i := range []int{0, 2} {
		verifyAnchored(ctx, t, "http://"+nodes[i].ready, ids[i], keys[i].Public().(ed25519.PublicKey), ledgerPub)
	}
}

// verifyAnchored waits until a node has anchored its whole event log and
// checks the proof bundles of its first, middle and last events with the
// offline verifier.
func verifyAnchored(ctx context.Context, t *testing.T, base, id string, pub, ledgerPub ed25519.PublicKey) {
	t.Helper()
	var st AnchorStatus
	t0 := time.Now()
	waitFor(ctx, t, id+" anchors its event log", func() bool {
		err := getJSON(ctx, base+"/anchoring", &st)
		return err == nil && st.LastEvent > 0 && st.Stats.AnchoredTo >= st.LastEvent
	})
	t.Logf("%s: %d events anchored in %d batches on chain %s, caught up %s after the checks above; %d ledger errors retried",
		id, st.Stats.AnchoredTo, st.Stats.Anchored, st.Chain, time.Since(t0).Round(time.Millisecond), st.Stats.LedgerErrors)
	for _, ev := range []uint64{1, st.LastEvent / 2, st.LastEvent} {
		var raw json.RawMessage
		if err := getJSON(ctx, fmt.Sprintf("%s/proof/event/%d", base, ev), &raw); err != nil {
			t.Errorf("%s: proof of event %d: %v", id, ev, err)
			continue
		}
		b, err := proofbundle.Parse(raw)
		if err != nil {
			t.Errorf("%s: proof of event %d: %v", id, ev, err)
			continue
		}
		r := proofbundle.VerifyKeys(b, pub, ledgerPub)
		var a core.Anchor
		var e twin.Event
		_ = json.Unmarshal(b.Event.Anchor, &a)
		_ = json.Unmarshal(b.Event.Leaf, &e)
		// The anchoring lag of this event: from its commit on the node to
		// the ledger node's transaction (both clocks this machine's).
		t.Logf("%s: event %d anchored by anchor %d of chain %s, %s after it was recorded", id, ev, a.Seq, a.Chain, a.Stamp.Time.Sub(e.Recorded).Round(time.Millisecond))
		if !r.Verified() || a.Chain != id || b.Event.Block == nil {
			var sb strings.Builder
			r.Write(&sb)
			t.Errorf("%s: bundle of event %d on chain %q, with a block %v, verified %v; want verified on chain %s:\n%s", id, ev, a.Chain, b.Event.Block != nil, r.Verified(), id, sb.String())
		}
	}
}

func getView(ctx context.Context, url string) (View, error) {
	var v View
	return v, getJSON(ctx, url, &v)
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

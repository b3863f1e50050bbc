package fleet

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestControlSocket plays steps through a running fleet's control socket
// (a real Mosquitto in between): an XID on a GPU and a theft of the site
// gateway arrive in the fleet's own messages, signed by the gateways' own
// keys, each gateway's sequence unbroken across the steps; bad requests
// get an error answer and the fleet goes on; the socket is the owner's
// only and is gone when the fleet stops.
func TestControlSocket(t *testing.T) {
	broker := testsvc.StartMosquitto(t, "")
	f, err := New(Config{Sites: 1, ServersPerSite: 1, GPUsPerServer: 2, Seed: 1, SiteGateways: true})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, g := range f.Registry().Gateways {
		keys[g.ID] = g.PublicKey
	}
	type seen struct {
		seq uint64
		env wire.Envelope
	}
	var mu sync.Mutex
	got := map[string][]seen{}
	var bad []string
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("test-sub"))
	if tok := sub.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe(wire.GatewayFilter(), 1, func(_ mqtt.Client, m mqtt.Message) {
		env, err := wire.Decode(m.Payload())
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			bad = append(bad, err.Error())
		case env.Seq == 0: // the last will
		case env.Verify(keys[env.Gateway]) != nil:
			bad = append(bad, env.Gateway+": not signed by its own key")
		default:
			got[env.Gateway] = append(got[env.Gateway], seen{env.Seq, env})
		}
	}); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sock := filepath.Join(t.TempDir(), "fleet.sock")
	ctl, err := ListenControl(f, sock, log)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if _, err := ListenControl(f, sock, log); err == nil || !strings.Contains(err.Error(), "another fleet listens") {
		t.Errorf("a second fleet on the same socket: %v, want refused", err)
	}
	p, err := NewPublisher(f, PublishConfig{Broker: broker.URL(), Rate: 20, SeqBase: 100}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- p.Run(ctx) }()
	go func() { done <- ctl.Serve(ctx) }()
	testsvc.Eventually(t, 10*time.Second, "the fleet publishing", func() bool { return p.Stats.Acked.Load() > 20 })

	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	ask := func(line string) ControlAnswer {
		t.Helper()
		if _, err := io.WriteString(conn, line+"\n"); err != nil {
			t.Fatal(err)
		}
		raw, err := rd.ReadBytes('\n')
		if err != nil {
			t.Fatalf("answer to %.80s: %v", line, err)
		}
		var a ControlAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("answer %q: %v", raw, err)
		}
		return a
	}
	for _, tt := range []struct{ req, want string }{
		{`not json`, "bad request"},
		{`{"op":"play","step":{"action":"xid","target":"srv-s1-001.gpu1","xid":79},"extra":1}`, "bad request"},
		{`{"op":"dance"}`, `op "dance"`},
		{`{"op":"play","step":{"action":"forge","target":"gw-s1-dock"}}`, "not played on the running fleet"},
		{`{"op":"play","step":{"action":"xid","target":"srv-s9-001.gpu0","xid":79}}`, "no GPU srv-s9-001.gpu0"},
		{`{"op":"check","step":{"action":"theft","target":"gw-srv-s1-001"}}`, "needs a site gateway"},
		{`{"op":"play","step":{"action":"move_rack","target":"srv-s1-001","path":[` + strings.Repeat(`{"read_point":"x","zone":"y"},`, 64) + `{"read_point":"x","zone":"y"}]}}`, "at most 64 read points"},
	} {
		if a := ask(tt.req); a.OK || !strings.Contains(a.Error, tt.want) {
			t.Errorf("%.80s answered %+v, want an error with %q", tt.req, a, tt.want)
		}
	}
	if a := ask(`{"op":"check","step":{"action":"theft","target":"gw-s1-dock"}}`); !a.OK {
		t.Errorf("check theft: %+v, want ok", a)
	}
	xid := ask(`{"op":"play","step":{"action":"xid","target":"srv-s1-001.gpu1","xid":79}}`)
	theft := ask(`{"op":"play","step":{"action":"theft","target":"gw-s1-dock","speed_ms":500,"heading":90}}`)
	if !xid.OK || len(xid.Gateways) != 1 || xid.Gateways[0].ID != "gw-srv-s1-001" || !theft.OK || len(theft.Gateways) != 1 || theft.Gateways[0].ID != "gw-s1-dock" {
		t.Fatalf("play xid %+v, theft %+v; want both played by their gateways", xid, theft)
	}
	if !strings.Contains(theft.Did, "carried off") {
		t.Errorf("theft did %q", theft.Did)
	}
	site := f.Sites[0]
	after := func(gw string, from uint64, ok func(wire.Envelope) bool) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range got[gw] {
			if s.seq > from && ok(s.env) {
				return true
			}
		}
		return false
	}
	testsvc.Eventually(t, 10*time.Second, "the XID in gw-srv-s1-001's telemetry", func() bool {
		return after("gw-srv-s1-001", xid.Gateways[0].Seq, func(e wire.Envelope) bool {
			tel, err := wire.DecodeBody[wire.Telemetry](&e)
			return e.Kind == wire.KindTelemetry && err == nil && len(tel.GPUs) == 2 && tel.GPUs[1].LastXID == 79 && tel.GPUs[0].LastXID == 0
		})
	})
	testsvc.Eventually(t, 10*time.Second, "gw-s1-dock's fix more than 100 m east of its site", func() bool {
		return after("gw-s1-dock", theft.Gateways[0].Seq, func(e wire.Envelope) bool {
			fix, err := wire.DecodeBody[wire.GPSFix](&e)
			return e.Kind == wire.KindGPS && err == nil && fix.Lon > site.Lon+100/(metrePerDegLat*0.6) && fix.SpeedMS == 500
		})
	})
	if a := ask(`{"op":"play","step":{"action":"silence","target":"gw-s1-dock"}}`); !a.OK {
		t.Errorf("silence: %+v", a)
	}
	// A line over the bound gets an answer and the connection ends; a new
	// one works.
	if a := ask(strings.Repeat("x", maxControlLine+10)); a.OK || !strings.Contains(a.Error, "longer than") {
		t.Errorf("a long line answered %+v, want refused", a)
	}
	conn2, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn, rd = conn2, bufio.NewReader(conn2)
	if a := ask(`{"op":"check","step":{"action":"overheat","target":"srv-s1-001.gpu0"}}`); !a.OK {
		t.Errorf("check on a new connection: %+v", a)
	}
	silentFrom := f.Gateways[1].Seq()
	time.Sleep(500 * time.Millisecond)
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket is still there after the fleet stopped (%v)", err)
	}
	if n := ctl.Played.Load(); n != 3 {
		t.Errorf("played %d steps, want 3", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d bad messages, first: %s", len(bad), bad[0])
	}
	for _, g := range f.Gateways {
		seqs := make([]uint64, 0, len(got[g.ID]))
		for _, s := range got[g.ID] {
			seqs = append(seqs, s.seq)
		}
		slices.Sort(seqs)
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[i-1]+1 {
				t.Errorf("%s: sequence %d then %d, want one after the other", g.ID, seqs[i-1], seqs[i])
				break
			}
		}
		if len(seqs) == 0 || seqs[0] != 101 {
			t.Errorf("%s: %d messages from seq %v, want from 101", g.ID, len(seqs), seqs[:min(1, len(seqs))])
		}
	}
	if g := f.Gateways[1]; g.ID != "gw-s1-dock" || g.Seq() != silentFrom {
		t.Errorf("%s sealed messages after it was silenced (seq %d, was %d)", g.ID, g.Seq(), silentFrom)
	}
}

// FuzzControlRequest feeds the control socket's request handler arbitrary
// lines: it never panics, and every answer is either ok or says why not.
func FuzzControlRequest(f *testing.F) {
	for _, seed := range []string{
		`{"op":"play","step":{"action":"xid","target":"srv-s1-001.gpu1","xid":79}}`,
		`{"op":"check","step":{"action":"theft","target":"gw-s1-dock","speed_ms":15,"heading":90}}`,
		`{"op":"play","step":{"action":"move_rack","target":"srv-s1-001","path":[{"read_point":"a","zone":"b"}],"every":1000000000}}`,
		`{"op":"play","step":{"action":"clock_jump","target":"gw-s1-dock","offset":-3600000000000}}`,
		`{"op":"play","step":{"action":"warm","target":"s1-r01","rate":1e400}}`,
		`{"op":"play"}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(seed))
	}
	fl, err := New(Config{Sites: 2, ServersPerSite: 1, GPUsPerServer: 2, Seed: 1, SiteGateways: true})
	if err != nil {
		f.Fatal(err)
	}
	c := &Control{fleet: fl, log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, line []byte) {
		if a := c.handle(line); a.OK == (a.Error != "") {
			t.Errorf("handle(%q) = %+v: want ok or an error, not both or neither", line, a)
		}
	})
}

// TestPlayBounds: what played steps leave queued on a gateway is bounded.
func TestPlayBounds(t *testing.T) {
	fl, err := New(Config{Sites: 1, ServersPerSite: 1, GPUsPerServer: 1, Seed: 1, SiteGateways: true})
	if err != nil {
		t.Fatal(err)
	}
	path := make([]ReadPoint, maxPath)
	n := 0
	for ; n < 100; n++ {
		if _, _, err := fl.Play(Step{Action: "move_rack", Target: "srv-s1-001", Path: path}); err != nil {
			if !strings.Contains(err.Error(), "at most 1024") {
				t.Fatalf("move_rack %d: %v", n, err)
			}
			break
		}
	}
	if n != maxQueuedReads/maxPath {
		t.Errorf("%d move_rack steps of %d read points queued, want %d", n, maxPath, maxQueuedReads/maxPath)
	}
	for i := range 7 {
		if _, _, err := fl.Play(Step{Action: "clock_jump", Target: "gw-s1-dock", Offset: 24 * time.Hour}); err != nil {
			t.Fatalf("clock_jump %d: %v", i, err)
		}
	}
	if _, _, err := fl.Play(Step{Action: "clock_jump", Target: "gw-s1-dock", Offset: time.Hour}); err == nil {
		t.Errorf("a clock 7 days and an hour off: played, want refused")
	}
}

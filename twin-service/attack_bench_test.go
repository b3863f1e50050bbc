package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"twinchain/internal/registry"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// BenchmarkMemoryAttacks runs the memory attacks of issue 11 against the
// embedded broker of a real twin-service (the built binary) while a small
// fleet publishes, and prints for each the growth of twin-service's RSS
// over its steady state and the API's p99 latency (GET /api/v1/assets,
// every 20 ms) during the attack; ratio is the attack's peak RSS over the
// steady state's of the same run. Each attack is made with the most an
// attacker can hold: anonymous where that is all it takes, else the
// credentials of enrolled gateways. Run with -benchtime 1x;
// TWINCHAIN_BENCH_SECONDS sets each phase's length (default 10).
//
//	go test -run '^$' -bench MemoryAttacks -benchtime 1x ./twin-service
func BenchmarkMemoryAttacks(b *testing.B) {
	d := 10 * time.Second
	if v, err := time.ParseDuration(getenvDefault("TWINCHAIN_BENCH_SECONDS", "10") + "s"); err == nil {
		d = v
	}
	const attackers = 100
	f, err := fleet.New(fleet.Config{Sites: 1, ServersPerSite: 10, GPUsPerServer: 4, Seed: 5, SiteGateways: true})
	if err != nil {
		b.Fatal(err)
	}
	file := f.Registry()
	att := make([]string, attackers)
	for i := range att {
		att[i] = fmt.Sprintf("att-%03d", i)
		file.Gateways = append(file.Gateways, registry.Gateway{ID: att[i], PublicKey: gatewayKey(att[i]).Public().(ed25519.PublicKey), Site: "s1"})
	}
	dir := b.TempDir()
	regPath := filepath.Join(dir, "registry.json")
	if err := registry.WriteFile(regPath, file); err != nil {
		b.Fatal(err)
	}
	attacks := []struct {
		name string
		run  func(ctx context.Context, svc *testsvc.TwinService) string
	}{
		{"retained flood: 300 x 1 MB + 300 x 200 KB retained, as an enrolled gateway", func(ctx context.Context, svc *testsvc.TwinService) string {
			return retainedFlood(ctx, svc.MQTTURL(), att[0])
		}},
		{"100 subscribers (#, $SYS/#, alerts, own subtree) that never read, as enrolled gateways", func(ctx context.Context, svc *testsvc.TwinService) string {
			return neverReading(ctx, svc.MQTTAddr, att, false)
		}},
		{"4,000 TCP connections that never send CONNECT", func(ctx context.Context, svc *testsvc.TwinService) string {
			return neverConnect(ctx, svc.MQTTAddr, 4000)
		}},
		{"beyond the issue: 100 enrolled gateways writing signed 100 KB messages, never reading", func(ctx context.Context, svc *testsvc.TwinService) string {
			return neverReading(ctx, svc.MQTTAddr, att, true)
		}},
	}
	for range b.N {
		b.Logf("%-90s %12s %12s %7s %9s %9s  %s", "attack (each on a fresh twin-service)", "steady RSS", "RSS growth", "ratio", "anon", "API p99", "attacker got")
		for i, a := range attacks {
			steady, r, acked := measureAttack(b, regPath, f, d, a.run)
			b.Logf("%-90s %9.0f MB %+9.0f MB %6.2fx %+6.0f MB %9v  %s; fleet messages acknowledged: %d", a.name, steady.rssMB, r.rssMB-steady.rssMB,
				r.rssMB/steady.rssMB, r.anonMB-steady.anonMB, r.p99.Round(time.Millisecond), r.note, acked)
			b.ReportMetric(r.rssMB-steady.rssMB, fmt.Sprintf("rss-growth-MB/attack%d", i+1))
			b.ReportMetric(r.rssMB/steady.rssMB, fmt.Sprintf("rss-ratio-to-steady/attack%d", i+1))
			b.ReportMetric(float64(r.p99.Milliseconds()), fmt.Sprintf("api-p99-ms/attack%d", i+1))
			if acked == 0 {
				b.Errorf("%s: the fleet got nothing acknowledged", a.name)
			}
		}
	}
}

// measureAttack starts twin-service over a new data directory with the
// fleet publishing and the API probed, measures a steady-state phase, then
// the attack's.
func measureAttack(b *testing.B, regPath string, f *fleet.Fleet, d time.Duration,
	attack func(context.Context, *testsvc.TwinService) string) (steady, r phaseResult, acked uint64) {
	b.Helper()
	svc := testsvc.StartTwinService(b, testsvc.TwinServiceOptions{Registry: regPath, Tokens: []testsvc.Token{viewer}})
	defer func() {
		if err := svc.Stop(); err != nil {
			b.Errorf("twin-service: %v", err)
		}
	}()
	pub, err := fleet.NewPublisher(f, fleet.PublishConfig{Broker: svc.MQTTURL(), Rate: 2}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- pub.Run(ctx) }()
	m := &attackMeter{pid: svc.Proc.PID(), api: startAPIProbe(ctx, svc.URL+"/api/v1/assets?limit=20"), d: d}
	time.Sleep(d / 2) // warm-up: the fleet's twins exist, the caches are full
	steady = m.phase(b, nil)
	before := pub.Stats.Acked.Load()
	r = m.phase(b, func(ctx context.Context) string { return attack(ctx, svc) })
	acked = pub.Stats.Acked.Load() - before
	cancel()
	if err := <-fleetDone; err != nil {
		b.Errorf("fleet: %v", err)
	}
	return steady, r, acked
}

type phaseResult struct {
	rssMB    float64 // peak during the phase
	anonMB   float64 // peak of its anonymous part (heap, stacks: not the store's mapped file)
	p99      time.Duration
	requests int
	note     string
}

// attackMeter samples twin-service's RSS and the API probe during a phase.
type attackMeter struct {
	pid int
	api *apiProbe
	d   time.Duration
}

// phase runs attack (nil: none) for the phase's length, sampling RSS every
// 100 ms during it and for 2 s after.
func (m *attackMeter) phase(b *testing.B, attack func(context.Context) string) phaseResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), m.d)
	defer cancel()
	m.api.reset()
	note := make(chan string, 1)
	go func() {
		if attack == nil {
			<-ctx.Done()
			note <- ""
			return
		}
		note <- attack(ctx)
	}()
	peak, anon := 0.0, 0.0
	sample := func() {
		v, a := rssMB(b, m.pid)
		peak, anon = max(peak, v), max(anon, a)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var n string
	for done := false; !done; {
		select {
		case n = <-note:
			done = true
		case <-tick.C:
			sample()
		}
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); <-tick.C {
		sample()
	}
	p99, count := m.api.p99()
	return phaseResult{rssMB: peak, anonMB: anon, p99: p99, requests: count, note: n}
}

// rssMB is a process's resident memory and its anonymous part, in MB.
func rssMB(b *testing.B, pid int) (rss, anon float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("twin-service's RSS: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "RssAnon":
			anon = kb / 1024
		}
	}
	return rss, anon
}

// apiProbe GETs url every 20 ms (one request at a time) and keeps the
// latencies since the last reset; a failed request counts as 10 s.
type apiProbe struct {
	mu  sync.Mutex
	lat []time.Duration
}

func startAPIProbe(ctx context.Context, url string) *apiProbe {
	p := &apiProbe{}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		for ctx.Err() == nil {
			start := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := client.Do(req)
			took := time.Since(start)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				took = 10 * time.Second
			}
			p.mu.Lock()
			p.lat = append(p.lat, took)
			p.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return p
}

func (p *apiProbe) reset() {
	p.mu.Lock()
	p.lat = p.lat[:0]
	p.mu.Unlock()
}

func (p *apiProbe) p99() (time.Duration, int) {
	p.mu.Lock()
	l := slices.Clone(p.lat)
	p.mu.Unlock()
	if len(l) == 0 {
		return 0, 0
	}
	slices.Sort(l)
	return l[(len(l)*99)/100], len(l)
}

// retainedFlood publishes retained messages as gateway gw (its real
// credential): 300 of 1 MB outside twinchain/ and 300 of 200 KB inside its
// own subtree, reconnecting whenever the broker closes the connection. It
// also tries the same without credentials.
func retainedFlood(ctx context.Context, brokerURL, gw string) string {
	var acked, refusedConnects, closes int
	anon := paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID("attacker").SetProtocolVersion(4).SetConnectTimeout(5 * time.Second))
	if tok := anon.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		refusedConnects++
	} else {
		anon.Disconnect(0)
	}
	var c paho.Client
	connect := func() bool {
		c = paho.NewClient(testsvc.GatewayOptions(brokerURL, gw, gatewayKey(gw)).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		return tok.WaitTimeout(10*time.Second) && tok.Error() == nil
	}
	big, mid := bytes.Repeat([]byte("r"), 1_000_000), bytes.Repeat([]byte("r"), 200_000)
	for i := 0; i < 600 && ctx.Err() == nil; i++ {
		if c == nil || !c.IsConnectionOpen() {
			if c != nil {
				closes++
			}
			if !connect() {
				refusedConnects++
				continue
			}
		}
		topic, payload := fmt.Sprintf("flood/%d", i), big
		if i%2 == 1 {
			topic, payload = wire.Topic(gw, wire.KindStatus), mid
		}
		if tok := c.Publish(topic, 1, true, payload); tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
			acked++
		}
	}
	if c != nil {
		c.Disconnect(0)
	}
	<-ctx.Done()
	return fmt.Sprintf("%d PUBACKs (nothing retained or routed), %d connections closed by the broker, %d connects refused (anonymous included)", acked, closes, refusedConnects)
}

// neverReading opens one raw connection per gateway in gws with its real
// credential, subscribes to #, $SYS/#, the alerts and its own subtree, and
// never reads a byte; with write, it also writes its own valid signed
// 100 KB messages (which a subscription of its own would queue back to it)
// as fast as the broker reads them.
func neverReading(ctx context.Context, addr string, gws []string, write bool) string {
	var wg sync.WaitGroup
	var connected, written atomic.Int64
	for _, gw := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			var buf bytes.Buffer
			pw := wire.ConnectPassword(gatewayKey(gw), gw, time.Now())
			conn := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
				Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 600, ClientIdentifier: gw,
					UsernameFlag: true, Username: []byte(gw), PasswordFlag: true, Password: []byte(pw)}}
			if conn.ConnectEncode(&buf) != nil {
				return
			}
			sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 4, PacketID: 1,
				Filters: packets.Subscriptions{{Filter: "#", Qos: 1}, {Filter: "$SYS/#", Qos: 1}, {Filter: wire.AlertFilter(), Qos: 1},
					{Filter: "twinchain/v1/gw/" + gw + "/#", Qos: 1}}}
			if sub.SubscribeEncode(&buf) != nil {
				return
			}
			if _, err := c.Write(buf.Bytes()); err != nil {
				return
			}
			connected.Add(1)
			if !write {
				<-ctx.Done()
				return
			}
			reason := strings.Repeat("x", 100_000)
			for seq := uint64(1); ctx.Err() == nil; seq++ {
				env, err := wire.Seal(gatewayKey(gw), gw, seq, time.Now(), wire.KindStatus, wire.Status{State: wire.StateOnline, Reason: reason})
				if err != nil {
					return
				}
				buf.Reset()
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 4, TopicName: wire.Topic(gw, wire.KindStatus), Payload: env}
				if pk.PublishEncode(&buf) != nil {
					return
				}
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write(buf.Bytes()); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						continue // the broker stopped reading this connection: backpressure
					}
					return
				}
				written.Add(1)
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d connections, %d signed 100 KB messages written, subscriptions refused (a gateway reads nothing)", connected.Load(), written.Load())
}

// neverConnect opens n TCP connections to addr and sends nothing; it
// reports how many the broker had closed when the phase ended.
func neverConnect(ctx context.Context, addr string, n int) string {
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			continue
		}
		conns = append(conns, c)
	}
	<-ctx.Done()
	closed := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				closed++
			}
		}
		c.Close()
	}
	return fmt.Sprintf("%d opened, %d closed by the broker by the end", len(conns), closed)
}

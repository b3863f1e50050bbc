package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"context"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/ingest"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// ackLog records every (gateway, seq) the broker acknowledged.
type ackLog struct {
	mu    sync.Mutex
	acked map[string]map[uint64]bool
	n     int
}

func (a *ackLog) add(gw string, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.acked[gw] == nil {
		a.acked[gw] = map[uint64]bool{}
	}
	if !a.acked[gw][seq] {
		a.acked[gw][seq] = true
		a.n++
	}
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// waitFor waits until n messages were acknowledged.
func (a *ackLog) waitFor(t *testing.T, n int, what string) {
	t.Helper()
	testsvc.Eventually(t, 90*time.Second, fmt.Sprintf("%d acknowledgements %s", n, what), func() bool { return a.count() >= n })
}

// TestCrashAcknowledgedStoredOnce: twin-service is killed with SIGKILL while
// the fleet publishes, then restarted on the same data. Every message the
// broker acknowledged is stored exactly once, and every GPU's sample count
// equals the number of samples about it in the distinct stored telemetry
// messages (each carries 1 to 4 samples).
func TestCrashAcknowledgedStoredOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	for _, ack := range []string{"sync", "pipelined"} {
		t.Run(ack, func(t *testing.T) { crashOnce(t, ack) })
	}
}

func crashOnce(t *testing.T, ack string) {
	dir := t.TempDir()
	sim := newSimFleet(t, dir, 3)
	data := filepath.Join(dir, "data")
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Tokens: []testsvc.Token{viewer}, DataDir: data, Registry: sim.registry, Args: []string{"-mqtt-ack", ack}})
	base := svc.URL
	acks := &ackLog{acked: map[string]map[uint64]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, gw := range sim.f.Gateways {
		if gw.Host == nil {
			continue // the site gateway sends no telemetry
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishCounted(ctx, svc.MQTTURL(), gw, acks)
		}()
	}
	stopPublishers := sync.OnceFunc(func() { cancel(); wg.Wait() })
	defer stopPublishers()

	acks.waitFor(t, 500, "before the kill")
	svc.Kill()
	atKill := acks.count()
	firstOut := svc.Output()

	svc.Restart(t, "-log-level", "info")
	acks.waitFor(t, atKill+500, "after the restart")
	stopPublishers()
	var st ingest.Stats
	getJSON(t, base+"/api/v1/stats/ingest", &st)
	t.Logf("ingest stats after the restart: accepted %d rejected %v", st.Accepted, st.Rejected)
	if err := svc.Stop(); err != nil {
		t.Errorf("twin-service after SIGTERM: %v", err)
	}

	store, err := twinstore.Open(filepath.Join(data, "twins.db"), twinstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	type key struct {
		gw  string
		seq uint64
	}
	stored := map[key]int{}
	samples := map[string]uint64{}
	telemetryHashes := map[[32]byte]bool{}
	for pos := uint64(0); ; {
		msgs, err := store.MessagesAfter(pos, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			pos = m.Pos
			if m.Seq == 0 {
				continue
			}
			stored[key{m.Gateway, m.Seq}]++
			if m.Kind != wire.KindTelemetry {
				continue
			}
			sum := sha256.Sum256(m.Raw)
			if telemetryHashes[sum] {
				t.Errorf("telemetry message %s/%d stored twice", m.Gateway, m.Seq)
			}
			telemetryHashes[sum] = true
			env, err := wire.Decode(m.Raw)
			if err != nil {
				t.Fatalf("stored message %d: %v", m.Pos, err)
			}
			tel, err := wire.DecodeTelemetry(&env)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tel.Samples { // samples, not messages: a message may carry several
				for _, g := range s.GPUs {
					samples[g.Asset]++
				}
			}
		}
	}
	missing := 0
	acks.mu.Lock()
	for gw, seqs := range acks.acked {
		for seq := range seqs {
			switch n := stored[key{gw, seq}]; n {
			case 1:
			case 0:
				missing++
				if missing <= 10 {
					t.Errorf("acknowledged %s/%d is not stored (highest acknowledged %d)", gw, seq, maxKey(seqs))
				}
			default:
				t.Errorf("acknowledged %s/%d stored %d times", gw, seq, n)
			}
		}
	}
	acks.mu.Unlock()
	if missing > 0 {
		t.Errorf("%d acknowledged messages missing after the crash", missing)
	}
	if len(samples) == 0 {
		t.Fatal("no telemetry stored")
	}
	for asset, n := range samples {
		a, err := store.Asset(asset)
		if err != nil {
			t.Errorf("%s: %v", asset, err)
			continue
		}
		if a.Health.Samples != n {
			t.Errorf("%s samples = %d, want %d (samples in the distinct stored telemetry messages)", asset, a.Health.Samples, n)
		}
	}
	t.Logf("acknowledged %d (%d before the kill), stored %d numbered messages; replay after the kill: %v",
		acks.count(), atKill, len(stored), strings.Contains(svc.Output(), "replayed observations"))
	if os.Getenv("TWINCHAIN_CRASH_LOG") != "" {
		t.Logf("first run:\n%s\nsecond run:\n%s", firstOut, svc.Output())
	}
}

func maxKey(m map[uint64]bool) uint64 {
	var hi uint64
	for k := range m {
		hi = max(hi, k)
	}
	return hi
}

// publishCounted publishes one gateway's telemetry at QoS 1 and records a
// (gateway, seq) only when its PUBACK arrived. It uses a clean session
// without paho's automatic reconnection, because paho's resume after a
// reconnect completes the tokens of re-queued messages before the broker
// acknowledged them. Like an edge agent with a disk queue, it resends every
// unacknowledged message after reconnecting, so messages the crashed
// service stored without acknowledging come back as duplicates.
func publishCounted(ctx context.Context, broker string, gw *fleet.Gateway, acks *ackLog) {
	type msg struct {
		topic string
		data  []byte
		seq   uint64
		tok   paho.Token
	}
	var unacked []msg // oldest first: resent after a reconnect
	simNow := time.Now().UTC().Add(-time.Hour)
	next := func() msg {
		// telemetry of 1 to 4 samples 10 ms apart (an agent publishing
		// every few samples): the twin counts samples, not messages
		tel := &wire.Telemetry{Host: gw.Host.Info.Asset}
		for range 1 + int(gw.Seq()%4) {
			simNow = simNow.Add(10 * time.Millisecond)
			tel.Samples = append(tel.Samples, wire.TelemetrySample{TS: simNow, GPUs: gw.Sample(simNow, 10*time.Millisecond).GPUs})
		}
		kind, body := wire.KindTelemetry, any(tel)
		if gw.Seq() == 0 || len(unacked) == 0 && simNow.Nanosecond()%97 == 0 {
			kind, body = wire.KindFirmware, gw.Inventory()
		}
		data, topic, seq, err := gw.Seal(kind, simNow, body)
		if err != nil {
			panic(err) // the fleet's own bodies always marshal
		}
		return msg{topic: topic, data: data, seq: seq}
	}
	gw.SetSeq(0)
	for ctx.Err() == nil {
		opts := testsvc.GatewayOptions(broker, gw.ID, gw.Key).
			SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(2 * time.Second).SetWriteTimeout(2 * time.Second)
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
			time.Sleep(100 * time.Millisecond) // reconnect pacing while the service is down, as an agent's backoff
			continue
		}
		var inflight []msg
		resend := unacked
		unacked = nil
		broken := false
		for ctx.Err() == nil && !broken {
			var m msg
			if len(resend) > 0 {
				m, resend = resend[0], resend[1:]
			} else {
				m = next()
			}
			m.tok = c.Publish(m.topic, 1, false, m.data)
			inflight = append(inflight, m)
			for len(inflight) > 0 && (len(inflight) >= 50 || inflight[0].tok.WaitTimeout(0)) {
				head := inflight[0]
				if !head.tok.WaitTimeout(5*time.Second) || head.tok.Error() != nil {
					broken = true
					break
				}
				acks.add(gw.ID, head.seq)
				inflight = inflight[1:]
			}
		}
		// Settle what is in flight; keep the unacknowledged for the next connection.
		for _, m := range inflight {
			if !broken && m.tok.WaitTimeout(5*time.Second) && m.tok.Error() == nil {
				acks.add(gw.ID, m.seq)
				continue
			}
			broken = true
			unacked = append(unacked, m)
		}
		unacked = append(unacked, resend...)
		c.Disconnect(0)
	}
}

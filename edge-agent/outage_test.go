package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"twinchain/internal/edge/diskqueue"
	"twinchain/internal/sim/devicesim"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestOutage runs the real agent against a real Mosquitto, stops the broker
// for 30 s, restarts the agent process in the middle of the outage, brings
// the broker back, and checks that every reading the agent produced arrived,
// signed, once after deduplication by sequence number, and in order (live
// messages in order, the backlog in order behind them) at a paho subscriber;
// and that twin-service, consuming the same broker, accepted each exactly once.
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about a minute")
	}
	agentBin, _ := binaries(t)
	dir := t.TempDir()
	// Persistence keeps the subscriber's session across the broker restart,
	// so it misses nothing while it reconnects.
	// Started as root, Mosquitto would switch to its own user and could not
	// write into the test's private folder; "user root" keeps it (and has no
	// effect when the tests do not run as root).
	broker := testsvc.StartMosquitto(t, fmt.Sprintf("persistence true\npersistence_location %s/\nuser root\n", dir))
	sub := subscribe(t, broker.URL(), "outage-checker")

	// The GPU source: a file firmware-sim's simulated host rewrites.
	gpuFile := filepath.Join(dir, "gpus.json")
	host := devicesim.NewGPUHost(8, 7)
	if err := devicesim.WriteSnapshotFile(gpuFile, host.Next(time.Now())); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	conf := filepath.Join(dir, "agent.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`gateway_id: gw-outage
state_dir: %s
log_level: debug
sequence_block: 100
host: {asset: srv-out-001}
mqtt: {broker: %s, backoff_min: 200ms, backoff_max: 2s, status_interval: 5s, replay_rate: 500}
gpu: {source: sim, sim: "file:%s", interval: 50ms}
`, stateDir, broker.URL(), gpuFile)), 0o600)

	// twin-service reads the broker with its own persistent session; the
	// gateway is registered with the key the agent will use.
	pub := agentPublicKey(t, stateDir)
	twinDir := filepath.Join(dir, "twin")
	os.MkdirAll(twinDir, 0o700)
	regJSON, _ := json.Marshal(map[string]any{"gateways": []map[string]any{{"id": "gw-outage", "public_key": []byte(pub), "site": "s1"}}})
	os.WriteFile(filepath.Join(twinDir, "registry.json"), regJSON, 0o600)
	ts := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{DataDir: twinDir,
		Args: []string{"-log-level", "info", "-mqtt-mode", "external", "-mqtt-url", broker.URL(), "-mqtt-username", "twin-outage@test"}})

	a := testsvc.StartProcess(t, agentBin, "run", "--config", conf)
	testsvc.Eventually(t, 30*time.Second, "the first messages", func() bool { return len(sub.snapshot()) >= 20 })
	time.Sleep(2 * time.Second) // the scenario: two more seconds of live data before the outage

	broker.Stop()
	outageStart := time.Now()
	time.Sleep(10 * time.Second) // the scenario: agent A queues 10s of readings while the broker is away
	stop(t, a)
	b := testsvc.StartProcess(t, agentBin, "run", "--config", conf)
	time.Sleep(30*time.Second - time.Since(outageStart)) // the scenario: agent B, restarted, queues until the outage has lasted 30s
	// Taken before the broker starts: the agent may connect (and send its
	// "connected" status) while Restart still waits for the port to answer.
	restarted := time.Now()
	broker.Restart(t)

	produced := queued(a)
	testsvc.Eventually(t, 60*time.Second, "every produced message", func() bool {
		for s, k := range queued(b) {
			produced[s] = k
		}
		got := map[uint64]bool{}
		for _, m := range sub.snapshot() {
			got[m.env.Seq] = true
		}
		for s := range produced {
			if !got[s] {
				return false
			}
		}
		return time.Since(restarted) > 3*time.Second
	})
	stop(t, b)
	for s, k := range queued(b) {
		produced[s] = k
	}
	// A clean stop sends only the "offline" status: what agent B queued in
	// its last moments and had not sent stays in its disk queue for the next
	// start. Such a message is not lost; every other one must arrive.
	q, err := diskqueue.Open(filepath.Join(stateDir, "queue"), diskqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	held := map[uint64]bool{}
	for s := range produced {
		if q.Contains(s) {
			held[s] = true
		}
	}
	q.Close()
	// What agent B sent just before it stopped may still be on its way.
	testsvc.Eventually(t, 10*time.Second, "every message agent B sent at the subscriber", func() bool {
		got := map[uint64]bool{}
		for _, m := range sub.snapshot() {
			got[m.env.Seq] = true
		}
		for s := range produced {
			if !got[s] && !held[s] {
				return false
			}
		}
		return true
	})
	got := map[uint64]bool{}
	for _, m := range sub.snapshot() {
		got[m.env.Seq] = true
	}
	var kept []uint64
	for s := range held {
		if !got[s] {
			kept = append(kept, s)
			delete(produced, s)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i] < kept[j] })
	t.Logf("agent B stopped with %d unsent messages in its disk queue: %v", len(kept), head(kept))
	// The agent keeps sending while it runs: only the last seconds' readings
	// (20 Hz) may be left.
	if len(kept) > 100 {
		t.Errorf("agent B stopped with %d unsent messages, want at most the last 5 s of readings", len(kept))
	}

	msgs := sub.snapshot()
	first := map[uint64]arrival{}
	var order []uint64
	dups := 0
	wills := map[time.Time]bool{}
	for _, m := range msgs {
		if err := m.env.Verify(pub); err != nil {
			t.Errorf("message %d: %v", m.env.Seq, err)
		}
		if m.env.Seq == 0 {
			wills[m.env.Time] = true
			continue
		}
		if prev, ok := first[m.env.Seq]; ok {
			dups++
			if !bytes.Equal(prev.raw, m.raw) {
				t.Errorf("seq %d arrived twice with different bytes", m.env.Seq)
			}
			continue
		}
		first[m.env.Seq] = m
		order = append(order, m.env.Seq)
	}
	var missing, extra []uint64
	for s := range produced {
		if _, ok := first[s]; !ok {
			missing = append(missing, s)
		}
	}
	for s := range first {
		if _, ok := produced[s]; !ok {
			extra = append(extra, s)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	if len(missing) > 0 {
		t.Errorf("%d of %d produced messages never arrived: %v", len(missing), len(produced), head(missing))
	}
	if len(extra) > 0 {
		t.Errorf("%d messages arrived that the agents never logged as queued: %v", len(extra), head(extra))
	}
	// Order: the messages produced during the outage (the backlog) arrive in
	// sequence order; so do the live ones after the restart.
	var lastA uint64
	for s := range queued(a) {
		lastA = max(lastA, s)
	}
	// The agent reconnected when it queued its "connected" status.
	reconnected := time.Time{}
	for _, s := range order {
		m := first[s]
		if m.env.Kind == wire.KindStatus && m.env.Time.After(restarted) {
			if st, err := wire.DecodeBody[wire.Status](&m.env); err == nil && st.Reason == "connected" {
				reconnected = m.env.Time
				break
			}
		}
	}
	if reconnected.IsZero() {
		t.Fatal("no connected status after the broker restart")
	}
	var backlog, live []uint64
	for _, s := range order {
		if first[s].at.After(restarted) {
			if first[s].env.Time.Before(reconnected) {
				backlog = append(backlog, s)
			} else {
				live = append(live, s)
			}
		}
	}
	if !sort.SliceIsSorted(backlog, func(i, j int) bool { return backlog[i] < backlog[j] }) {
		t.Errorf("backlog arrived out of order: %v", head(backlog))
	}
	if !sort.SliceIsSorted(live, func(i, j int) bool { return live[i] < live[j] }) {
		t.Errorf("live messages arrived out of order: %v", head(live))
	}
	minB := ^uint64(0)
	for s := range queued(b) {
		minB = min(minB, s)
	}
	if minB <= lastA {
		t.Errorf("restarted agent began at seq %d, not above the first agent's last %d", minB, lastA)
	}
	t.Logf("produced %d messages (agent A %d, agent B %d from seq %d), %d arrived, %d redelivered duplicates, backlog of %d replayed after the restart, %d live",
		len(produced), len(queued(a)), len(queued(b)), minB, len(first), dups, len(backlog), len(live))
	// twin-service accepted each produced message once, rejected none.
	var maxSeq uint64
	for s := range produced {
		maxSeq = max(maxSeq, s)
	}
	var gs struct {
		Accepted uint64            `json:"accepted"`
		Rejected map[string]uint64 `json:"rejected"`
		LastSeq  uint64            `json:"last_seq"`
		Gaps     uint64            `json:"gaps"`
	}
	testsvc.Eventually(t, 30*time.Second, "twin-service to accept every message", func() bool {
		var st struct {
			Gateways []json.RawMessage `json:"gateways"`
		}
		if !apiGet(ts.URL, ts.AdminToken, "/api/v1/stats/ingest", &st) {
			return false
		}
		for _, g := range st.Gateways {
			if json.Unmarshal(g, &gs) == nil && gs.LastSeq == maxSeq && gs.Accepted >= uint64(len(produced)) {
				return true
			}
		}
		return false
	})
	if gs.Accepted != uint64(len(produced)+len(wills)) {
		t.Errorf("twin-service accepted %d messages, want the %d produced and %d last wills", gs.Accepted, len(produced), len(wills))
	}
	for reason, n := range gs.Rejected {
		if n > 0 && reason != "duplicate" {
			t.Errorf("twin-service rejected %d messages as %s", n, reason)
		}
	}
	t.Logf("twin-service: accepted %d, rejected %v, last seq %d, %d gaps recorded while the backlog was behind live data", gs.Accepted, gs.Rejected, gs.LastSeq, gs.Gaps)
	if len(backlog) < 300 {
		t.Errorf("backlog of %d messages, want the ~600 produced during a 30s outage at 20 Hz", len(backlog))
	}
}

func head(s []uint64) []uint64 {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"twinchain/internal/devicesim"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestOutage runs the real agent against a real Mosquitto, stops the broker
// for 30 s, restarts the agent process in the middle of the outage, brings
// the broker back, and checks that every reading the agent produced arrived,
// once after deduplication by sequence number (as twin-service does), signed,
// and in order: live messages in order, the backlog in order behind them.
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about a minute")
	}
	agentBin, _, _ := binaries(t)
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

	a := start(t, agentBin, "run", "--config", conf)
	waitUntil(t, 30*time.Second, "the first messages", func() bool { return len(sub.snapshot()) >= 20 })
	time.Sleep(2 * time.Second)

	broker.Stop()
	outageStart := time.Now()
	time.Sleep(10 * time.Second)
	a.stop(t)
	b := start(t, agentBin, "run", "--config", conf)
	time.Sleep(30*time.Second - time.Since(outageStart))
	broker.Restart(t)
	restarted := time.Now()

	produced := a.queued()
	waitUntil(t, 60*time.Second, "every produced message", func() bool {
		for s, k := range b.queued() {
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
	b.stop(t)
	time.Sleep(500 * time.Millisecond)
	for s, k := range b.queued() {
		produced[s] = k
	}

	pub := agentPublicKey(t, stateDir)
	msgs := sub.snapshot()
	first := map[uint64]arrival{}
	var order []uint64
	dups := 0
	for _, m := range msgs {
		if err := m.env.Verify(pub); err != nil {
			t.Errorf("message %d: %v", m.env.Seq, err)
		}
		if m.env.Seq == 0 {
			continue // a last will
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
	for s := range a.queued() {
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
	for s := range b.queued() {
		minB = min(minB, s)
	}
	if minB <= lastA {
		t.Errorf("restarted agent began at seq %d, not above the first agent's last %d", minB, lastA)
	}
	t.Logf("produced %d messages (agent A %d, agent B %d from seq %d), %d arrived, %d redelivered duplicates, backlog of %d replayed after the restart, %d live",
		len(produced), len(a.queued()), len(b.queued()), minB, len(first), dups, len(backlog), len(live))
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

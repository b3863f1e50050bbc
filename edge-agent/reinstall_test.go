package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/enroll"
	"twinchain/internal/sim/devicesim"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// TestReinstalledAgentLosesNothing runs the real agent against twin-service's
// embedded broker and changes its key twice in mid-stream, each time
// re-enrolled through the API as a real operator would:
//
//   - re-keyed: while twin-service is down, the agent queues messages signed
//     with its first key; it is stopped, its key file removed and the agent
//     enrolled again (a new key, the same state folder and queue). Started
//     again it sends the old key's queue, then its own messages: the first
//     are accepted in the retired key's epoch, the others in the new one.
//   - reinstalled: a new state folder (new key, new queue, sequence numbers
//     from 1), enrolled again.
//
// Every message each agent process queued is stored exactly once (per
// epoch and sequence number, in twins.db), nothing is rejected as a bad
// signature or a replay, and no replay alert opens.
func TestReinstalledAgentLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service and three agents")
	}
	agentBin, _ := binaries(t)
	dir := t.TempDir()
	ts := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{Args: []string{"-log-level", "info"}})
	base, admin := ts.URL, ts.AdminToken

	gpuFile := filepath.Join(dir, "gpus.json")
	if err := devicesim.WriteSnapshotFile(gpuFile, devicesim.NewGPUHost(2, 3).Next(time.Now())); err != nil {
		t.Fatal(err)
	}
	config := func(state string) string {
		conf := filepath.Join(dir, filepath.Base(state)+".yaml")
		os.WriteFile(conf, []byte(fmt.Sprintf(`gateway_id: gw-reinstall
site: s1
state_dir: %s
log_level: debug
sequence_block: 100
host: {asset: srv-re-001}
mqtt: {broker: tcp://%s, backoff_min: 100ms, backoff_max: 500ms, status_interval: 2s}
gpu: {source: sim, sim: "file:%s", interval: 100ms}
`, state, ts.MQTTAddr, gpuFile)), 0o600)
		return conf
	}
	enrollAgent := func(conf string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tok, err := enroll.IssueToken(ctx, http.DefaultClient, base, admin, enroll.TokenRequest{Site: "s1", GatewayID: "gw-reinstall"})
		if err != nil {
			t.Fatalf("issue token: %v", err)
		}
		en := testsvc.StartProcess(t, agentBin, "enroll", "--config", conf, "--server", base, "--token", tok.Token)
		if err := en.Wait(); err != nil {
			t.Fatalf("edge-agent enroll: %v\n%s", err, en.Output)
		}
	}
	var stats struct {
		Accepted uint64            `json:"accepted"`
		Rejected map[string]uint64 `json:"rejected"`
	}
	accepted := func() uint64 {
		if !apiGet(base, admin, "/api/v1/stats/ingest", &stats) {
			return 0
		}
		return stats.Accepted
	}
	// produced maps each epoch to the sequence numbers its agents queued.
	produced := map[uint64]map[uint64]bool{}
	record := func(p *testsvc.Process, state string) {
		epoch := wire.KeyEpoch(agentPublicKey(t, state))
		if produced[epoch] == nil {
			produced[epoch] = map[uint64]bool{}
		}
		for s := range queued(p) {
			produced[epoch][s] = true
		}
	}

	// The first install streams, then queues through a twin-service outage.
	stateA := filepath.Join(dir, "install-a")
	confA := config(stateA)
	enrollAgent(confA)
	a := testsvc.StartProcess(t, agentBin, "run", "--config", confA)
	testsvc.Eventually(t, 30*time.Second, "the first install's messages", func() bool { return accepted() >= 20 })
	if err := ts.Stop(); err != nil {
		t.Fatalf("twin-service stop: %v", err)
	}
	before := len(queued(a))
	testsvc.Eventually(t, 30*time.Second, "messages queued while twin-service is down", func() bool { return len(queued(a)) >= before+20 })
	stop(t, a)
	record(a, stateA)
	epochA := wire.KeyEpoch(agentPublicKey(t, stateA))

	// Re-keyed: a new key in the same state folder, its queue kept.
	ts.Restart(t)
	if err := os.Remove(filepath.Join(stateA, "agent.key")); err != nil {
		t.Fatal(err)
	}
	enrollAgent(confA)
	b := testsvc.StartProcess(t, agentBin, "run", "--config", confA)
	epochB := wire.KeyEpoch(agentPublicKey(t, stateA))
	if epochB == epochA {
		t.Fatal("re-enrollment kept the key")
	}
	testsvc.Eventually(t, 60*time.Second, "the re-keyed agent's new messages", func() bool {
		return len(queued(b)) >= 20 && accepted() >= uint64(len(produced[epochA])+10)
	})
	stop(t, b)
	record(b, stateA)

	// Reinstalled: a new state folder (key, queue and counter).
	stateC := filepath.Join(dir, "install-c")
	confC := config(stateC)
	enrollAgent(confC)
	c := testsvc.StartProcess(t, agentBin, "run", "--config", confC)
	testsvc.Eventually(t, 60*time.Second, "the reinstalled agent's messages", func() bool { return len(queued(c)) >= 20 })
	stop(t, c)
	record(c, stateC)
	total := 0
	for _, seqs := range produced {
		total += len(seqs)
	}
	testsvc.Eventually(t, 30*time.Second, "every queued message accepted", func() bool { return accepted() >= uint64(total) })
	if stats.Rejected["bad_signature"] != 0 || stats.Rejected["replay"] != 0 {
		t.Errorf("rejected %v; want no bad_signature and no replay", stats.Rejected)
	}
	var alerts struct {
		Alerts []struct {
			Type    string `json:"type"`
			Subject string `json:"subject"`
		} `json:"alerts"`
	}
	if !apiGet(base, admin, "/api/v1/alerts", &alerts) {
		t.Fatal("GET /api/v1/alerts failed")
	}
	for _, al := range alerts.Alerts {
		if al.Type == "replayed_messages" || al.Type == "bad_signatures" {
			t.Errorf("alert %s on %s", al.Type, al.Subject)
		}
	}
	if err := ts.Stop(); err != nil {
		t.Fatalf("twin-service stop: %v", err)
	}

	store, err := twinstore.Open(filepath.Join(ts.DataDir, "twins.db"), twinstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stored := map[uint64]map[uint64]int{}
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
			env, err := wire.Decode(m.Raw)
			if err != nil || m.Gateway != "gw-reinstall" || m.Seq == 0 {
				continue // the offline will has no sequence number
			}
			if stored[env.Epoch] == nil {
				stored[env.Epoch] = map[uint64]int{}
			}
			stored[env.Epoch][env.Seq]++
		}
	}
	for _, epoch := range []uint64{epochA, epochB, wire.KeyEpoch(agentPublicKey(t, stateC))} {
		var missing, twice []uint64
		for s := range produced[epoch] {
			if stored[epoch][s] == 0 {
				missing = append(missing, s)
			}
		}
		for s, n := range stored[epoch] {
			if n > 1 {
				twice = append(twice, s)
			}
		}
		if len(produced[epoch]) < 20 || len(missing) > 0 || len(twice) > 0 {
			t.Errorf("epoch %d: %d queued, %d stored; missing %v, stored twice %v", epoch, len(produced[epoch]), len(stored[epoch]), head(missing), head(twice))
		}
	}
	if len(stored) != 3 {
		t.Errorf("stored epochs = %d, want 3", len(stored))
	}
	t.Logf("stored per epoch: first key %d, re-keyed %d, reinstalled %d; log tail:\n%s", len(stored[epochA]), len(stored[epochB]),
		len(stored[wire.KeyEpoch(agentPublicKey(t, stateC))]), tail(strings.TrimSpace(ts.Output()), 3))
}

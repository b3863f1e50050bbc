package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

const tamperToken = "tamper-auditor"

var tamperGW = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))

// liveService is twin-service's run() on a data directory, with an MQTT
// client of its embedded broker as gateway gw-srv-s1-001.
type liveService struct {
	base   string
	client mqtt.Client
	seq    uint64
	done   chan error
	cancel context.CancelFunc
}

func startLedgerService(t *testing.T, dir string) (*liveService, error) {
	t.Helper()
	reg := registry.File{Gateways: []registry.Gateway{{ID: "gw-srv-s1-001", PublicKey: tamperGW.Public().(ed25519.PublicKey), Site: "s1"}}}
	if err := registry.WriteFile(filepath.Join(dir, "registry.json"), reg); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(tamperToken))
	httpAddr, mqttAddr := testsvc.Addr(testsvc.FreePort(t)), testsvc.Addr(testsvc.FreePort(t))
	cfg := fmt.Sprintf(`data_dir: %s
http: {addr: "%s"}
mqtt: {mode: embedded, embedded: {addr: "%s"}}
log: {level: warn}
auth:
  tokens:
    - {name: auditor, role: admin, sha256: %s}
ledger:
  anchor: {interval: 50ms, max_batch: 4}
`, dir, httpAddr, mqttAddr, hex.EncodeToString(sum[:]))
	cfgPath := filepath.Join(t.TempDir(), "twin.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &liveService{base: "http://" + httpAddr, done: make(chan error, 1), cancel: cancel}
	go func() {
		s.done <- run(ctx, []string{"-config", cfgPath}, func(string) string { return "" }, os.Stderr)
	}()
	for deadline := time.Now().Add(20 * time.Second); testsvc.WaitTCP(mqttAddr, 50*time.Millisecond) != nil; {
		select {
		case err := <-s.done:
			cancel()
			return nil, err
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("twin-service did not open its MQTT port")
		}
	}
	s.client = mqtt.NewClient(testsvc.GatewayOptions("tcp://"+mqttAddr, "gw-srv-s1-001", tamperGW))
	if tok := s.client.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { s.stop(t) })
	return s, nil
}

func (s *liveService) stop(t *testing.T) {
	if s.cancel == nil {
		return
	}
	s.client.Disconnect(50)
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		t.Errorf("twin-service: %v", err)
	}
}

// publish sends n firmware changes (each a twin event and evidence).
func (s *liveService) publish(t *testing.T, n int) {
	t.Helper()
	for range n {
		s.seq++
		inv := wire.Inventory{Host: wire.HostInfo{Asset: "srv-s1-001"}, GPUs: []wire.GPUIdentity{
			{Asset: "srv-s1-001.gpu0", UUID: "GPU-0", Serial: "S0", PCIBusID: "0000:01:00.0", VBIOS: fmt.Sprintf("96.00.%03d", s.seq)}}}
		raw, err := wire.Seal(tamperGW, "gw-srv-s1-001", s.seq, time.Now(), wire.KindFirmware, inv)
		if err != nil {
			t.Fatal(err)
		}
		if tok := s.client.Publish(wire.Topic("gw-srv-s1-001", wire.KindFirmware), 1, false, raw); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
}

type ledgerStatus struct {
	TreeSize  uint64 `json:"tree_size"`
	Damage    string `json:"damage"`
	Anchoring struct {
		AnchoredTo uint64 `json:"anchored_to"`
	} `json:"anchoring"`
}

func (s *liveService) status(t *testing.T) ledgerStatus {
	var st ledgerStatus
	get(t, s.base+"/api/v1/ledger/status", tamperToken, &st)
	return st
}

func (s *liveService) ready() (int, string) {
	resp, err := http.Get(s.base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func replaceIn(t *testing.T, path string, nth int, from, to string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := -1
	for range nth {
		j := bytes.Index(b[i+1:], []byte(from))
		if j < 0 {
			t.Fatalf("%q (occurrence %d) not in %s", from, nth, path)
		}
		i += 1 + j
	}
	copy(b[i:], to)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestServiceRefusesTamperedLedger: a ledger changed while the service was
// stopped (a block, a leaf, an old checkpoint) is found before anything is
// anchored on it: the service stays up read-only, /readyz says the ledger
// is damaged, the ledger status names the place, and new events are not
// anchored. A changed newest checkpoint (the one that commits the tree)
// stops the start with the place named.
func TestServiceRefusesTamperedLedger(t *testing.T) {
	base := t.TempDir()
	s, err := startLedgerService(t, base)
	if err != nil {
		t.Fatal(err)
	}
	s.publish(t, 8)
	testsvc.Eventually(t, 60*time.Second, "anchoring of the first events", func() bool { st := s.status(t); return st.TreeSize >= 9 && st.Anchoring.AnchoredTo == st.TreeSize })
	s.stop(t)

	for _, tc := range []struct {
		name  string
		harm  func(t *testing.T, ledger string)
		where string // in the damage report
	}{
		{"block", func(t *testing.T, l string) {
			replaceIn(t, filepath.Join(l, "blocks", "blocks.dat"), 2, `"height":`, `"height":9`)
		}, "block 2 (blocks.dat offset"},
		{"leaf", func(t *testing.T, l string) {
			replaceIn(t, filepath.Join(l, "events", "leaves.dat"), 3, `96.00.`, `96.01.`)
		}, "leaves.dat offset"},
		{"old checkpoint", func(t *testing.T, l string) {
			replaceIn(t, filepath.Join(l, "events", "checkpoints.jsonl"), 1, `"root":"`, `"root":"00`)
		}, "checkpoints.jsonl line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, base, dir)
			tc.harm(t, filepath.Join(dir, "ledger"))
			s, err := startLedgerService(t, dir)
			if err != nil {
				t.Fatalf("twin-service did not start: %v", err)
			}
			testsvc.Eventually(t, 60*time.Second, "the damage report", func() bool { return s.status(t).Damage != "" })
			st := s.status(t)
			if !strings.Contains(st.Damage, tc.where) {
				t.Errorf("ledger status damage = %q, want it to name %q", st.Damage, tc.where)
			}
			if code, body := s.ready(); code != http.StatusServiceUnavailable || !strings.Contains(body, "ledger") {
				t.Errorf("/readyz = %d %s, want 503 naming the ledger", code, body)
			}
			// New events are stored but never anchored on the damaged ledger.
			s.seq = 100 // past the numbers stored before
			s.publish(t, 4)
			testsvc.Eventually(t, 60*time.Second, "the new events in the store", func() bool {
				var evs struct{ Items []struct{ ID uint64 } }
				get(t, s.base+"/api/v1/assets/srv-s1-001.gpu0/events?limit=100", tamperToken, &evs)
				return len(evs.Items) >= 12
			})
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if now := s.status(t); now.TreeSize != st.TreeSize || now.Anchoring.AnchoredTo != st.Anchoring.AnchoredTo {
					t.Fatalf("anchoring went on on a damaged ledger: tree %d -> %d, anchored to %d -> %d", st.TreeSize, now.TreeSize, st.Anchoring.AnchoredTo, now.Anchoring.AnchoredTo)
				}
			}
		})
	}
	t.Run("newest checkpoint", func(t *testing.T) {
		dir := t.TempDir()
		copyDir(t, base, dir)
		cps, _ := os.ReadFile(filepath.Join(dir, "ledger", "events", "checkpoints.jsonl"))
		n := bytes.Count(cps, []byte("\n"))
		replaceIn(t, filepath.Join(dir, "ledger", "events", "checkpoints.jsonl"), n, `"root":"`, `"root":"00`)
		s, err := startLedgerService(t, dir)
		if err == nil {
			s.stop(t)
			t.Fatal("twin-service started on a tree whose committing checkpoint was changed")
		}
		if want := fmt.Sprintf("checkpoints.jsonl line %d", n); !strings.Contains(err.Error(), want) {
			t.Errorf("start = %v, want it to name %q", err, want)
		}
	})
}

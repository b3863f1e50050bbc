package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/ledger/anchor"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestLedgerEndToEnd runs the whole twin-service (embedded broker, ingest,
// anchoring, embedded ledger, API) and a real MQTT client as a gateway, then
// exports proof bundles with the CLI and checks them with `verify`.
func TestLedgerEndToEnd(t *testing.T) {
	dir := t.TempDir()
	gwKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	reg := registry.File{Gateways: []registry.Gateway{{ID: "gw-srv-s1-001", PublicKey: gwKey.Public().(ed25519.PublicKey), Site: "s1"}}}
	if err := registry.WriteFile(filepath.Join(dir, "registry.json"), reg); err != nil {
		t.Fatal(err)
	}
	token := "pipeline-secret"
	svc := testsvc.StartTwinService(t, testsvc.TwinServiceOptions{
		Config:  "ledger:\n  anchor: {interval: 50ms, max_batch: 4}\n",
		Tokens:  []testsvc.Token{{Name: "pipeline-1", Role: "ml_engineer", Secret: token}},
		DataDir: dir,
	})
	noenv := func(string) string { return "" }
	mqttAddr := svc.MQTTAddr
	c := mqtt.NewClient(testsvc.GatewayOptions("tcp://"+mqttAddr, "gw-srv-s1-001", gwKey))
	if tok := c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	for seq := uint64(1); seq <= 6; seq++ {
		inv := wire.Inventory{Host: wire.HostInfo{Asset: "srv-s1-001"}, GPUs: []wire.GPUIdentity{
			{Asset: "srv-s1-001.gpu0", UUID: "GPU-0", Serial: "S0", PCIBusID: "0000:01:00.0", VBIOS: fmt.Sprintf("96.00.%02d", seq)}}}
		raw, err := wire.Seal(gwKey, "gw-srv-s1-001", seq, time.Now(), wire.KindFirmware, inv)
		if err != nil {
			t.Fatal(err)
		}
		if tok := c.Publish(wire.Topic("gw-srv-s1-001", wire.KindFirmware), 1, false, raw); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// Wait for anchoring to catch up.
	base := svc.URL
	var st struct {
		TreeSize  uint64 `json:"tree_size"`
		Anchoring struct {
			AnchoredTo      uint64 `json:"anchored_to"`
			PendingEvidence int    `json:"pending_evidence"`
			Evidence        uint64 `json:"evidence"`
		} `json:"anchoring"`
	}
	anchored := func() bool {
		return st.TreeSize >= 7 && st.Anchoring.AnchoredTo == st.TreeSize && st.Anchoring.PendingEvidence == 0 && st.Anchoring.Evidence >= 5
	}
	defer func() {
		if !anchored() {
			t.Logf("ledger status: %+v", st)
		}
	}()
	testsvc.Eventually(t, 20*time.Second, "anchoring to catch up with the 6 messages", func() bool {
		get(t, base+"/api/v1/ledger/status", token, &st)
		return anchored()
	})
	// Anchoring shows on /metrics.
	if got := metric(t, base, token, "twinchain_anchored_event"); got != float64(st.TreeSize) {
		t.Errorf("/metrics twinchain_anchored_event = %v, want %d", got, st.TreeSize)
	}
	// Reads need a credential.
	if code := get(t, base+"/api/v1/ledger/anchors/head", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET anchors/head without a token = %d, want 401", code)
	}
	// The ledger records the token's name and role as the caller.
	var head struct {
		Stamp struct{ By, Role string } `json:"stamp"`
	}
	get(t, base+"/api/v1/ledger/anchors/head", token, &head)
	if head.Stamp.Role != "service" {
		t.Errorf("anchor head stamp = %+v, want written by the service role", head.Stamp)
	}
	// The CLI exports a bundle; verify accepts it and refuses a changed one.
	// The auditor pins the service's public key (service.pub, the log).
	pubHex, err := os.ReadFile(filepath.Join(dir, "service.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pinned := strings.TrimSpace(string(pubHex))
	bundle := filepath.Join(dir, "event-5.json")
	cli := func(args ...string) error {
		var out bytes.Buffer
		err := run(context.Background(), args, func(k string) string {
			return map[string]string{"TWINCHAIN_TOKEN": token, "TWINCHAIN_SERVER": base, "TWINCHAIN_VERIFY_KEY": pinned}[k]
		}, &out)
		return err
	}
	if err := cli("ledger", "proof", "-event", "5", "-o", bundle); err != nil {
		t.Fatal(err)
	}
	if err := cli("verify", bundle); err != nil {
		t.Errorf("verify of a fresh bundle: %v", err)
	}
	// Without a pinned key a good bundle is only consistent: exit status 3.
	if code := exitCode(runVerify(context.Background(), []string{bundle}, noenv, io.Discard, io.Discard)); code != exitUntrusted {
		t.Errorf("verify of a fresh bundle without a key: exit status %d, want %d (consistent, key not trusted)", code, exitUntrusted)
	}
	b, _ := os.ReadFile(bundle)
	bad := filepath.Join(dir, "event-5-bad.json")
	os.WriteFile(bad, bytes.Replace(b, []byte(`"event_id":5`), []byte(`"event_id":6`), 1), 0o644)
	if err := cli("verify", bad); err == nil {
		t.Errorf("verify of an edited bundle = nil error, want a failure")
	}
	// An ML pipeline records a dataset with one call, and proves it.
	ds := filepath.Join(dir, "dataset.json")
	os.WriteFile(ds, []byte(`{"id":"ds-e2e","content_hash":"`+strings.Repeat("ab", 32)+`","sources":[{"kind":"system","ref":"s3://b/k"}],"consent":{"policy_ref":"p","licence":"CC0-1.0","use_scope":["training"],"retention_days":30}}`), 0o644)
	if err := cli("ledger", "record-dataset", "-file", ds); err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Registered struct{ By, Role string } `json:"registered"`
	}
	get(t, base+"/api/v1/ledger/datasets/ds-e2e", token, &rec)
	if rec.Registered.By != "pipeline-1" || rec.Registered.Role != "ml_engineer" {
		t.Errorf("dataset registered by %+v, want pipeline-1 as ml_engineer", rec.Registered)
	}
	if err := cli("ledger", "record-dataset", "-file", ds); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("recording the dataset twice = %v, want a 409 conflict", err)
	}
	// Its sensitive metadata goes private; a disclosed copy checks against the hash.
	meta := filepath.Join(dir, "meta.json")
	os.WriteFile(meta, []byte(`{"licensing":"contract C-9","consent":"forms F-1..F-3"}`), 0o644)
	if err := cli("ledger", "put-private", "-id", "ds-e2e", "-file", meta); err != nil {
		t.Fatal(err)
	}
	disclosed := filepath.Join(dir, "disclosed.json")
	var priv struct {
		Data json.RawMessage `json:"data"`
	}
	get(t, base+"/api/v1/ledger/datasets/ds-e2e/private", token, &priv)
	os.WriteFile(disclosed, priv.Data, 0o644)
	var vout bytes.Buffer
	if err := runLedgerCLI(context.Background(), []string{"verify-private", "-id", "ds-e2e", "-file", disclosed}, func(k string) string {
		return map[string]string{"TWINCHAIN_TOKEN": token, "TWINCHAIN_SERVER": base}[k]
	}, &vout, io.Discard); err != nil || !strings.Contains(vout.String(), `"match":true`) {
		t.Errorf("ledger verify-private of the disclosed copy = %v: %s, want a match", err, vout.String())
	}
	dsBundle := filepath.Join(dir, "ds.json")
	if err := cli("ledger", "proof", "-type", "dataset", "-id", "ds-e2e", "-o", dsBundle); err != nil {
		t.Fatal(err)
	}
	if err := cli("verify", dsBundle); err != nil {
		t.Errorf("verify of the dataset bundle: %v", err)
	}
	// Evidence for the firmware changes, with the gateway's envelopes.
	var ev []struct {
		Kind string `json:"kind"`
		Seq  uint64 `json:"seq"`
	}
	get(t, base+"/api/v1/ledger/assets/srv-s1-001.gpu0/evidence", token, &ev)
	if len(ev) != 5 || ev[0].Kind != "firmware" {
		t.Errorf("gpu0 evidence = %+v, want 5 firmware records", ev)
	}

	// The firmware changes raised an alert; its proof is its anchored evidence.
	var alerts struct {
		Items []struct {
			ID       string `json:"id"`
			Evidence []struct {
				Evidence struct {
					Events []struct{ ID uint64 } `json:"events"`
				} `json:"evidence"`
			} `json:"evidence"`
		} `json:"items"`
	}
	get(t, base+"/api/v1/alerts", token, &alerts)
	proved := false
	for _, a := range alerts.Items {
		if len(a.Evidence) == 0 || len(a.Evidence[0].Evidence.Events) == 0 {
			continue
		}
		ab := filepath.Join(dir, "alert.json")
		// 409 while its lifecycle events are not on the log or anchored yet.
		var err error
		testsvc.Eventually(t, 20*time.Second, "alert "+a.ID+"'s events to be anchored (proof answers 409 until then)", func() bool {
			err = cli("ledger", "proof", "-alert", a.ID, "-o", ab)
			return err == nil || !strings.Contains(err.Error(), "409")
		})
		if err != nil {
			t.Errorf("proof of alert %s: %v", a.ID, err)
			break
		}
		if err := cli("verify", ab); err != nil {
			t.Errorf("verify of alert %s's bundle: %v", a.ID, err)
		}
		proved = true
		break
	}
	if !proved {
		t.Logf("no alert with twin events to prove (alerts: %d)", len(alerts.Items))
	}

	// Offline check of the stored ledger, then of a tampered copy.
	if err := svc.Stop(); err != nil {
		t.Errorf("twin-service after SIGTERM: %v", err)
	}
	var out bytes.Buffer
	ledgerDir := filepath.Join(dir, "ledger")
	if err := runVerify(context.Background(), []string{"-key", pinned, ledgerDir}, noenv, &out, io.Discard); err != nil {
		t.Fatalf("verify %s: %v\n%s", ledgerDir, err, out.String())
	}
	out.Reset()
	if err := runVerify(context.Background(), []string{"-key", pinned, dir}, noenv, &out, io.Discard); err != nil || !strings.Contains(out.String(), "ok   store:") {
		t.Errorf("verify of the data directory = %v:\n%s\nwant the store scrubbed and VERIFIED", err, out.String())
	}
	// No key beside the ledger is trusted: without -key it is only consistent.
	out.Reset()
	err = runVerify(context.Background(), []string{ledgerDir}, noenv, &out, io.Discard)
	if exitCode(err) != exitUntrusted || !strings.Contains(out.String(), "KEY IS NOT TRUSTED") {
		t.Errorf("verify of the ledger without a key = %v (exit %d):\n%s\nwant exit %d, consistent but the key not trusted", err, exitCode(err), out.String(), exitUntrusted)
	}
	noenv = func(k string) string { return map[string]string{"TWINCHAIN_VERIFY_KEY": pinned}[k] }
	blocks := filepath.Join(ledgerDir, "blocks", "blocks.dat")
	data, _ := os.ReadFile(blocks)
	second := bytes.IndexByte(data, '\n') + 1 // block 2 starts here
	at := second + bytes.Index(data[second:], []byte(`"writes_hash"`)) - 5
	data[at] ^= 1
	os.WriteFile(blocks, data, 0o644)
	out.Reset()
	err = runVerify(context.Background(), []string{ledgerDir}, noenv, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "block 2 (blocks.dat offset") {
		t.Errorf("verify of a ledger with a flipped byte in block 2 = %v:\n%s\nwant a failure naming block 2", err, out.String())
	}
	leaves := filepath.Join(ledgerDir, "events", "leaves.dat")
	data, _ = os.ReadFile(leaves)
	data[len(data)-10] ^= 1
	os.WriteFile(leaves, data, 0o644)
	out.Reset()
	runVerify(context.Background(), []string{ledgerDir}, noenv, &out, io.Discard)
	if !strings.Contains(out.String(), fmt.Sprintf("event %d", st.TreeSize)) {
		t.Errorf("verify of a tree with a flipped byte in the last event:\n%s\nwant a failure naming event %d", out.String(), st.TreeSize)
	}
}

func get(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// exitCode is the status main exits with for err.
func exitCode(err error) int { return exitStatus(err, io.Discard) }

func TestVerifyEmptyDir(t *testing.T) {
	err := runVerify(context.Background(), []string{t.TempDir()}, nil, io.Discard, io.Discard)
	if exitCode(err) != exitDamaged {
		t.Errorf("verify of an empty directory = %v, want a failure (exit %d)", err, exitDamaged)
	}
}

func TestLedgerConfig(t *testing.T) {
	for _, tc := range []struct {
		c    LedgerConfig
		want string // "" for valid, else text the error holds
	}{
		{LedgerConfig{}, ""},
		{LedgerConfig{Backend: "off"}, ""},
		{LedgerConfig{Backend: "paper"}, "ledger.backend"},
		{LedgerConfig{Backend: "fabric"}, "peer_endpoint"},
		{LedgerConfig{Anchor: anchor.Config{MaxBatch: -1}}, "negative"},
	} {
		err := tc.c.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.c, err, tc.want)
		}
	}
	cfg, err := loadConfig([]string{"-ledger", "off"}, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.Ledger.Backend != "off" {
		t.Errorf("loadConfig(-ledger off) = %q, %v, want backend off", cfg.Ledger.Backend, err)
	}
}

package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func load(t *testing.T, yaml string, args []string, vars map[string]string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return loadConfig(fs, append([]string{"--config", path}, args...), env(vars))
}

// TestExampleConfig checks the commented example in the repository loads and
// validates as it is.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("edge-agent.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, string(data), nil, nil)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if cfg.GatewayID != "gw-s1-dock" || len(cfg.RFID.Readers) != 2 || cfg.RFID.MergeWindow != 2*time.Second ||
		cfg.GPS.Receivers[0].Asset != "gw-s1-dock" || cfg.MQTT.ClientID != "gw-s1-dock" || cfg.Queue.MaxEntries != 200000 ||
		!cfg.GPS.DateFloor.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) || cfg.GPS.EpochTimeout != 500*time.Millisecond {
		t.Errorf("example config = %+v", cfg)
	}
}

func TestConfigPrecedenceAndErrors(t *testing.T) {
	base := "gateway_id: gw-a\nstate_dir: st\nmqtt:\n  broker: tcp://127.0.0.1:1883\n"
	cfg, err := load(t, base, []string{"--broker", "tcp://10.0.0.1:1883"},
		map[string]string{"TWINCHAIN_GATEWAY_ID": "gw-b", "TWINCHAIN_MQTT_BROKER": "tcp://10.0.0.2:1883", "TWINCHAIN_MQTT_PASSWORD": "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GatewayID != "gw-b" || cfg.MQTT.Broker != "tcp://10.0.0.1:1883" || cfg.MQTT.Password != "pw" || cfg.MQTT.Username != "gw-b" {
		t.Errorf("precedence: gateway %q broker %q user %q, want env gateway, flag broker, user = gateway", cfg.GatewayID, cfg.MQTT.Broker, cfg.MQTT.Username)
	}
	if !filepath.IsAbs(cfg.StateDir) || filepath.Base(cfg.StateDir) != "st" {
		t.Errorf("state_dir = %q, want st next to the file", cfg.StateDir)
	}
	cases := []struct{ yaml, want string }{
		{"state_dir: x\nmqtt: {broker: tcp://h:1}\n", "gateway_id"},
		{"gateway_id: g\nmqtt: {broker: http://h:1}\n", `scheme "http"`},
		{"gateway_id: g\nmqtt: {broker: tcp://h:1}\nlog_level: loud\n", "log_level"},
		{"gateway_id: g\nmqtt: {broker: tcp://h:1}\nbrokr: x\n", "field brokr not found"},
		{"gateway_id: g\nmqtt: {broker: tcp://h:1}\nrfid: {readers: [{name: r, protocol: rdm6300, port: /dev/x, read_point: p}]}\n", "zone are required"},
		{"gateway_id: g\nmqtt: {broker: tcp://h:1}\ngps: {receivers: [{name: u}]}\n", "gps.receivers[0].port"},
		{"gateway_id: g\nmqtt: {broker: tcp://h:1}\ngpu: {source: sim}\n", "gpu.sim: required"},
		{"gateway_id: g\nmqtt: {broker: tcp://h:1}\nqueue: {max_bytes: 10}\n", "queue.max_bytes"},
		{"gateway_id: g\nmqtt: {broker: tcp://h:1, cert_file: /c}\n", "use ssl://"},
		{"gateway_id: g\nmqtt: {broker: tcp://h:1}\nrfid: {merge_window: soon}\n", "line 3: cannot unmarshal !!str `soon` into time.Duration"},
	}
	for _, tc := range cases {
		_, err := load(t, tc.yaml, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("loadConfig(%q) = %v, want an error mentioning %q", tc.yaml, err, tc.want)
		}
	}
}

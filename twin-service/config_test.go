package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "twin.yaml")
	yaml := "data_dir: /from/file\nhttp:\n  addr: 127.0.0.1:9000\nmqtt:\n  embedded:\n    addr: 127.0.0.1:1999\ningest:\n  seq_window: 128\n  max_clock_skew: 2m\nlog:\n  level: debug\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"-config", file, "-http", "127.0.0.1:9100"}, envOf(map[string]string{
		"TWINCHAIN_HTTP_ADDR": "127.0.0.1:9050",
		"TWINCHAIN_DATA_DIR":  "/from/env",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"http.addr (flag over env over file)", cfg.HTTP.Addr, "127.0.0.1:9100"},
		{"data_dir (env over file)", cfg.DataDir, "/from/env"},
		{"mqtt.embedded.addr (file)", cfg.MQTT.Embedded.Addr, "127.0.0.1:1999"},
		{"mqtt.mode (default)", cfg.MQTT.Mode, modeEmbedded},
		{"log.level (file)", cfg.Log.Level, "debug"},
		{"registry path (default)", cfg.registryPath(), "/from/env/registry.json"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if cfg.Ingest.SeqWindow != 128 || cfg.Ingest.MaxClockSkew != 2*time.Minute {
		t.Errorf("ingest config = %+v, want seq_window 128 and max_clock_skew 2m from the file", cfg.Ingest)
	}
	cfg, err = loadConfig(nil, envOf(map[string]string{"TWINCHAIN_CONFIG": file, "TWINCHAIN_STORE_NO_SYNC": "true"}), io.Discard)
	if err != nil || cfg.DataDir != "/from/file" || !cfg.Store.NoSync {
		t.Errorf("TWINCHAIN_CONFIG and TWINCHAIN_STORE_NO_SYNC: data_dir %q, no_sync %v, %v; want the file's and true", cfg.DataDir, cfg.Store.NoSync, err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-mqtt-mode", "carrier-pigeon"}, nil, `mqtt.mode "carrier-pigeon"`},
		{[]string{"-mqtt-mode", "external"}, nil, "url is required"},
		{[]string{"-mqtt-mode", "external", "-mqtt-url", "ftp://x:1"}, nil, "unsupported scheme"},
		{[]string{"-mqtt-mode", "external", "-mqtt-url", "tcp://x:1"}, nil, "credential of its own"},
		{[]string{"-mqtt-mode", "external", "-mqtt-url", "tcp://x:1", "-mqtt-username", "twin-service"}, nil, "could be a gateway's"},
		{[]string{"-http", "no-port"}, nil, `http.addr "no-port"`},
		{[]string{"-log-level", "loud", "-log-format", "xml"}, nil, "log.format"},
		{[]string{"-mqtt-addr", "0.0.0.0:1883"}, nil, "plaintext MQTT only on a loopback address"},
		{[]string{"-mqtt-ack", "whenever"}, nil, `ack "whenever"`},
		{[]string{"-data", ""}, nil, "data_dir is required"},
		{nil, map[string]string{"TWINCHAIN_STORE_NO_SYNC": "perhaps"}, "TWINCHAIN_STORE_NO_SYNC"},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, nil, "does not exist"},
		{[]string{"-config", write("unknown.yaml", "htp:\n  addr: x\n")}, nil, "field htp not found"},
		{[]string{"-config", write("neg.yaml", "ingest:\n  queue_size: -1\n")}, nil, "must not be negative"},
		{[]string{"extra"}, nil, "unexpected arguments"},
		{[]string{"-no-such-flag"}, nil, "flag provided but not defined"},
	} {
		_, err := loadConfig(tc.args, envOf(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("loadConfig(%q, %v) = %v, want an error containing %q", tc.args, tc.env, err, tc.want)
		}
	}
	// Several problems are reported together.
	_, err := loadConfig([]string{"-log-level", "loud", "-log-format", "xml"}, envOf(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "log.level") || !strings.Contains(err.Error(), "log.format") {
		t.Errorf("two bad values: %v, want both named", err)
	}
}

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"twinchain/internal/cli"
	"twinchain/internal/edge/diskqueue"
	"twinchain/internal/edge/gpu"
	"twinchain/internal/edge/mqttpub"
	"twinchain/internal/edge/nmea"
	"twinchain/internal/edge/rfid"
	"twinchain/internal/edge/workload"
	"twinchain/internal/wire"
)

// Config is the agent's whole configuration: one YAML file, then
// TWINCHAIN_* environment variables, then flags.
type Config struct {
	GatewayID     string            `yaml:"gateway_id"`
	Site          string            `yaml:"site"`
	StateDir      string            `yaml:"state_dir"` // key, sequence numbers and the queue
	LogLevel      string            `yaml:"log_level"`
	SequenceBlock uint64            `yaml:"sequence_block"`
	Host          HostConfig        `yaml:"host"`
	MQTT          mqttpub.Config    `yaml:"mqtt"`
	Queue         diskqueue.Options `yaml:"queue"`
	RFID          rfid.Config       `yaml:"rfid"`
	GPS           nmea.Config       `yaml:"gps"`
	GPU           gpu.Config        `yaml:"gpu"`
	Workloads     workload.Config   `yaml:"workloads"`
}

// HostConfig describes the machine the agent runs on (wire.HostInfo).
type HostConfig struct {
	Asset     string `yaml:"asset"`
	Hostname  string `yaml:"hostname"`
	Serial    string `yaml:"serial"`
	BoardPart string `yaml:"board_part"`
	RFIDTag   string `yaml:"rfid_tag"`
	Rack      string `yaml:"rack"`
	BIOS      string `yaml:"bios"`
	BMC       string `yaml:"bmc"`
}

func (h HostConfig) info() wire.HostInfo {
	return wire.HostInfo{Asset: h.Asset, Hostname: h.Hostname, Serial: h.Serial, BoardPart: h.BoardPart,
		RFIDTag: h.RFIDTag, Rack: h.Rack, BIOSVersion: h.BIOS, BMCVersion: h.BMC}
}

// setDefaults fills what the file left out.
func (c *Config) setDefaults() {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/twinchain-agent"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.SequenceBlock == 0 {
		c.SequenceBlock = 1000
	}
	if c.Host.Asset == "" {
		c.Host.Asset = c.GatewayID
	}
	if c.Host.Hostname == "" {
		c.Host.Hostname, _ = os.Hostname()
	}
	c.MQTT.SetDefaults(c.GatewayID)
	c.Queue.SetDefaults()
	c.RFID.SetDefaults()
	c.GPS.SetDefaults(c.GatewayID)
	c.GPU.SetDefaults()
	c.Workloads.SetDefaults()
}

// Validate reports the first problem, naming the key to fix.
func (c *Config) Validate() error {
	if !wire.ValidGatewayID(c.GatewayID) {
		return fmt.Errorf("gateway_id %q: want 1-64 characters from [A-Za-z0-9._-] starting with a letter or digit", c.GatewayID)
	}
	if c.StateDir == "" {
		return errors.New("state_dir: required")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	for _, v := range []interface{ Validate() error }{&c.MQTT, &c.Queue, &c.RFID, &c.GPS, &c.GPU, &c.Workloads} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log_level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// loadConfig reads the file named by --config (or TWINCHAIN_AGENT_CONFIG),
// applies environment variables and flags, fills defaults and validates.
// getenv is os.Getenv in main and a map in tests.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	var (
		path     = fs.String("config", getenv("TWINCHAIN_AGENT_CONFIG"), "YAML configuration file (env TWINCHAIN_AGENT_CONFIG)")
		gateway  = fs.String("gateway-id", "", "gateway id (env TWINCHAIN_GATEWAY_ID; overrides gateway_id)")
		broker   = fs.String("broker", "", "MQTT broker URL, tcp://host:1883 or ssl://host:8883 (env TWINCHAIN_MQTT_BROKER)")
		stateDir = fs.String("state-dir", "", "folder for the key, sequence numbers and the queue (env TWINCHAIN_STATE_DIR)")
		level    = fs.String("log-level", "", "debug, info, warn or error")
	)
	if err := fs.Parse(args); err != nil {
		return Config{}, cli.Usage(err)
	}
	var c Config
	if *path != "" {
		data, err := os.ReadFile(*path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", *path, err)
		}
		// Relative paths in the file are relative to the file.
		if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
			c.StateDir = filepath.Join(filepath.Dir(*path), c.StateDir)
		}
	}
	pick := func(dst *string, flagVal, env string) {
		if v := getenv(env); v != "" {
			*dst = v
		}
		if flagVal != "" {
			*dst = flagVal
		}
	}
	pick(&c.GatewayID, *gateway, "TWINCHAIN_GATEWAY_ID")
	pick(&c.MQTT.Broker, *broker, "TWINCHAIN_MQTT_BROKER")
	pick(&c.StateDir, *stateDir, "TWINCHAIN_STATE_DIR")
	pick(&c.MQTT.Password, "", "TWINCHAIN_MQTT_PASSWORD")
	pick(&c.LogLevel, *level, "TWINCHAIN_LOG_LEVEL")
	c.setDefaults()
	if err := c.Validate(); err != nil {
		where := *path
		if where == "" {
			where = "flags and environment (no --config)"
		}
		return c, fmt.Errorf("config %s: %w", where, err)
	}
	return c, nil
}

// helpText is appended to the flag list of `edge-agent run -h`.
var helpText = strings.TrimSpace(`
The configuration file is YAML; see edge-agent.example.yaml for every key with comments.
Environment: TWINCHAIN_AGENT_CONFIG, TWINCHAIN_GATEWAY_ID, TWINCHAIN_MQTT_BROKER,
TWINCHAIN_MQTT_PASSWORD, TWINCHAIN_STATE_DIR, TWINCHAIN_LOG_LEVEL. Flags override the
environment, which overrides the file.`)

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"twinchain/internal/httpapi/auth"
	"twinchain/internal/ingest"
	"twinchain/internal/ingest/broker"
	"twinchain/internal/ingest/mqttsub"
	"twinchain/internal/registry/enrollment"
	"twinchain/internal/telemetry"
)

// MQTT modes.
const (
	modeEmbedded = "embedded"
	modeExternal = "external"
)

// Config is twin-service's whole configuration: defaults, then the YAML
// file, then TWINCHAIN_* environment variables, then flags. Each part owns
// its sub-config and its Validate.
type Config struct {
	DataDir      string        `yaml:"data_dir"`      // the store lives here (twins.db)
	RegistryFile string        `yaml:"registry_file"` // gateway registry JSON; default {data_dir}/registry.json
	Log          LogConfig     `yaml:"log"`
	HTTP         HTTPConfig    `yaml:"http"`
	MQTT         MQTTConfig    `yaml:"mqtt"`
	Ingest       ingest.Config `yaml:"ingest"`
	Store        StoreConfig   `yaml:"store"`

	Telemetry telemetry.Config `yaml:"telemetry"` // backend embedded (default) or influxdb
	Ledger    LedgerConfig     `yaml:"ledger"`
	// DetectConfig is the detection rules, thresholds, geofences and alert
	// routes file (twin-service/detect.example.yaml); empty: defaults.
	DetectConfig string `yaml:"detect_config"`
	// CPUProfile, when set, is a file the whole run's CPU profile (pprof)
	// is written to at stop (make bench-service PROFILE=1).
	CPUProfile string `yaml:"cpu_profile"`
	// MemProfile, when set, is a file the heap profile (pprof) is written
	// to at stop, before the service lets go of its connections and
	// queues, with FILE.peak at the run's peak; the runtime's memory
	// figures are logged with it (make bench-service PROFILE=1).
	MemProfile string `yaml:"mem_profile"`
	// Auth is the dashboard's and API's sign-in: users, API tokens and
	// sessions. Users in auth.users_file (default {data_dir}/users.yaml)
	// are added; at first start that file is made with an admin whose
	// password is printed once.
	Auth auth.Config `yaml:"auth"`
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// HTTPConfig is where and how the API and dashboard are served. On a
// loopback address they are plaintext unless tls says otherwise; on any
// other, TLS (tls.cert_file, else a self-signed certificate) unless
// plaintext is set.
type HTTPConfig struct {
	Addr string  `yaml:"addr"`
	TLS  HTTPTLS `yaml:"tls"`
	// Plaintext serves http:// on a non-loopback address (behind a proxy
	// that terminates TLS; set auth.secure_cookie then).
	Plaintext bool `yaml:"plaintext"`
}

// MQTTConfig chooses the embedded broker or an external one.
type MQTTConfig struct {
	Mode     string         `yaml:"mode"` // embedded or external
	Embedded broker.Config  `yaml:"embedded"`
	External mqttsub.Config `yaml:"external"`
	// GatewayCA issues each gateway its MQTT client certificate at
	// enrollment; the embedded broker's TLS listener trusts it (and gets
	// its server certificate from it). Default: twin-service's own CA,
	// {data_dir}/gateway-ca.pem and gateway-ca.key, made at first start.
	// An operator's CA: both files, which must exist.
	GatewayCA GatewayCAConfig `yaml:"gateway_ca"`
}

// GatewayCAConfig names the gateway CA's certificate and key (PEM).
type GatewayCAConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

func defaultConfig() Config {
	return Config{
		DataDir: "data",
		Log:     LogConfig{Level: "info", Format: "text"},
		HTTP:    HTTPConfig{Addr: "127.0.0.1:8080"},
		MQTT:    MQTTConfig{Mode: modeEmbedded, Embedded: broker.Config{Addr: "127.0.0.1:1883"}},
	}
}

// Validate checks the whole configuration and says what is wrong.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	errs = append(errs, c.HTTP.validate())
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", c.Log.Format))
	}
	if (c.MQTT.GatewayCA.CertFile == "") != (c.MQTT.GatewayCA.KeyFile == "") {
		errs = append(errs, errors.New("mqtt.gateway_ca: cert_file and key_file go together"))
	}
	switch c.MQTT.Mode {
	case modeEmbedded:
		errs = append(errs, c.MQTT.Embedded.Validate())
	case modeExternal:
		errs = append(errs, c.MQTT.External.Validate())
	default:
		errs = append(errs, fmt.Errorf("mqtt.mode %q: want %s or %s", c.MQTT.Mode, modeEmbedded, modeExternal))
	}
	errs = append(errs, c.Ingest.Validate())
	errs = append(errs, c.Store.Validate())
	errs = append(errs, c.Telemetry.WithDefaults().Validate())
	errs = append(errs, c.Ledger.Validate())
	c.Auth.Defaults()
	errs = append(errs, c.Auth.Validate())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}

// openGatewayCA opens the configured gateway CA, or twin-service's own in
// the data directory, made the first time.
func (c *Config) openGatewayCA() (*enrollment.CA, error) {
	if ca := c.MQTT.GatewayCA; ca.CertFile != "" {
		return enrollment.OpenCA(ca.CertFile, ca.KeyFile, false, time.Now)
	}
	return enrollment.OpenCA(filepath.Join(c.DataDir, enrollment.CACertFile), filepath.Join(c.DataDir, enrollment.CAKeyFile), true, time.Now)
}

// usersPath is the users file: users added to auth.users at start.
func (c *Config) usersPath() string {
	if c.Auth.UsersFile != "" {
		return c.Auth.UsersFile
	}
	return filepath.Join(c.DataDir, "users.yaml")
}

// registryPath is the registry file to load and watch.
func (c *Config) registryPath() string {
	if c.RegistryFile != "" {
		return c.RegistryFile
	}
	return filepath.Join(c.DataDir, "registry.json")
}

// setting is one value settable by flag and environment variable.
type setting struct {
	flag, env, usage string
	value            accessor
}

// accessor sets a setting from text and reads it back (for -h's defaults).
type accessor struct {
	set func(c *Config, v string) error
	get func(c *Config) string
}

func (s *setting) set(c *Config, v string) error { return s.value.set(c, v) }

func str(p func(*Config) *string) accessor {
	return accessor{
		set: func(c *Config, v string) error { *p(c) = v; return nil },
		get: func(c *Config) string { return *p(c) },
	}
}

func boolean(p func(*Config) *bool) accessor {
	return accessor{
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not a boolean", v)
			}
			*p(c) = b
			return nil
		},
		get: func(c *Config) string {
			if *p(c) {
				return "true"
			}
			return ""
		},
	}
}

var settings = []setting{
	{"data", "TWINCHAIN_DATA_DIR", "data directory (the store, the default registry file)", str(func(c *Config) *string { return &c.DataDir })},
	{"registry", "TWINCHAIN_REGISTRY", "gateway registry JSON file (default {data}/registry.json), re-read when it changes", str(func(c *Config) *string { return &c.RegistryFile })},
	{"http", "TWINCHAIN_HTTP_ADDR", "HTTP API listen address (loopback: plaintext; any other: TLS)", str(func(c *Config) *string { return &c.HTTP.Addr })},
	{"http-cert", "TWINCHAIN_HTTP_CERT", "PEM certificate (chain) to serve the API over TLS with", str(func(c *Config) *string { return &c.HTTP.TLS.CertFile })},
	{"http-key", "TWINCHAIN_HTTP_KEY", "PEM private key of -http-cert", str(func(c *Config) *string { return &c.HTTP.TLS.KeyFile })},
	{"http-self-signed", "TWINCHAIN_HTTP_SELF_SIGNED", "serve TLS with a self-signed certificate kept in {data}/tls/ (the default on a non-loopback address)", boolean(func(c *Config) *bool { return &c.HTTP.TLS.SelfSigned })},
	{"http-plaintext", "TWINCHAIN_HTTP_PLAINTEXT", "serve plaintext http:// on a non-loopback address (behind a TLS proxy)", boolean(func(c *Config) *bool { return &c.HTTP.Plaintext })},
	{"mqtt-mode", "TWINCHAIN_MQTT_MODE", "embedded (a broker inside twin-service) or external (a client of -mqtt-url)", str(func(c *Config) *string { return &c.MQTT.Mode })},
	{"mqtt-addr", "TWINCHAIN_MQTT_ADDR", "embedded broker listen address", str(func(c *Config) *string { return &c.MQTT.Embedded.Addr })},
	{"mqtt-tls-addr", "TWINCHAIN_MQTT_TLS_ADDR", "embedded broker TLS listen address, e.g. 0.0.0.0:8883 (empty: none)", str(func(c *Config) *string { return &c.MQTT.Embedded.TLS.Addr })},
	{"mqtt-require-client-cert", "TWINCHAIN_MQTT_REQUIRE_CLIENT_CERT", "embedded broker: a TLS client must present its enrolled gateway certificate", boolean(func(c *Config) *bool { return &c.MQTT.Embedded.TLS.RequireClientCert })},
	{"mqtt-allow-plaintext", "TWINCHAIN_MQTT_ALLOW_PLAINTEXT", "embedded broker: allow -mqtt-addr (plaintext) on a non-loopback address", boolean(func(c *Config) *bool { return &c.MQTT.Embedded.AllowPlaintext })},
	{"mqtt-ack", "TWINCHAIN_MQTT_ACK", "embedded broker acknowledgements: pipelined (default: a window of messages per connection, each PUBACK after its commit) or sync (one message per connection per commit)", str(func(c *Config) *string { return &c.MQTT.Embedded.Ack })},
	{"mqtt-url", "TWINCHAIN_MQTT_URL", "external broker URL, e.g. tcp://127.0.0.1:1883", str(func(c *Config) *string { return &c.MQTT.External.URL })},
	{"mqtt-client-id", "TWINCHAIN_MQTT_CLIENT_ID", "client id of the persistent session with the external broker (default: the username; never a possible gateway id, e.g. twin-service@site1)", str(func(c *Config) *string { return &c.MQTT.External.ClientID })},
	{"mqtt-username", "TWINCHAIN_MQTT_USERNAME", "twin-service's own user at the external broker", str(func(c *Config) *string { return &c.MQTT.External.Username })},
	{"mqtt-password", "TWINCHAIN_MQTT_PASSWORD", "its password (prefer the environment variable to the flag)", str(func(c *Config) *string { return &c.MQTT.External.Password })},
	{"log-level", "TWINCHAIN_LOG_LEVEL", "debug, info, warn or error", str(func(c *Config) *string { return &c.Log.Level })},
	{"log-format", "TWINCHAIN_LOG_FORMAT", "text or json", str(func(c *Config) *string { return &c.Log.Format })},
	{"telemetry-backend", "TWINCHAIN_TELEMETRY_BACKEND", "telemetry store: embedded or influxdb", str(func(c *Config) *string { return &c.Telemetry.Backend })},
	{"telemetry-url", "TWINCHAIN_TELEMETRY_URL", "InfluxDB URL, e.g. http://127.0.0.1:8086", str(func(c *Config) *string { return &c.Telemetry.URL })},
	{"telemetry-org", "TWINCHAIN_TELEMETRY_ORG", "InfluxDB 2.x organisation (1.8: ignored)", str(func(c *Config) *string { return &c.Telemetry.Org })},
	{"telemetry-bucket", "TWINCHAIN_TELEMETRY_BUCKET", "InfluxDB bucket (1.8: database or database/retention-policy)", str(func(c *Config) *string { return &c.Telemetry.Bucket })},
	{"telemetry-token", "TWINCHAIN_TELEMETRY_TOKEN", "InfluxDB token (1.8: user:password or empty)", str(func(c *Config) *string { return &c.Telemetry.Token })},
	{"no-auth", "TWINCHAIN_NO_AUTH", "turn sign-in off: every API request acts as admin (tests only)", boolean(func(c *Config) *bool { return &c.Auth.Disabled })},
	{"detect-config", "TWINCHAIN_DETECT_CONFIG", "detection rules and alert routes YAML file (see twin-service/detect.example.yaml)", str(func(c *Config) *string { return &c.DetectConfig })},
	{"store-no-sync", "TWINCHAIN_STORE_NO_SYNC", "skip fsync (benchmarks only: a crash loses acknowledged messages)", boolean(func(c *Config) *bool { return &c.Store.NoSync })},
	{"cpu-profile", "TWINCHAIN_CPU_PROFILE", "write the run's CPU profile (pprof) to this file at stop (benchmarks)", str(func(c *Config) *string { return &c.CPUProfile })},
	{"mem-profile", "TWINCHAIN_MEM_PROFILE", "write the heap profile (pprof) to this file at stop and to FILE.peak at the peak, and log the runtime's memory figures (benchmarks)", str(func(c *Config) *string { return &c.MemProfile })},
	{"ledger", "TWINCHAIN_LEDGER", "ledger backend: file (embedded, default), fabric (ledger.fabric settings) or off", str(func(c *Config) *string { return &c.Ledger.Backend })},
}

// loadConfig reads defaults, the file (-config or TWINCHAIN_CONFIG), the
// environment and the flags, in that order, and validates the result.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fset := flag.NewFlagSet("twin-service", flag.ContinueOnError)
	fset.SetOutput(stderr)
	configPath := fset.String("config", "", "YAML configuration file (env TWINCHAIN_CONFIG)")
	values := make([]*string, len(settings))
	defaults := defaultConfig()
	for i, s := range settings {
		// The default shows in -h; only flags given on the command line
		// are applied (fset.Visit below), so it overrides nothing.
		values[i] = fset.String(s.flag, s.value.get(&defaults), fmt.Sprintf("%s (env %s)", s.usage, s.env))
	}
	fset.Usage = func() { serviceUsage(stderr, fset) }
	if err := fset.Parse(args); err != nil {
		return Config{}, usageError(err)
	}
	if fset.NArg() > 0 {
		return Config{}, usageError(fmt.Errorf("unexpected arguments %q (twin-service -h lists the commands)", fset.Args()))
	}
	cfg := defaultConfig()
	path := *configPath
	if path == "" {
		path = getenv("TWINCHAIN_CONFIG")
	}
	if path != "" {
		if err := readConfigFile(path, &cfg); err != nil {
			return Config{}, err
		}
	}
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.set(&cfg, v); err != nil {
				return Config{}, fmt.Errorf("%s: %w", s.env, err)
			}
		}
	}
	var ferr error
	fset.Visit(func(f *flag.Flag) {
		for i, s := range settings {
			if s.flag == f.Name && ferr == nil {
				if err := s.set(&cfg, *values[i]); err != nil {
					ferr = fmt.Errorf("-%s: %w", s.flag, err)
				}
			}
		}
	})
	if ferr != nil {
		return Config{}, ferr
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func readConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("config file %s does not exist", path)
	}
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

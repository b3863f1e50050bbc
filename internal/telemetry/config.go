package telemetry

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Backends a Config can name.
const (
	BackendEmbedded = "embedded"
	BackendInfluxDB = "influxdb"
)

// Config is the `telemetry:` section of twin-service's configuration.
type Config struct {
	// Backend is "embedded" (default) or "influxdb".
	Backend string `yaml:"backend" koanf:"backend" json:"backend"`
	// Dir holds the embedded store, or the InfluxDB backend's replay log.
	// Empty: <data dir>/telemetry, filled in by twin-service.
	Dir string `yaml:"dir" koanf:"dir" json:"dir"`
	// Retention drops points older than this; 0 keeps them forever. With
	// InfluxDB the bucket's retention policy deletes them; this only limits
	// what queries return.
	Retention time.Duration `yaml:"retention" koanf:"retention" json:"retention"`

	// URL of the InfluxDB server, e.g. http://127.0.0.1:8086.
	URL string `yaml:"url" koanf:"url" json:"url"`
	// Org is the InfluxDB 2.x organisation; InfluxDB 1.8 ignores it.
	Org string `yaml:"org" koanf:"org" json:"org"`
	// Bucket is the 2.x bucket, or "database/retention-policy" (or just
	// "database") on 1.8.
	Bucket string `yaml:"bucket" koanf:"bucket" json:"bucket"`
	// Token is the 2.x API token, "user:password" for 1.8 with
	// authentication, or empty.
	Token string `yaml:"token" koanf:"token" json:"-"`
	// ReplayBudgetBytes bounds the on-disk replay log of points not yet
	// written to InfluxDB. When an outage outlasts it the oldest points are
	// dropped, counted and logged. Default 1 GiB: at 1,000 GPU samples/s
	// (about 300 bytes each) that is an hour of outage.
	ReplayBudgetBytes int64 `yaml:"replay_budget_bytes" koanf:"replay_budget_bytes" json:"replay_budget_bytes"`
	// BatchPoints is the most points in one write request (default 5000).
	BatchPoints int `yaml:"batch_points" koanf:"batch_points" json:"batch_points"`
	// FlushInterval is how long a partial batch waits (default 1s).
	FlushInterval time.Duration `yaml:"flush_interval" koanf:"flush_interval" json:"flush_interval"`
	// Timeout bounds one request to InfluxDB (default 10s).
	Timeout time.Duration `yaml:"timeout" koanf:"timeout" json:"timeout"`
}

// Defaults of Config.
const (
	DefaultReplayBudgetBytes = 1 << 30
	DefaultBatchPoints       = 5000
	DefaultFlushInterval     = time.Second
	DefaultTimeout           = 10 * time.Second
)

// WithDefaults fills the zero fields of c.
func (c Config) WithDefaults() Config {
	if c.Backend == "" {
		c.Backend = BackendEmbedded
	}
	if c.ReplayBudgetBytes == 0 {
		c.ReplayBudgetBytes = DefaultReplayBudgetBytes
	}
	if c.BatchPoints == 0 {
		c.BatchPoints = DefaultBatchPoints
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate checks c after WithDefaults.
func (c Config) Validate() error {
	var errs []error
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("retention %s is negative", c.Retention))
	} else if c.Retention > 0 && c.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("retention %s is under 1h (InfluxDB's shortest)", c.Retention))
	}
	switch c.Backend {
	case BackendEmbedded:
	case BackendInfluxDB:
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("url %q: want http(s)://host:port", c.URL))
		}
		if c.Bucket == "" {
			errs = append(errs, errors.New("bucket is required (1.8: database or database/retention-policy)"))
		} else if strings.Count(c.Bucket, "/") > 1 {
			errs = append(errs, fmt.Errorf("bucket %q: at most one / (database/retention-policy)", c.Bucket))
		}
		if c.ReplayBudgetBytes < 1<<20 {
			errs = append(errs, fmt.Errorf("replay_budget_bytes %d is under 1 MiB", c.ReplayBudgetBytes))
		}
		if c.BatchPoints < 1 || c.BatchPoints > 100000 {
			errs = append(errs, fmt.Errorf("batch_points %d: want 1..100000", c.BatchPoints))
		}
		if c.FlushInterval <= 0 || c.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("flush_interval %s and timeout %s must be positive", c.FlushInterval, c.Timeout))
		}
	default:
		errs = append(errs, fmt.Errorf("backend %q: want %q or %q", c.Backend, BackendEmbedded, BackendInfluxDB))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry config: %w", err)
	}
	return nil
}

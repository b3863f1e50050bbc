package alert

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"twinchain/internal/detect"
)

// Config is the alerting section of the detection configuration file.
type Config struct {
	// EscalateAfter re-notifies an unacknowledged alert this often, at
	// most EscalateMax times; 0 turns escalation off.
	EscalateAfter time.Duration    `yaml:"escalate_after"`
	EscalateMax   int              `yaml:"escalate_max"`
	Quarantine    QuarantinePolicy `yaml:"quarantine"`
	// IncidentWindow: an alert joins an open incident of its cause and
	// scope whose newest finding is at most this much older than the
	// alert's first (incident.go).
	IncidentWindow time.Duration         `yaml:"incident_window"`
	Sinks          map[string]SinkConfig `yaml:"sinks"`
	Routes         []Route               `yaml:"routes"`
}

// QuarantinePolicy moves an asset to quarantined when an alert of one of
// Types (any type when empty) with at least MinSeverity opens on it.
type QuarantinePolicy struct {
	Enabled     bool            `yaml:"enabled"`
	MinSeverity detect.Severity `yaml:"min_severity"`
	Types       []detect.Type   `yaml:"types"`
}

// Applies reports whether the policy quarantines the asset of a.
func (q *QuarantinePolicy) Applies(a *Alert) bool {
	return q.Enabled && a.Severity >= q.MinSeverity && (len(q.Types) == 0 || slices.Contains(q.Types, a.Type))
}

// Sink kinds.
const (
	SinkWebhook = "webhook"
	SinkMQTT    = "mqtt"
)

// SinkConfig is one destination. A webhook POSTs the notification as JSON
// (or a Slack-compatible {"text": ...} body when Slack is set), signed with
// HMAC-SHA256 over "timestamp.body" with Secret. An mqtt sink publishes it on
// wire.AlertTopic(site, type).
type SinkConfig struct {
	Kind        string        `yaml:"kind"`
	URL         string        `yaml:"url"`
	Secret      string        `yaml:"secret"`
	Slack       bool          `yaml:"slack"`
	Timeout     time.Duration `yaml:"timeout"`
	BackoffMin  time.Duration `yaml:"backoff_min"`
	BackoffMax  time.Duration `yaml:"backoff_max"`
	MaxAttempts int           `yaml:"max_attempts"` // 0: retry until delivered
}

// Route sends alerts that match it to its sinks.
type Route struct {
	Name        string          `yaml:"name"`
	MinSeverity detect.Severity `yaml:"min_severity"`
	Sites       []string        `yaml:"sites"`
	Types       []detect.Type   `yaml:"types"`
	Sinks       []string        `yaml:"sinks"`
}

// Match reports whether the route takes a.
func (r *Route) Match(a *Alert) bool {
	return a.Severity >= r.MinSeverity && (len(r.Sites) == 0 || slices.Contains(r.Sites, a.Site)) &&
		(len(r.Types) == 0 || slices.Contains(r.Types, a.Type))
}

// sinksFor lists the sinks the routes send a to, each once, in route order.
// SinksFor names the sinks that a goes to.
func (c *Config) SinksFor(a *Alert) []string {
	var out []string
	for i := range c.Routes {
		if c.Routes[i].Match(a) {
			for _, s := range c.Routes[i].Sinks {
				if !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// DefaultConfig escalates every 15 minutes, up to 8 times, with no sinks,
// and correlates alerts within 15 minutes into incidents.
func DefaultConfig() Config {
	return Config{EscalateAfter: 15 * time.Minute, EscalateMax: 8, Quarantine: QuarantinePolicy{MinSeverity: detect.Critical}, IncidentWindow: 15 * time.Minute}
}

// WithDefaults fills a sink's unset timings.
func (s SinkConfig) WithDefaults() SinkConfig {
	if s.Timeout == 0 {
		s.Timeout = 10 * time.Second
	}
	if s.BackoffMin == 0 {
		s.BackoffMin = time.Second
	}
	if s.BackoffMax == 0 {
		s.BackoffMax = 5 * time.Minute
	}
	return s
}

// Validate checks the section; each error is a *detect.FieldError.
func (c *Config) Validate() error {
	es := detect.Errs{Prefix: []string{"alerts"}}
	if c.IncidentWindow < 0 {
		es.Add("must not be negative", "incident_window")
	}
	if c.EscalateAfter < 0 || c.EscalateMax < 0 {
		es.Add("escalation settings must not be negative", "escalate_after")
	}
	for name, s := range c.Sinks {
		switch s.Kind {
		case SinkWebhook:
			u, err := url.Parse(s.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				es.Add(fmt.Sprintf("url %q is not an http(s) URL", s.URL), "sinks", name, "url")
			}
			if s.Secret == "" {
				es.Add("a webhook needs a secret to sign with", "sinks", name, "secret")
			}
		case SinkMQTT:
		default:
			es.Add(fmt.Sprintf("kind %q is not webhook or mqtt", s.Kind), "sinks", name, "kind")
		}
		if s.BackoffMin < 0 || s.BackoffMax < s.BackoffMin || s.MaxAttempts < 0 || s.Timeout < 0 {
			es.Add("backoff_min <= backoff_max, max_attempts and timeout not negative", "sinks", name)
		}
	}
	for i, r := range c.Routes {
		if len(r.Sinks) == 0 {
			es.Add("a route needs at least one sink", "routes", strconv.Itoa(i), "sinks")
		}
		for j, s := range r.Sinks {
			if _, ok := c.Sinks[s]; !ok && s != SinkSSE {
				es.Add(fmt.Sprintf("no sink named %q (sinks: %s)", s, sinkNames(c.Sinks)), "routes", strconv.Itoa(i), "sinks", strconv.Itoa(j))
			}
		}
	}
	return es.Err()
}

// SinkSSE is the built-in server-sent-events stream; every alert goes to it
// whatever the routes say, and routes may name it for clarity.
const SinkSSE = "sse"

func sinkNames(m map[string]SinkConfig) string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return fmt.Sprint(names)
}

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
	SinkWebhook      = "webhook"
	SinkMQTT         = "mqtt"
	SinkAlertmanager = "alertmanager"
	SinkSyslog       = "syslog"
)

// SinkConfig is one destination. A webhook POSTs the notification as JSON
// (or a Slack-compatible {"text": ...} body when Slack is set), signed with
// HMAC-SHA256 over "timestamp.body" with Secret. An mqtt sink publishes it on
// wire.AlertTopic(site, type). An alertmanager sink posts it to a Prometheus
// Alertmanager's /api/v2/alerts at URL (Secret, when set, as a bearer token).
// A syslog sink sends an RFC 5424 message to URL, tcp://host:port or
// udp://host:port. docs/detection.md describes each payload.
type SinkConfig struct {
	Kind   string `yaml:"kind"`
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
	Slack  bool   `yaml:"slack"`
	// Alertmanager: how long an open alert stays firing after its latest
	// notification (default 24h), extra labels, and the dashboard's
	// address for generatorURL.
	Hold         time.Duration     `yaml:"hold"`
	Labels       map[string]string `yaml:"labels"`
	DashboardURL string            `yaml:"dashboard_url"`
	// Syslog: the facility name (default local0) and HOSTNAME (default
	// the machine's name).
	Facility string `yaml:"facility"`
	Hostname string `yaml:"hostname"`

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
	if s.Hold == 0 {
		s.Hold = 24 * time.Hour
	}
	if s.Facility == "" {
		s.Facility = "local0"
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
		case SinkAlertmanager:
			u, err := url.Parse(s.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				es.Add(fmt.Sprintf("url %q is not an http(s) URL of an Alertmanager", s.URL), "sinks", name, "url")
			}
			if s.Hold < 0 {
				es.Add("hold must not be negative", "sinks", name, "hold")
			}
		case SinkSyslog:
			if _, _, err := ParseSyslogURL(s.URL); err != nil {
				es.Add(err.Error(), "sinks", name, "url")
			}
			if _, ok := SyslogFacilities[s.WithDefaults().Facility]; !ok {
				es.Add(fmt.Sprintf("facility %q is not one of kern, user, daemon, auth, syslog, authpriv, local0..local7", s.Facility), "sinks", name, "facility")
			}
		default:
			es.Add(fmt.Sprintf("kind %q is not webhook, mqtt, alertmanager or syslog", s.Kind), "sinks", name, "kind")
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

// SyslogFacilities names the syslog facilities a syslog sink may use.
var SyslogFacilities = map[string]int{
	"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// ParseSyslogURL splits tcp://host:port or udp://host:port.
func ParseSyslogURL(raw string) (network, addr string, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "udp") || u.Port() == "" || u.Path != "" {
		return "", "", fmt.Errorf("url %q is not tcp://host:port or udp://host:port", raw)
	}
	return u.Scheme, u.Host, nil
}

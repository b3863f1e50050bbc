package alertstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
)

// syslogSink sends each notification as one RFC 5424 message: PRI from the
// configured facility and the alert's severity, MSGID the event, the alert's
// key fields as structured data (SD-ID twinchain@32473) and, as MSG, a
// UTF-8 JSON object (SyslogPayload). Over tcp:// it uses octet-counting
// framing (RFC 6587 3.4.1) on one kept connection; over udp:// one datagram
// per message. Syslog has no acknowledgement: a message counts as delivered
// once the kernel took it, so a receiver that dies holding it loses it.
type syslogSink struct {
	cfg      alert.SinkConfig
	network  string // tcp or udp
	addr     string
	facility int
	hostname string
	conn     net.Conn // kept between deliveries; only the dispatcher's goroutine uses it
}

// SyslogSDID is the structured-data id of twinchain's syslog messages
// (32473 is the private enterprise number reserved for documentation,
// RFC 5612).
const SyslogSDID = "twinchain@32473"

// SyslogPayload is the JSON object a syslog message carries as MSG, schema
// "twinchain.alert/1". Fields are never renamed within a schema version.
type SyslogPayload struct {
	Schema    string          `json:"schema"`
	Event     string          `json:"event"`
	At        time.Time       `json:"at"`
	ID        string          `json:"id"`
	Type      detect.Type     `json:"type"`
	Severity  detect.Severity `json:"severity"`
	State     alert.State     `json:"state"`
	Asset     string          `json:"asset"`
	Site      string          `json:"site,omitempty"`
	Summary   string          `json:"summary"`
	Count     int             `json:"count"`
	FirstSeen time.Time       `json:"first_seen"`
	LastSeen  time.Time       `json:"last_seen"`
	Response  string          `json:"response,omitempty"`
	By        string          `json:"by,omitempty"`       // who made the latest lifecycle step
	Comment   string          `json:"comment,omitempty"`  // and what they wrote
	Assignee  string          `json:"assignee,omitempty"` // who works on it
}

func newSyslogSink(cfg alert.SinkConfig) (*syslogSink, error) {
	network, addr, err := alert.ParseSyslogURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	fac, ok := alert.SyslogFacilities[cfg.Facility]
	if !ok {
		return nil, fmt.Errorf("facility %q unknown", cfg.Facility)
	}
	host := cfg.Hostname
	if host == "" {
		host, _ = os.Hostname() // "-" below when unknown
	}
	return &syslogSink{cfg: cfg, network: network, addr: addr, facility: fac, hostname: host}, nil
}

// syslogSeverity maps an alert's severity to a syslog severity.
func syslogSeverity(s detect.Severity) int {
	switch {
	case s >= detect.Critical:
		return 2 // crit
	case s >= detect.Warning:
		return 4 // warning
	}
	return 6 // informational
}

// sdEscape escapes a PARAM-VALUE (RFC 5424 6.3.3).
var sdEscape = strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`)

// header field: printable US-ASCII without spaces, at most n bytes, else "-".
func headerField(s string, n int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// syslogMessage formats n as one RFC 5424 message (without transport framing).
func syslogMessage(n *alert.Notification, facility int, hostname string) ([]byte, error) {
	a := &n.Alert
	p := SyslogPayload{Schema: "twinchain.alert/1", Event: n.Event, At: n.At, ID: a.ID, Type: a.Type, Severity: a.Severity,
		State: a.State, Asset: a.Asset, Site: a.Site, Summary: a.Summary, Count: a.Count, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, Response: a.Response, Assignee: a.Assignee}
	if h := a.History; len(h) > 0 {
		p.By, p.Comment = h[len(h)-1].By, h[len(h)-1].Comment
	}
	js, err := json.Marshal(&p)
	if err != nil {
		return nil, err
	}
	var b []byte
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(facility*8+syslogSeverity(a.Severity)), 10)
	b = append(b, ">1 "...)
	b = n.At.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, headerField(hostname, 255)...)
	b = append(b, " twin-service - "...)
	b = append(b, headerField(n.Event, 32)...)
	b = append(b, " ["+SyslogSDID...)
	for _, kv := range [][2]string{{"id", a.ID}, {"event", n.Event}, {"type", string(a.Type)}, {"severity", a.Severity.String()},
		{"state", string(a.State)}, {"asset", a.Asset}, {"site", a.Site}} {
		if kv[1] == "" {
			continue
		}
		b = append(b, ' ')
		b = append(b, kv[0]...)
		b = append(b, `="`...)
		b = append(b, sdEscape.Replace(kv[1])...)
		b = append(b, '"')
	}
	b = append(b, "] \xEF\xBB\xBF"...) // BOM: MSG is UTF-8
	return append(b, js...), nil
}

func (s *syslogSink) deliver(ctx context.Context, d *delivery) error {
	msg, err := syslogMessage(&d.N, s.facility, s.hostname)
	if err != nil {
		return err
	}
	if s.network == "tcp" { // octet counting: "LEN SP MSG"
		framed := strconv.AppendInt(make([]byte, 0, len(msg)+8), int64(len(msg)), 10)
		msg = append(append(framed, ' '), msg...)
	}
	if s.conn != nil && s.network == "tcp" && peerClosed(s.conn) {
		s.drop()
	}
	if s.conn == nil {
		dl := net.Dialer{Timeout: s.cfg.Timeout}
		c, err := dl.DialContext(ctx, s.network, s.addr)
		if err != nil {
			return fmt.Errorf("syslog %s: %w", s.cfg.URL, err)
		}
		s.conn = c
	}
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
		s.drop()
		return err
	}
	if _, err := s.conn.Write(msg); err != nil {
		s.drop()
		return fmt.Errorf("syslog %s: %w", s.cfg.URL, err)
	}
	return nil
}

// drop closes a connection that failed or was closed by the receiver; the
// next delivery dials again.
func (s *syslogSink) drop() { _ = s.Close() }

// Close closes the kept connection.
func (s *syslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

package alertstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"twinchain/internal/detect/alert"
)

// alertmanager posts alerts to a Prometheus Alertmanager's v2 API
// (POST /api/v2/alerts), so its routing, grouping, silences and inhibition
// apply to twinchain alerts. Each twinchain alert is one Alertmanager alert,
// identified by its labels (alert_id among them). An open or acknowledged
// alert is posted with endsAt = now + Hold, and each later notification
// (escalation, acknowledgement) extends it; a resolved alert is posted with
// endsAt = now, which resolves it in Alertmanager at once.
type alertmanager struct {
	cfg    alert.SinkConfig
	client *http.Client
}

// amAlert is one element of Alertmanager's postableAlerts.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alertmanagerBody is the JSON array the sink posts for n.
func alertmanagerBody(n *alert.Notification, cfg alert.SinkConfig) ([]byte, error) {
	a := &n.Alert
	labels := map[string]string{
		"alertname": "twinchain_" + string(a.Type),
		"alert_id":  a.ID,
		"type":      string(a.Type),
		"severity":  a.Severity.String(),
		"asset":     a.Asset,
		"source":    "twinchain",
	}
	if a.Site != "" {
		labels["site"] = a.Site
	}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	ends := n.At.Add(cfg.Hold)
	if a.State == alert.Resolved {
		ends = n.At
	}
	am := amAlert{
		Labels: labels,
		Annotations: map[string]string{
			"summary": a.Summary,
			"state":   string(a.State),
			"event":   n.Event,
			"count":   strconv.Itoa(a.Count),
		},
		StartsAt: a.FirstSeen,
		EndsAt:   ends,
	}
	if a.FirstSeen.IsZero() || a.FirstSeen.After(ends) {
		am.StartsAt = a.Opened
	}
	if a.Assignee != "" {
		am.Annotations["assignee"] = a.Assignee
	}
	if cfg.DashboardURL != "" {
		am.GeneratorURL = strings.TrimSuffix(cfg.DashboardURL, "/") + "/#/alerts/" + a.ID
	}
	return json.Marshal([]amAlert{am})
}

func (m *alertmanager) deliver(ctx context.Context, d *delivery) error {
	body, err := alertmanagerBody(&d.N, m.cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	url := strings.TrimSuffix(m.cfg.URL, "/") + "/api/v2/alerts"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if m.cfg.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+m.cfg.Secret)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10)) // the error text, if any; drained for reuse
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("alertmanager %s: status %d: %s", url, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

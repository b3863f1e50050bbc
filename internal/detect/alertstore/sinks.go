package alertstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"twinchain/internal/detect/alert"
	"twinchain/internal/wire"
)

// sink delivers one notification.
type sink interface {
	deliver(ctx context.Context, d *delivery) error
}

type webhook struct {
	cfg    alert.SinkConfig
	client *http.Client
	now    func() time.Time
}

// slackBody is a Slack-compatible incoming-webhook body.
func slackBody(n *alert.Notification) ([]byte, error) {
	a := &n.Alert
	text := fmt.Sprintf("[%s] %s %s on %s (%s): %s — %s, seen %d×", a.Severity, n.Event, a.Type, a.Asset, a.Site, a.Summary, a.ID, a.Count)
	return json.Marshal(map[string]string{"text": text})
}

func (w *webhook) deliver(ctx context.Context, d *delivery) error {
	var body []byte
	var err error
	if w.cfg.Slack {
		body, err = slackBody(&d.N)
	} else {
		body, err = json.Marshal(&d.N)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(alert.HeaderTimestamp, ts)
	req.Header.Set(alert.HeaderSignature, alert.Sign([]byte(w.cfg.Secret), ts, body))
	req.Header.Set(alert.HeaderDelivery, d.DeliveryID())
	req.Header.Set(alert.HeaderEvent, d.N.Event)
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // drained for connection reuse; the status decides
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook %s: status %d", w.cfg.URL, resp.StatusCode)
	}
	return nil
}

// Publisher publishes one MQTT message; mochi's *mqtt.Server and the
// embedded broker satisfy it.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

type mqttSink struct{ pub Publisher }

func (m *mqttSink) deliver(_ context.Context, d *delivery) error {
	if m.pub == nil {
		return fmt.Errorf("no MQTT publisher configured")
	}
	body, err := json.Marshal(&d.N)
	if err != nil {
		return err
	}
	site := d.N.Alert.Site
	if site == "" {
		site = "_"
	}
	return m.pub.Publish(wire.AlertTopic(site, string(d.N.Alert.Type)), body, false, 1)
}

package load

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The service figures the monitor reads from twin-service's /metrics.
const (
	MetricMessageHead = `twinchain_log_position{log="message"}`
	MetricEventHead   = `twinchain_log_position{log="event"}`
	MetricTelemetry   = "twinchain_telemetry_writer_position"
	MetricDetectMsgs  = `twinchain_detect_position{log="message"}`
	MetricDetectEvs   = `twinchain_detect_position{log="event"}`
	MetricAnchored    = "twinchain_anchored_event"
	MetricRSS         = "process_resident_memory_bytes"
	MetricCPU         = "process_cpu_seconds_total"
	MetricAccepted    = "twinchain_ingest_accepted_total"
)

// Sample is one scrape: metric (with its labels, as exposed) -> value.
type Sample struct {
	At     time.Time
	Values map[string]float64
}

// Monitor scrapes a twin-service's /metrics and keeps the history of log
// heads, from which it tells how far behind each consumer is in time.
type Monitor struct {
	URL string
	// Token is the API token sent as "Authorization: Bearer" (/metrics
	// needs sign-in; any role may read it).
	Token  string
	Client *http.Client
	heads  []headAt // message and event log heads over time
}

type headAt struct {
	at        time.Time
	msg, evts float64
}

// Scrape reads /metrics once.
func (m *Monitor) Scrape(ctx context.Context) (Sample, error) {
	c := m.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL, nil)
	if err != nil {
		return Sample{}, err
	}
	if m.Token != "" {
		req.Header.Set("Authorization", "Bearer "+m.Token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return Sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sample{}, fmt.Errorf("metrics: %s", resp.Status)
	}
	s := Sample{At: time.Now(), Values: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			s.Values[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return Sample{}, fmt.Errorf("metrics: %w", err)
	}
	m.heads = append(m.heads, headAt{s.At, s.Values[MetricMessageHead], s.Values[MetricEventHead]})
	return s, nil
}

// Lag is how far behind a consumer at position pos of a log is, in
// messages (or events) and in time: how long ago the log's head passed pos,
// interpolated between scrapes (zero when it has caught up).
func (m *Monitor) Lag(s Sample, pos float64, events bool) (n float64, d time.Duration) {
	head := func(h headAt) float64 {
		if events {
			return h.evts
		}
		return h.msg
	}
	if len(m.heads) == 0 {
		return 0, 0
	}
	n = max(head(m.heads[len(m.heads)-1])-pos, 0)
	if n == 0 {
		return 0, 0
	}
	for i, h := range m.heads {
		if head(h) <= pos {
			continue
		}
		at := h.at
		if i > 0 {
			p := m.heads[i-1]
			frac := (pos - head(p)) / (head(h) - head(p))
			at = p.at.Add(time.Duration(frac * float64(h.at.Sub(p.at))))
		}
		return n, s.At.Sub(at)
	}
	return n, 0
}

// The service's histograms of what a PUBACK waits for inside it: from the
// read of the PUBLISH to the ingest's answer, and the ingest's stages
// (labels stage="check", "queue", "commit").
const (
	MetricAnswer = "twinchain_mqtt_answer_seconds"
	MetricStage  = "twinchain_ingest_stage_seconds"
)

// HistQuantile is the q-quantile of histogram name (its series with the
// labels given, e.g. `stage="queue",`; "" for none) over what it counted
// between scrapes prev and s: linear within the bucket it falls in, as
// Prometheus's histogram_quantile, so only as fine as the buckets. ok is
// false when it counted nothing.
func HistQuantile(s, prev Sample, name, labels string, q float64) (d time.Duration, ok bool) {
	prefix := name + "_bucket{" + labels + `le="`
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range s.Values {
		rest, found := strings.CutPrefix(k, prefix)
		if !found {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v - prev.Values[k]})
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	if len(bs) == 0 || bs[len(bs)-1].n <= 0 {
		return 0, false
	}
	rank := q * bs[len(bs)-1].n
	lo, below := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return time.Duration(lo * float64(time.Second)), true // above the top bound: the bound
			}
			f := 1.0
			if b.n > below {
				f = (rank - below) / (b.n - below)
			}
			return time.Duration((lo + f*(b.le-lo)) * float64(time.Second)), true
		}
		lo, below = b.le, b.n
	}
	return time.Duration(lo * float64(time.Second)), true
}

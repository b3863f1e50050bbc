package telemetrywriter

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes a Writer's counters to Prometheus at scrape time.
type Collector struct {
	w                                          *Writer
	position, messages, points, badMsgs, badPt *prometheus.Desc
	writeErrs                                  *prometheus.Desc
}

// NewCollector makes the Writer's collector; register it in the service's
// registry.
func NewCollector(w *Writer) *Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("twinchain_telemetry_writer_"+name, help, nil, nil)
	}
	return &Collector{
		w:         w,
		position:  d("position", "Message log position written to the telemetry store."),
		messages:  d("messages_total", "Telemetry messages turned into points."),
		points:    d("points_total", "Points written to the telemetry store."),
		badMsgs:   d("bad_messages_total", "Telemetry messages that did not decode (skipped)."),
		badPt:     d("bad_points_total", "Points the store refused as invalid (skipped)."),
		writeErrs: d("write_errors_total", "Failed telemetry store writes (retried)."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.position, c.messages, c.points, c.badMsgs, c.badPt, c.writeErrs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.w.Stats()
	ch <- prometheus.MustNewConstMetric(c.position, prometheus.GaugeValue, float64(st.Position))
	for d, v := range map[*prometheus.Desc]int64{c.messages: st.Messages, c.points: st.Points, c.badMsgs: st.BadMessages, c.badPt: st.BadPoints, c.writeErrs: st.WriteErrors} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
}

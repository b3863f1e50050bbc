package influxstore

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes a Store's replay log and write counters to Prometheus.
type Collector struct {
	s                                   *Store
	pending, pendingBytes, down         *prometheus.Desc
	written, rejected, dropped, retries *prometheus.Desc
}

// NewCollector makes the Store's collector; register it in the service's
// registry.
func NewCollector(s *Store) *Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("twinchain_influxdb_"+name, help, nil, nil)
	}
	return &Collector{
		s:            s,
		pending:      d("replay_pending_points", "Points in the replay log, not yet in InfluxDB."),
		pendingBytes: d("replay_pending_bytes", "Bytes of the replay log not yet in InfluxDB."),
		down:         d("down", "1 when the last write to InfluxDB failed."),
		written:      d("written_points_total", "Points InfluxDB accepted."),
		rejected:     d("rejected_points_total", "Points in batches InfluxDB refused as bad data."),
		dropped:      d("dropped_points_total", "Points dropped from the replay log because it was over its budget."),
		retries:      d("write_retries_total", "Failed writes to InfluxDB that were retried."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.pendingBytes, c.down, c.written, c.rejected, c.dropped, c.retries} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	down := 0.0
	if st.Down {
		down = 1
	}
	for d, v := range map[*prometheus.Desc]float64{c.pending: float64(st.PendingPoints), c.pendingBytes: float64(st.PendingBytes), c.down: down} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	for d, v := range map[*prometheus.Desc]int64{c.written: st.Written, c.rejected: st.Rejected, c.dropped: st.Dropped, c.retries: st.Retries} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
}

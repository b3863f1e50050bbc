package httpapi

import (
	"fmt"

	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (s *Server) registerMetrics() error {
	if s.opts.Metrics == nil {
		s.app.Get("/metrics", unavailable("metrics"))
		return nil
	}
	if s.opts.Ingest != nil {
		if err := s.opts.Metrics.Register(newIngestCollector(s.opts.Ingest)); err != nil {
			return fmt.Errorf("register ingest metrics: %w", err)
		}
	}
	streams := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twinchain_http_streams", Help: "Open server-sent event streams."},
		func() float64 { return float64(s.streams.Load()) })
	if err := s.opts.Metrics.Register(streams); err != nil {
		return fmt.Errorf("register http metrics: %w", err)
	}
	s.app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(s.opts.Metrics, promhttp.HandlerOpts{})))
	return nil
}

// ingestCollector turns a snapshot of the ingest's counters into metrics at
// scrape time.
type ingestCollector struct {
	src                                        IngestSource
	accepted, rejected, gwRejected, gwAccepted *prometheus.Desc
	commits, commitFailures, commitSeconds     *prometheus.Desc
	queue, lastSeq, gaps                       *prometheus.Desc
}

func newIngestCollector(src IngestSource) *ingestCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("twinchain_ingest_"+name, help, labels, nil)
	}
	return &ingestCollector{
		src:            src,
		accepted:       d("accepted_total", "Messages stored."),
		rejected:       d("rejected_total", "Messages not applied, by reason (duplicates are acknowledged).", "reason"),
		gwAccepted:     d("gateway_accepted_total", "Messages stored, by gateway.", "gateway"),
		gwRejected:     d("gateway_rejected_total", "Messages not applied, by gateway and reason.", "gateway", "reason"),
		commits:        d("commits_total", "Group commits."),
		commitFailures: d("commit_failures_total", "Group commits that failed (their messages were not acknowledged)."),
		commitSeconds:  d("commit_seconds_total", "Time spent in group commits."),
		queue:          d("queue_depth", "Messages waiting for the writer."),
		lastSeq:        d("gateway_last_seq", "Highest sequence number stored, by gateway.", "gateway"),
		gaps:           d("gateway_sequence_gaps_total", "Jumps in a gateway's sequence numbers.", "gateway"),
	}
}

func (c *ingestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.accepted, c.rejected, c.gwAccepted, c.gwRejected, c.commits, c.commitFailures, c.commitSeconds, c.queue, c.lastSeq, c.gaps} {
		ch <- d
	}
}

func (c *ingestCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	counter(c.accepted, float64(st.Accepted))
	for r, n := range st.Rejected {
		counter(c.rejected, float64(n), string(r))
	}
	counter(c.commits, float64(st.Commits))
	counter(c.commitFailures, float64(st.CommitFailures))
	counter(c.commitSeconds, st.CommitSeconds)
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.QueueDepth))
	for _, g := range st.Gateways {
		counter(c.gwAccepted, float64(g.Accepted), g.Gateway)
		counter(c.gaps, float64(g.Gaps), g.Gateway)
		ch <- prometheus.MustNewConstMetric(c.lastSeq, prometheus.GaugeValue, float64(g.LastSeq), g.Gateway)
		for r, n := range g.Rejected {
			counter(c.gwRejected, float64(n), g.Gateway, string(r))
		}
	}
}

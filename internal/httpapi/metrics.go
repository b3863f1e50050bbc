package httpapi

import (
	"fmt"
	"sync/atomic"

	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// registerMetrics serves /metrics to a signed-in caller: Prometheus
// scrapes with an API token (authorization: credentials in its scrape
// config), as it lists the service's figures.
func (s *Server) registerMetrics(root router) error {
	if s.opts.Metrics == nil {
		root.get("/metrics", unavailable("metrics"))
		return nil
	}
	if s.opts.Ingest != nil {
		if err := s.opts.Metrics.Register(newIngestCollector(s.opts.Ingest)); err != nil {
			return fmt.Errorf("register ingest metrics: %w", err)
		}
	}
	if x := s.opts.Auth; x != nil {
		for reason, n := range map[string]*atomic.Uint64{"credentials": &x.failed, "throttled": &x.throttled, "busy": &x.busy} {
			c := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_auth_refused_total",
				Help:        "Sign-ins and credentials refused: wrong credentials or forgery, throttled (429), no password check free (503).",
				ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 { return float64(n.Load()) })
			if err := s.opts.Metrics.Register(c); err != nil {
				return fmt.Errorf("register auth metrics: %w", err)
			}
		}
	}
	streams := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twinchain_http_streams", Help: "Open server-sent event streams."},
		func() float64 { return float64(s.streams.Load()) })
	if err := s.opts.Metrics.Register(streams); err != nil {
		return fmt.Errorf("register http metrics: %w", err)
	}
	root.get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(s.opts.Metrics, promhttp.HandlerOpts{})))
	return nil
}

// ingestCollector turns a snapshot of the ingest's counters into metrics at
// scrape time. They are fleet totals: series per gateway (four each, 50,000
// with 12,500 gateways) made every scrape cost as much as the fleet is
// large; each gateway's figures are in GET /api/v1/stats/ingest.
type ingestCollector struct {
	src                                    IngestSource
	accepted, rejected                     *prometheus.Desc
	commits, commitFailures, commitSeconds *prometheus.Desc
	queue, gateways, gaps                  *prometheus.Desc
	stage                                  *prometheus.Desc
}

func newIngestCollector(src IngestSource) *ingestCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("twinchain_ingest_"+name, help, labels, nil)
	}
	return &ingestCollector{
		src:            src,
		accepted:       d("accepted_total", "Messages stored."),
		rejected:       d("rejected_total", "Messages not applied, by reason (duplicates are acknowledged).", "reason"),
		commits:        d("commits_total", "Group commits."),
		commitFailures: d("commit_failures_total", "Group commits that failed (their messages were not acknowledged)."),
		commitSeconds:  d("commit_seconds_total", "Time spent in group commits."),
		queue:          d("queue_depth", "Messages waiting for the writer."),
		gateways:       d("gateways", "Gateways the ingest has stored messages of (per gateway: GET /api/v1/stats/ingest)."),
		gaps:           d("sequence_gaps_total", "Jumps in the gateways' sequence numbers, all gateways together."),
		stage: d("stage_seconds", "Where stored messages spent their time in the ingest: check (decoding, the signature, waiting for room), queue (waiting for their commit to begin), commit (their batch's write and fsync).",
			"stage"),
	}
}

func (c *ingestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.accepted, c.rejected, c.commits, c.commitFailures, c.commitSeconds, c.queue, c.gateways, c.gaps, c.stage} {
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
	var gaps uint64
	for _, g := range st.Gateways {
		gaps += g.Gaps
	}
	counter(c.gaps, float64(gaps))
	ch <- prometheus.MustNewConstMetric(c.gateways, prometheus.GaugeValue, float64(len(st.Gateways)))
	ch <- st.Stages.Check.Metric(c.stage, "check")
	ch <- st.Stages.Queue.Metric(c.stage, "queue")
	ch <- st.Stages.Commit.Metric(c.stage, "commit")
}

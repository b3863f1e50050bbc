package load

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"twinchain/internal/latency"
)

// stageCollector exposes two histograms as the service does (one
// name, a label per stage).
type stageCollector struct {
	d             *prometheus.Desc
	queue, commit *latency.Histogram
}

func (c stageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.d }
func (c stageCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- c.queue.Snapshot().Metric(c.d, "queue")
	ch <- c.commit.Snapshot().Metric(c.d, "commit")
}

// TestHistQuantile: quantiles of the service's histograms, read through
// /metrics as Prometheus exposes them, over what was counted between two
// scrapes only.
func TestHistQuantile(t *testing.T) {
	var queue, commit latency.Histogram
	reg := prometheus.NewRegistry()
	reg.MustRegister(stageCollector{prometheus.NewDesc(MetricStage, "test", []string{"stage"}, nil), &queue, &commit})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	m := &Monitor{URL: srv.URL}
	for range 100 {
		queue.Observe(2 * time.Second) // before the first scrape: not counted
	}
	prev, err := m.Scrape(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 980 {
		queue.Observe(3 * time.Millisecond)
	}
	for range 20 {
		queue.Observe(300 * time.Millisecond)
		commit.Observe(time.Minute) // above every bound
	}
	s, err := m.Scrape(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		labels string
		q      float64
		want   time.Duration
	}{
		// 500th of 1,000: in (2.5 ms, 5 ms], the 500th of its 980.
		{`stage="queue",`, 0.5, 2500*time.Microsecond + 2500*time.Microsecond*500/980},
		// 990th: in (250 ms, 500 ms], the 10th of its 20.
		{`stage="queue",`, 0.99, 375 * time.Millisecond},
		{`stage="commit",`, 0.99, 10 * time.Second}, // the top bound
	} {
		got, ok := HistQuantile(s, prev, MetricStage, c.labels, c.q)
		if !ok || got < c.want-time.Microsecond || got > c.want+time.Microsecond {
			t.Errorf("%s p%g = %s %v, want %s", c.labels, 100*c.q, got, ok, c.want)
		}
	}
	if _, ok := HistQuantile(s, s, MetricStage, `stage="queue",`, 0.99); ok {
		t.Error("a quantile over no observations")
	}
	if _, ok := HistQuantile(s, prev, MetricAnswer, "", 0.99); ok {
		t.Error("a quantile of a histogram not exposed")
	}
}

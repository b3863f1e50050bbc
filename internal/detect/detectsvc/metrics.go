package detectsvc

import "github.com/prometheus/client_golang/prometheus"

// Collectors are the detection service's Prometheus metrics, read from its
// counters at scrape time; register them in twin-service's registry.
func (s *Service) Collectors() []prometheus.Collector {
	e, d := &s.engine.Stats, s.dispatcher
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "twinchain", Subsystem: "detect", Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	position := func(log string, v func() uint64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "twinchain", Subsystem: "detect", Name: "position", Help: "Last log position the detectors processed.", ConstLabels: prometheus.Labels{"log": log}}, func() float64 { return float64(v()) })
	}
	return []prometheus.Collector{
		counter("events_total", "Twin events the detectors read.", e.Events.Load),
		counter("messages_total", "Stored messages the detectors read.", e.Messages.Load),
		counter("rejections_total", "Ingest rejections the detectors read.", e.Rejections.Load),
		counter("findings_total", "Findings, before work orders and deduplication.", e.Findings.Load),
		counter("covered_total", "Findings an approved work order explained.", e.Covered.Load),
		counter("alerts_opened_total", "Alerts opened.", e.Opened.Load),
		counter("quarantined_total", "Assets quarantined by policy.", e.Quarantined.Load),
		counter("decode_errors_total", "Stored messages that did not decode.", e.DecodeErrors.Load),
		counter("images_not_compared_total", "Processes judged whose container image has no registry digest to compare with the deployment's container hash (built locally).", e.ImagesNotCompared.Load),
		counter("deliveries_total", "Alert notifications delivered to a sink.", d.Delivered.Load),
		counter("delivery_failures_total", "Failed delivery attempts (retried).", d.Failed.Load),
		counter("dead_letters_total", "Notifications given up after max_attempts.", d.Dead.Load),
		position("event", e.EventPos.Load),
		position("message", e.MessagePos.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "twinchain", Subsystem: "detect", Name: "outbox", Help: "Notifications waiting for delivery."},
			func() float64 { return float64(s.alerts.OutboxLen()) }),
	}
}

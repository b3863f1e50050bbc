package main

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"twinchain/internal/ingest/broker"
	"twinchain/internal/ingest/mqttsub"
	"twinchain/internal/registry/enrollment"
)

// brokerTLS is the embedded broker's TLS listener configuration: the
// configured certificate, or one issued by the gateway CA for the
// configured hosts, localhost and the listen address; client certificates
// are verified against the gateway CA. Nil when there is no TLS listener.
func brokerTLS(cfg broker.TLSConfig, ca *enrollment.CA) (*tls.Config, error) {
	if cfg.Addr == "" {
		return nil, nil
	}
	var cert tls.Certificate
	var err error
	if cfg.CertFile != "" {
		cert, err = tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	} else {
		hosts := append([]string{"localhost", "127.0.0.1", "::1"}, cfg.Hosts...)
		if h, _, _ := net.SplitHostPort(cfg.Addr); h != "" && !net.ParseIP(h).IsUnspecified() {
			hosts = append(hosts, h)
		}
		cert, err = ca.ServerCertificate(hosts)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt tls certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12}, nil
}

// brokerCollector exposes the embedded broker's connection figures:
// authenticated connections, and connections refused or closed by reason
// (an attack shows there: bad passwords, unknown gateways, connect
// timeouts, revocations).
type brokerCollector struct {
	b                                         *broker.Broker
	connected, refused                        *prometheus.Desc
	inflight, inflightPeak, waiting, waitedCt *prometheus.Desc
	answer                                    *prometheus.Desc
}

func newBrokerCollector(b *broker.Broker) *brokerCollector {
	return &brokerCollector{b: b,
		connected:    prometheus.NewDesc("twinchain_mqtt_connections", "Authenticated connections to the embedded MQTT broker.", nil, nil),
		refused:      prometheus.NewDesc("twinchain_mqtt_refused_total", "Connections the embedded MQTT broker refused or closed, by reason.", []string{"reason"}, nil),
		inflight:     prometheus.NewDesc("twinchain_mqtt_inflight_bytes", "Bytes of gateway messages the embedded broker admitted (their fixed header read) and the ingest has not answered yet (bounded by max_inflight_bytes_total).", nil, nil),
		inflightPeak: prometheus.NewDesc("twinchain_mqtt_inflight_bytes_peak", "The most bytes of gateway messages in flight at once since the start.", nil, nil),
		waiting:      prometheus.NewDesc("twinchain_mqtt_inflight_waiting_bytes", "Bytes of gateway messages whose fixed header was read, waiting for room in flight with the rest unread in the socket (their connections are not read meanwhile).", nil, nil),
		waitedCt:     prometheus.NewDesc("twinchain_mqtt_inflight_waited_total", "Gateway messages that waited for room in flight (backpressure).", nil, nil),
		answer:       prometheus.NewDesc("twinchain_mqtt_answer_seconds", "Gateway messages from the read of their PUBLISH to the ingest's answer (stored or rejected): what a PUBACK waits for inside the service.", nil, nil)}
}

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connected
	ch <- c.refused
	ch <- c.inflight
	ch <- c.inflightPeak
	ch <- c.waiting
	ch <- c.waitedCt
	ch <- c.answer
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, float64(st.Connected))
	ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(st.Inflight.Bytes))
	ch <- prometheus.MustNewConstMetric(c.inflightPeak, prometheus.GaugeValue, float64(st.Inflight.PeakBytes))
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(st.Inflight.WaitingBytes))
	ch <- prometheus.MustNewConstMetric(c.waitedCt, prometheus.CounterValue, float64(st.Inflight.Waited))
	ch <- st.Answer.Metric(c.answer)
	for reason, n := range st.Refused {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(n), reason)
	}
}

// parkCollector exposes external mode's parked messages (mqttsub's
// park.go): those the broker acknowledged to their gateway and the ingest
// rejected for a reason that can go away.
func parkCollector(sub *mqttsub.Subscriber) prometheus.Collector {
	gauge := func(name, help string, fn func(mqttsub.ParkStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return fn(sub.Parked()) })
	}
	counter := func(name, help string, fn func(mqttsub.ParkStats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return fn(sub.Parked()) })
	}
	return collectorList{
		gauge("twinchain_mqtt_parked", "Messages parked to retry (external mode): acknowledged by the broker, rejected for a reason that can go away.",
			func(p mqttsub.ParkStats) float64 { return float64(p.Parked) }),
		counter("twinchain_mqtt_parked_resolved_total", "Parked messages stored or rejected for good on a retry.",
			func(p mqttsub.ParkStats) float64 { return float64(p.Resolved) }),
		counter("twinchain_mqtt_parked_dropped_total", "Messages to retry that could not be parked (the folder was full): lost.",
			func(p mqttsub.ParkStats) float64 { return float64(p.Dropped) }),
	}
}

// collectorList is several collectors registered as one.
type collectorList []prometheus.Collector

func (cs collectorList) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectorList) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

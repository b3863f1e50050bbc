package main

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"twinchain/internal/ingest/broker"
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
	b                  *broker.Broker
	connected, refused *prometheus.Desc
}

func newBrokerCollector(b *broker.Broker) *brokerCollector {
	return &brokerCollector{b: b,
		connected: prometheus.NewDesc("twinchain_mqtt_connections", "Authenticated connections to the embedded MQTT broker.", nil, nil),
		refused:   prometheus.NewDesc("twinchain_mqtt_refused_total", "Connections the embedded MQTT broker refused or closed, by reason.", []string{"reason"}, nil)}
}

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connected
	ch <- c.refused
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, float64(st.Connected))
	for reason, n := range st.Refused {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(n), reason)
	}
}

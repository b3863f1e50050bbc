package main

import (
	"crypto/tls"
	"fmt"
	"net"

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

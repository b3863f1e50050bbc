// Package mqttpub publishes an edge agent's sealed messages with
// github.com/eclipse/paho.mqtt.golang: QoS 1, a persistent session, a last
// will (a wire Status "offline" with sequence 0, signed at connect time),
// username/password or TLS client certificates, and reconnection with
// backoff. Every message is appended to a diskqueue before it is published
// and removed only on PUBACK; after an outage the backlog is replayed in
// order, behind live messages, at a bounded rate.
package mqttpub

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"
)

// Config is the MQTT part of the agent's configuration.
type Config struct {
	Broker   string `yaml:"broker"`    // tcp://host:1883, or ssl://host:8883 / tls://host:8883
	ClientID string `yaml:"client_id"` // the gateway id when empty
	Username string `yaml:"username"`  // the gateway id when empty (broker ACLs key on it)
	Password string `yaml:"password"`  // empty: a connect password signed by the gateway key (wire.ConnectPassword); else better TWINCHAIN_MQTT_PASSWORD in the environment
	CAFile   string `yaml:"ca_file"`   // broker CA (PEM) for ssl://
	CertFile string `yaml:"cert_file"` // client certificate (PEM) for TLS client auth, e.g. the one `edge-agent enroll` wrote
	KeyFile  string `yaml:"key_file"`  // its key (PEM); empty: the gateway key, on which enrollment issued the certificate

	KeepAlive      time.Duration `yaml:"keep_alive"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	BackoffMin     time.Duration `yaml:"backoff_min"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
	MaxInflight    int           `yaml:"max_inflight"` // unacknowledged messages at once
	ReplayRate     int           `yaml:"replay_rate"`  // backlog messages per second after an outage
	StatusInterval time.Duration `yaml:"status_interval"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults(gateway string) {
	if c.ClientID == "" {
		c.ClientID = gateway
	}
	if c.Username == "" {
		c.Username = gateway
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = 500 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 256
	}
	if c.ReplayRate == 0 {
		c.ReplayRate = 5000
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 30 * time.Second
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	u, err := url.Parse(c.Broker)
	if err != nil || u.Host == "" {
		return fmt.Errorf("mqtt.broker %q: want tcp://host:port or ssl://host:port", c.Broker)
	}
	switch u.Scheme {
	case "tcp", "mqtt":
		if c.CertFile != "" || c.CAFile != "" {
			return fmt.Errorf("mqtt.broker %q: TLS files set but the scheme is %s; use ssl://", c.Broker, u.Scheme)
		}
	case "ssl", "tls", "mqtts":
	default:
		return fmt.Errorf("mqtt.broker %q: scheme %q, want tcp or ssl", c.Broker, u.Scheme)
	}
	if c.KeyFile != "" && c.CertFile == "" {
		return errors.New("mqtt.key_file without mqtt.cert_file")
	}
	for _, f := range []string{c.CAFile, c.CertFile, c.KeyFile} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				return fmt.Errorf("mqtt: %w", err)
			}
		}
	}
	switch {
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("mqtt.backoff_min %s / backoff_max %s: want 0 < min <= max", c.BackoffMin, c.BackoffMax)
	case c.MaxInflight < 1 || c.MaxInflight > 65000:
		return fmt.Errorf("mqtt.max_inflight %d: want 1..65000", c.MaxInflight)
	case c.ReplayRate < 1:
		return fmt.Errorf("mqtt.replay_rate %d: want at least 1 message/s", c.ReplayRate)
	}
	return nil
}

// tlsConfig builds the TLS configuration for an ssl:// broker; the client
// certificate's key is KeyFile, or else the gateway key gwKey.
func (c *Config) tlsConfig(gwKey ed25519.PrivateKey) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt ca %s: no PEM certificates", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case c.CertFile != "":
		cert, err := certOnKey(c.CertFile, gwKey)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// certOnKey loads the certificate chain in file (PEM) and pairs it with key,
// which must be the key it certifies.
func certOnKey(file string, key ed25519.PrivateKey) (tls.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("mqtt client certificate: %w", err)
	}
	var cert tls.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, block.Bytes)
		}
	}
	if len(cert.Certificate) == 0 {
		return tls.Certificate{}, fmt.Errorf("mqtt client certificate %s: no PEM certificate", file)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("mqtt client certificate %s: %w", file, err)
	}
	if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, fmt.Errorf("mqtt client certificate %s is not on the gateway key (re-enroll)", file)
	}
	cert.PrivateKey, cert.Leaf = key, leaf
	return cert, nil
}

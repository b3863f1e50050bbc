package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"twinchain/internal/cli"
	"twinchain/internal/edge/enroll"
)

func runEnroll(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("enroll", stderr)
	defServer := getenv("TWINCHAIN_URL") // as twin-service's commands; TWINCHAIN_SERVER, the older name, still counts
	if defServer == "" {
		defServer = getenv("TWINCHAIN_SERVER")
	}
	server := fs.String("server", defServer, "twin-service base URL, e.g. https://twin.example:8080 (env TWINCHAIN_URL)")
	token := fs.String("token", getenv("TWINCHAIN_ENROLL_TOKEN"), "one-time enrollment token from an administrator (env TWINCHAIN_ENROLL_TOKEN)")
	ca := fs.String("ca", getenv("TWINCHAIN_SERVER_CA"), "PEM certificate(s) to trust for --server besides the system's, e.g. twin-service's self-signed {data_dir}/tls/cert.pem (env TWINCHAIN_SERVER_CA)")
	cfg, err := loadConfig(fs, args, getenv)
	if err != nil {
		return err
	}
	if *server == "" || *token == "" {
		return cli.Usage(errors.New("enroll: --server and --token are required"))
	}
	log := newLogger(cfg, stderr)
	key, err := loadKey(cfg, log)
	if err != nil {
		return err
	}
	hc, err := serverClient(*ca)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := enroll.NewRequest(key, *token, cfg.GatewayID, cfg.Host.Hostname)
	resp, err := enroll.Enroll(ctx, hc, *server, req)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	record := fmt.Sprintf("gateway_id: %s\nsite: %s\nenrolled: %s\nserver: %s\n", resp.GatewayID, resp.Site, time.Now().UTC().Format(time.RFC3339), *server)
	if err := os.WriteFile(filepath.Join(cfg.StateDir, "enrollment.yaml"), []byte(record), 0o600); err != nil {
		return fmt.Errorf("enroll: record: %w", err)
	}
	fmt.Fprintf(stderr, "enrolled gateway %s at site %s; it publishes under %s\n", resp.GatewayID, resp.Site, resp.Topic)
	if resp.Certificate != "" {
		cert, ca := filepath.Join(cfg.StateDir, "mqtt-client.pem"), filepath.Join(cfg.StateDir, "mqtt-ca.pem")
		if err := os.WriteFile(cert, []byte(resp.Certificate), 0o644); err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
		if err := os.WriteFile(ca, []byte(resp.CACertificate), 0o644); err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
		fmt.Fprintf(stderr, "MQTT client certificate (on the gateway key) in %s, the broker's CA in %s; for mutual TLS set mqtt.broker: ssl://HOST:8883, mqtt.cert_file: %s, mqtt.ca_file: %s\n", cert, ca, cert, ca)
	}
	return nil
}

// serverClient is the HTTP client for twin-service: it trusts the system's
// roots and, when caFile is set, the certificates in that PEM file.
func serverClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return http.DefaultClient, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}, nil
}

func runPubkey(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	cfg, err := loadConfig(newFlagSet("pubkey", stderr), args, getenv)
	if err != nil {
		return err
	}
	key, err := loadKey(cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)))
	return nil
}

package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"twinchain/internal/edge/enroll"
)

func runEnroll(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("enroll", stderr)
	server := fs.String("server", getenv("TWINCHAIN_SERVER"), "twin-service base URL, e.g. https://twin.example:8080 (env TWINCHAIN_SERVER)")
	token := fs.String("token", getenv("TWINCHAIN_ENROLL_TOKEN"), "one-time enrollment token from an administrator (env TWINCHAIN_ENROLL_TOKEN)")
	cfg, err := loadConfig(fs, args, getenv)
	if err != nil {
		return err
	}
	if *server == "" || *token == "" {
		return errors.New("enroll: --server and --token are required")
	}
	log := newLogger(cfg, stderr)
	key, err := loadKey(cfg, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := enroll.NewRequest(key, *token, cfg.GatewayID, cfg.Host.Hostname)
	resp, err := enroll.Enroll(ctx, http.DefaultClient, *server, req)
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

package main

import (
	"context"
	"crypto/ed25519"
	"log/slog"

	"twinchain/internal/registry"
	"twinchain/internal/registry/enrollment"
)

// crlWriter rewrites the gateway CRL ({data_dir}/gateway-crl.pem) at start
// and after every change of the registry, for a broker that checks gateway
// certificates itself (external mode: Mosquitto's crlfile). The embedded
// broker needs none: it checks each certificate against the registry.
type crlWriter struct {
	ca   *enrollment.CA
	reg  *registry.Registry
	log  *slog.Logger
	kick chan struct{} // a change since the last write
}

func newCRLWriter(ca *enrollment.CA, reg *registry.Registry, log *slog.Logger) *crlWriter {
	w := &crlWriter{ca: ca, reg: reg, log: log, kick: make(chan struct{}, 1)}
	reg.Notify(w.changed)
	return w
}

// changed is the registry's notification; it never blocks (one write
// follows any number of changes).
func (w *crlWriter) changed(string) {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// write writes the CRL now; a failure is logged (the embedded broker and
// the ingest refuse revoked gateways regardless).
func (w *crlWriter) write() {
	n, err := w.ca.WriteCRL(func(id string) (ed25519.PublicKey, bool) {
		pub, _, ok := w.reg.Lookup(id)
		return pub, ok
	})
	if err != nil {
		w.log.Error("gateway CRL not written: a broker with crlfile still accepts revoked certificates", "err", err)
		return
	}
	w.log.Info("gateway CRL written", "revoked_certificates", n)
}

// Run writes the CRL after each change until ctx ends.
func (w *crlWriter) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
			w.write()
		}
	}
}

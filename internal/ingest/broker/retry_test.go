package broker

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/edge/agentkey"
	"twinchain/internal/edge/diskqueue"
	"twinchain/internal/edge/mqttpub"
	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestAgentKeepsWhatItMustRetry runs the real edge publisher (disk queue,
// sequence file) against the embedded broker over TCP. A reading for an
// asset not yet bound to its gateway is rejected as unbound_asset, a reason
// the agent must retry: the broker does not acknowledge it, so the agent
// keeps it in its queue and sends it again, until an operator binds the
// asset and it is stored. Nothing is lost, and nothing is stored twice.
func TestAgentKeepsWhatItMustRetry(t *testing.T) {
	for _, ack := range []string{AckPipelined, AckSync} {
		t.Run(ack, func(t *testing.T) {
			const gw = "gw-keep"
			s := startStack(t, ack)
			bound := registry.Gateway{ID: gw, PublicKey: key(gw).Public().(ed25519.PublicKey), Site: "s1", Assets: []string{"srv-k"}}
			if err := s.reg.Put(bound); err != nil {
				t.Fatal(err)
			}
			q, err := diskqueue.Open(t.TempDir(), diskqueue.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			seq, err := agentkey.OpenSequence(filepath.Join(t.TempDir(), "seq"), 100)
			if err != nil {
				t.Fatal(err)
			}
			cfg := mqttpub.Config{Broker: s.url, BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
			cfg.SetDefaults(gw)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			p := mqttpub.New(cfg, gw, key(gw), seq, q, "test", time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
			tel := wire.Telemetry{Host: "srv-k", GPUs: []wire.GPUSample{{Asset: "srv-k.gpu0", UUID: "GPU-k0", TempC: 55}}}
			if _, err := p.Publish(wire.KindTelemetry, time.Now(), tel); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Publish(wire.KindGPS, time.Now(), wire.GPSFix{Asset: gw, Lat: 52.5, Lon: 13.4, Quality: 1}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			defer func() { cancel(); <-done }()

			testsvc.Eventually(t, 30*time.Second, "the unbound reading rejected, sent again and rejected again", func() bool {
				return s.in.Stats().Rejected[ingest.ReasonUnboundAsset] >= 2
			})
			if q.Len() == 0 {
				t.Fatal("the agent deleted a reading rejected as unbound_asset")
			}
			if _, err := s.store.Asset("srv-k.gpu0"); err == nil {
				t.Fatal("srv-k.gpu0 stored before it was bound")
			}
			bound.Assets = append(bound.Assets, "srv-k.gpu0")
			if err := s.reg.Put(bound); err != nil {
				t.Fatal(err)
			}
			testsvc.Eventually(t, 30*time.Second, "the queue drained after the binding", func() bool { return q.Len() == 0 })
			a, err := s.store.Asset("srv-k.gpu0")
			if err != nil || a.Health.Samples != 1 {
				t.Errorf("srv-k.gpu0 after the binding: %d samples (%v), want 1", a.Health.Samples, err)
			}
			var kinds []wire.Kind
			msgs, err := s.store.MessagesAfter(0, 100)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint64]bool{}
			for _, m := range msgs {
				if seen[m.Seq] && m.Seq > 0 {
					t.Errorf("seq %d stored twice", m.Seq)
				}
				seen[m.Seq] = true
				kinds = append(kinds, m.Kind)
			}
			if !seen[1] || !seen[2] {
				t.Errorf("stored messages %v (kinds %v), want seq 1 (telemetry) and 2 (gps)", seen, kinds)
			}
		})
	}
}

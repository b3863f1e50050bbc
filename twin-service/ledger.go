package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"twinchain/chaincode/core"
	"twinchain/internal/httpapi"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/anchor"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fabricledger"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/ledger/signkey"
	"twinchain/internal/registry"
	"twinchain/internal/twinstore"
)

// Ledger backends.
const (
	ledgerFile   = "file"
	ledgerFabric = "fabric"
	ledgerOff    = "off"
)

// LedgerConfig is the ledger part of the configuration (key "ledger").
type LedgerConfig struct {
	Backend string              `yaml:"backend"`  // file (embedded, default), fabric or off
	Dir     string              `yaml:"dir"`      // embedded ledger, event tree, anchor queue; default {data_dir}/ledger
	KeyFile string              `yaml:"key_file"` // service Ed25519 key (made when missing); default {data_dir}/service.key
	Org     string              `yaml:"org"`      // the organisation the embedded ledger records for callers; default "twinchain"
	Anchor  anchor.Config       `yaml:"anchor"`
	Fabric  fabricledger.Config `yaml:"fabric"`
}

// Validate checks the ledger configuration.
func (c *LedgerConfig) Validate() error {
	var errs []error
	switch c.Backend {
	case "", ledgerFile, ledgerOff:
	case ledgerFabric:
		errs = append(errs, c.Fabric.Validate())
	default:
		errs = append(errs, fmt.Errorf("ledger.backend %q: want file, fabric or off", c.Backend))
	}
	errs = append(errs, c.Anchor.Validate())
	return errors.Join(errs...)
}

// ledgerPart is the ledger's share of twin-service: the backend, the event
// tree, the anchorer and the proof exporter.
type ledgerPart struct {
	cfg      LedgerConfig
	key      ed25519.PrivateKey
	client   *ledger.Client
	file     *fileledger.Ledger // nil on Fabric
	tree     *eventtree.Tree
	anchorer *anchor.Anchorer
	proofs   *proofbundle.Exporter
}

// openLedger opens the ledger part, or returns nil when it is off.
func openLedger(cfg LedgerConfig, dataDir string, store *twinstore.Store, in *ingest.Ingest, reg *registry.Registry, log *slog.Logger) (*ledgerPart, error) {
	if cfg.Backend == ledgerOff {
		return nil, nil
	}
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(dataDir, "ledger")
	}
	if cfg.KeyFile == "" {
		cfg.KeyFile = filepath.Join(dataDir, "service.key")
	}
	if cfg.Org == "" {
		cfg.Org = "twinchain"
	}
	p := &ledgerPart{cfg: cfg}
	var err error
	if p.key, err = signkey.LoadOrCreate(cfg.KeyFile); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case ledgerFabric:
		b, err := fabricledger.Dial(cfg.Fabric)
		if err != nil {
			return nil, err
		}
		p.client = ledger.New(b)
	default:
		p.client, p.file, err = fileledger.OpenLedger(fileledger.Options{Dir: filepath.Join(cfg.Dir, "blocks"), Key: p.key, Org: cfg.Org, Log: log.With("component", "fileledger")})
		if err != nil {
			return nil, err
		}
	}
	if p.tree, err = eventtree.Open(filepath.Join(cfg.Dir, "events"), eventtree.Options{Key: p.key.Public().(ed25519.PublicKey), Log: log.With("component", "eventtree")}); err != nil {
		p.close(log)
		return nil, err
	}
	p.anchorer, err = anchor.Open(cfg.Anchor, filepath.Join(cfg.Dir, "anchor.db"), anchor.Deps{Events: store, Wake: in, Gateways: reg,
		Tree: p.tree, Ledger: p.client, Key: p.key, Log: log.With("component", "anchor")})
	if err != nil {
		p.close(log)
		return nil, err
	}
	p.proofs = &proofbundle.Exporter{Tree: p.tree, Anchors: auditor{p.client}, Key: p.key.Public().(ed25519.PublicKey)}
	if p.file != nil {
		p.proofs.Blocks = p.file
	}
	return p, nil
}

// auditor reads anchors for proof export as the service's auditor.
type auditor struct{ l ledger.Ledger }

func (a auditor) AnchorForEvent(ctx context.Context, id uint64) (core.Anchor, error) {
	return a.l.AnchorForEvent(ledger.WithCaller(ctx, core.Caller{ID: "twin-service.proofs", Role: core.RoleAuditor}), id)
}

// Run anchors until ctx ends.
func (p *ledgerPart) Run(ctx context.Context) error { return p.anchorer.Run(ctx) }

func (p *ledgerPart) close(log *slog.Logger) {
	var errs []error
	if p.anchorer != nil {
		errs = append(errs, p.anchorer.Close())
	}
	if p.tree != nil {
		errs = append(errs, p.tree.Close())
	}
	if p.client != nil {
		errs = append(errs, p.client.Close())
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("close ledger", "err", err)
	}
}

// registerMetrics exports the anchoring counters (nothing when off).
func (p *ledgerPart) registerMetrics(reg *prometheus.Registry) {
	if p == nil {
		return
	}
	stat := func(f func(anchor.Stats) float64) func() float64 {
		return func() float64 { return f(p.anchorer.Stats()) }
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twinchain_event_tree_size", Help: "Events in the Merkle event tree."},
			func() float64 { return float64(p.tree.Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twinchain_anchored_event", Help: "Last event id covered by an anchor on the ledger."},
			stat(func(s anchor.Stats) float64 { return float64(s.AnchoredTo) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twinchain_anchor_queue_batches", Help: "Batches waiting for the ledger."},
			stat(func(s anchor.Stats) float64 { return float64(s.PendingBatches) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twinchain_anchor_queue_evidence", Help: "Evidence items waiting for the ledger."},
			stat(func(s anchor.Stats) float64 { return float64(s.PendingEvidence) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_anchors_total", Help: "Anchors the ledger accepted."},
			stat(func(s anchor.Stats) float64 { return float64(s.Anchored) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_evidence_total", Help: "Hardware evidence records written."},
			stat(func(s anchor.Stats) float64 { return float64(s.Evidence) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_evidence_dropped_total", Help: "Evidence items given up (no envelope, refused by the core)."},
			stat(func(s anchor.Stats) float64 { return float64(s.EvidenceDropped) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_ledger_errors_total", Help: "Failed ledger calls (retried)."},
			stat(func(s anchor.Stats) float64 { return float64(s.LedgerErrors) })),
	)
}

// deps are the API's ledger routes' dependencies.
func (p *ledgerPart) deps() *httpapi.LedgerDeps {
	if p == nil {
		return nil
	}
	// Callers are the signed-in principals (httpapi.PrincipalCaller): ML
	// pipelines use auth API tokens, e.g. with role ml_engineer.
	return &httpapi.LedgerDeps{Ledger: p.client, Proofs: p.proofs, Tree: p.tree, Status: p.status}
}

func (p *ledgerPart) status() any {
	root, size, _ := p.tree.Root()
	cp, ok, _ := p.tree.LatestCheckpoint()
	st := map[string]any{
		"backend":     p.backend(),
		"service_key": hex.EncodeToString(p.key.Public().(ed25519.PublicKey)),
		"tree_size":   size,
		"tree_root":   hex.EncodeToString(root),
		"anchoring":   p.anchorer.Stats(),
	}
	if ok {
		st["checkpoint"] = cp
	}
	if p.file != nil {
		st["height"] = p.file.Height()
	}
	return st
}

func (p *ledgerPart) backend() string {
	if p.cfg.Backend == "" {
		return ledgerFile
	}
	return p.cfg.Backend
}

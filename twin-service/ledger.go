package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"twinchain/chaincode/core"
	"twinchain/internal/httpapi"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/anchor"
	"twinchain/internal/ledger/approvals"
	"twinchain/internal/ledger/eventtree"
	"twinchain/internal/ledger/fabricledger"
	"twinchain/internal/ledger/fileledger"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/ledger/remediate"
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
	// VerifyInterval is how often the running service re-checks every
	// block, leaf, node and checkpoint on disk (it always does at start,
	// before anchoring); default 1h.
	VerifyInterval time.Duration       `yaml:"verify_interval"`
	Backend        string              `yaml:"backend"`  // file (embedded, default), fabric or off
	Dir            string              `yaml:"dir"`      // embedded ledger, event tree, anchor queue; default {data_dir}/ledger
	KeyFile        string              `yaml:"key_file"` // service Ed25519 key (made when missing); default {data_dir}/service.key
	Org            string              `yaml:"org"`      // the organisation the embedded ledger records for callers; default "twinchain"
	Anchor         anchor.Config       `yaml:"anchor"`
	Fabric         fabricledger.Config `yaml:"fabric"`
	// ApprovalsEvery is how often the deployments in force are read again
	// for the run-time checks (besides right after the API records a
	// deployment); default 30s.
	ApprovalsEvery time.Duration `yaml:"approvals_every"`
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
	if c.ApprovalsEvery < 0 || c.ApprovalsEvery > 0 && c.ApprovalsEvery < time.Second {
		errs = append(errs, fmt.Errorf("ledger.approvals_every %s: at least 1s", c.ApprovalsEvery))
	}
	if c.VerifyInterval != 0 && c.VerifyInterval < time.Minute {
		errs = append(errs, fmt.Errorf("ledger.verify_interval %s: at least 1m", c.VerifyInterval))
	}
	return errors.Join(errs...)
}

// ledgerPart is the ledger's share of twin-service: the backend, the event
// tree, the anchorer and the proof exporter.
type ledgerPart struct {
	cfg      LedgerConfig
	key      ed25519.PrivateKey
	client   *ledger.Client
	file     *fileledger.Ledger    // nil on Fabric
	fabric   *fabricledger.Backend // nil on the embedded ledger
	tree     *eventtree.Tree
	anchorer *anchor.Anchorer
	proofs   *proofbundle.Exporter
	// approvals are the deployments in force, read in the background for
	// the run-time checks and views.
	approvals *approvals.Cache
	// proposer proposes the remediation of models in force trained on
	// hardware with evidence (docs/runtime.md).
	proposer *remediate.Proposer
	// stops records, for executed remediations, the gateway-signed
	// reports that a paused model no longer runs on a GPU.
	stops   *remediate.StopWatcher
	log     *slog.Logger
	damaged atomic.Pointer[error] // set when stored ledger data does not verify: read-only from then on
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
	if cfg.VerifyInterval == 0 {
		cfg.VerifyInterval = time.Hour
	}
	p := &ledgerPart{cfg: cfg, log: log.With("component", "ledger")}
	var err error
	if p.key, err = signkey.LoadOrCreate(cfg.KeyFile); err != nil {
		return nil, err
	}
	pub := p.key.Public().(ed25519.PublicKey)
	publishKey(filepath.Join(dataDir, "service.pub"), pub, p.log)
	for _, db := range []string{filepath.Join(cfg.Dir, "blocks", "state.db"), filepath.Join(cfg.Dir, "anchor.db")} {
		if err := twinstore.CheckFile(db); err != nil {
			return nil, err
		}
	}
	switch cfg.Backend {
	case ledgerFabric:
		b, err := fabricledger.Dial(cfg.Fabric)
		if err != nil {
			return nil, err
		}
		p.client, p.fabric = ledger.New(b), b
		if err := writeFabricMarker(cfg.Dir, cfg.Fabric); err != nil {
			_ = b.Close() // the marker's error says more
			return nil, err
		}
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
	p.approvals = approvals.New(p.client, selfCaller(cfg.Anchor.CallerID), cfg.ApprovalsEvery, log.With("component", "approvals"))
	every := cfg.ApprovalsEvery
	if every == 0 {
		every = approvals.DefaultEvery
	}
	p.proposer = remediate.New(p.client, p.approvals, selfCaller(cfg.Anchor.CallerID), every, log.With("component", "remediate"))
	p.stops = remediate.NewStopWatcher(p.client, p.approvals, store, reg, selfCaller(cfg.Anchor.CallerID), remediate.DefaultStopsEvery, log.With("component", "remediate-stops"))
	p.proofs = &proofbundle.Exporter{Tree: p.tree, Anchors: selfReader{p.client, cfg.Anchor.CallerID}, Key: p.key.Public().(ed25519.PublicKey)}
	if p.file != nil {
		p.proofs.Blocks = p.file
	} else {
		p.proofs.Receipts = p.anchorer.Receipt
		if p.fabric != nil {
			p.proofs.FabricBlock, p.proofs.FabricTxBlock = p.fabric.Block, p.fabric.BlockOfTx
			p.proofs.Channel, p.proofs.Chaincode = p.fabric.Channel(), p.fabric.Chaincode()
			p.proofs.Records = proofbundle.LedgerRecords(p.client, selfCaller(cfg.Anchor.CallerID))
		}
	}
	return p, nil
}

// fabricMarker, in a Fabric-backed ledger directory, names the network:
// `twin-service verify` reads it to know the blocks are on the peers and
// what to check instead.
const fabricMarker = "fabric.json"

type fabricInfo struct {
	Channel   string `json:"channel"`
	Chaincode string `json:"chaincode"`
	MSPID     string `json:"msp_id"`
	Peer      string `json:"peer"`
}

func writeFabricMarker(dir string, c fabricledger.Config) error {
	if c.Chaincode == "" {
		c.Chaincode = "twinchain"
	}
	b, _ := json.MarshalIndent(fabricInfo{Channel: c.Channel, Chaincode: c.Chaincode, MSPID: c.MSPID, Peer: c.PeerEndpoint}, "", "  ")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, fabricMarker), append(b, '\n'), 0o600)
}

// selfReader reads anchors for proof export as the service's own ledger
// identity, the one that anchors (any role may read anchors): on Fabric
// that is the enrolled service identity, so proofs need no other one.
type selfReader struct {
	l  ledger.Ledger
	id string
}

func (r selfReader) AnchorForEvent(ctx context.Context, id uint64) (core.Anchor, error) {
	return r.l.AnchorForEvent(ledger.WithCaller(ctx, selfCaller(r.id)), id)
}

// selfCaller is the service's own ledger caller (anchor.caller_id).
func selfCaller(id string) core.Caller {
	if id == "" {
		id = "twin-service"
	}
	return core.Caller{ID: id, Role: core.RoleService}
}

// Run checks everything the ledger stored, then anchors until ctx ends,
// re-checking every VerifyInterval. When stored data does not verify (at
// start, later, or when the anchorer meets it) the ledger goes read-only:
// anchoring stops, the embedded ledger refuses writes, /readyz says so and
// the log names the place. The service stays up; an operator restores the
// ledger directory and restarts it.
func (p *ledgerPart) Run(ctx context.Context) error {
	if err := p.verifyStored(); err != nil {
		p.setDamaged(err)
		<-ctx.Done()
		return nil
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.anchorer.Run(actx) }()
	tick := time.NewTicker(p.cfg.VerifyInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			cancel()
			if err := <-done; err != nil {
				p.setDamaged(err) // it met damage as it stopped
			}
			return nil
		case err := <-done:
			if ctx.Err() == nil {
				if err == nil {
					err = errors.New("anchoring stopped")
				}
				p.setDamaged(err)
				<-ctx.Done()
			}
			return nil
		case <-tick.C:
			if err := p.verifyStored(); err != nil {
				p.setDamaged(err)
				cancel()
				if err := <-done; err != nil {
					p.log.Error("anchoring stopped", "err", err)
				}
				<-ctx.Done()
				return nil
			}
		}
	}
}

// verifyStored checks every block and the state they make, every leaf,
// node and checkpoint of the event tree, and every anchor against the tree.
func (p *ledgerPart) verifyStored() error {
	start := time.Now()
	if p.file != nil {
		if err := p.file.Verify(); err != nil {
			return fmt.Errorf("ledger blocks: %w", err)
		}
		for _, n := range p.file.Notes() {
			p.log.Warn("ledger blocks: " + n)
		}
	}
	if err := p.tree.VerifyAll(p.key.Public().(ed25519.PublicKey)); err != nil {
		return fmt.Errorf("event tree: %w", err)
	}
	if p.file != nil {
		if _, err := p.file.CheckAnchors(p.tree.RootAt); err != nil {
			return fmt.Errorf("ledger anchors: %w", err)
		}
	}
	p.log.Info("ledger verified: every block, leaf, node, checkpoint and anchor holds", "events", p.tree.Size(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (p *ledgerPart) setDamaged(err error) {
	if !p.damaged.CompareAndSwap(nil, &err) {
		return
	}
	p.log.Error("LEDGER DAMAGED: anchoring stopped and the ledger is read-only; restore the ledger directory from a backup (`twin-service verify DATA/ledger -key ...` names every problem) and restart", "err", err)
	if p.file != nil {
		p.file.SetDamaged(fmt.Errorf("%w: %w", ledger.ErrUnavailable, err))
	}
}

// damage is what made the ledger read-only, or nil (for /readyz).
func (p *ledgerPart) damage() error {
	if e := p.damaged.Load(); e != nil {
		return fmt.Errorf("damaged, read-only: %w", *e)
	}
	return nil
}

// publishKey writes the service's public key where an auditor can copy it
// from (hex, one line) and logs it: verify needs it pinned.
func publishKey(path string, pub ed25519.PublicKey, log *slog.Logger) {
	text := hex.EncodeToString(pub) + "\n"
	if b, err := os.ReadFile(path); err != nil || string(b) != text {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			log.Warn("could not write the service's public key", "path", path, "err", err)
		}
	}
	log.Info("service key: auditors pin this public key to verify proofs and the ledger (twin-service verify -key HEX)", "public_key", hex.EncodeToString(pub), "file", path)
}

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
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_approvals_reads_total", Help: "Reads of the deployments in force from the ledger."},
			func() float64 { return float64(p.approvals.Reads.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_approvals_errors_total", Help: "Failed reads of the deployments in force (the last picture is kept)."},
			func() float64 { return float64(p.approvals.Errors.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_remediations_proposed_total", Help: "Remediations of tainted models proposed on the ledger."},
			func() float64 { return float64(p.proposer.Proposed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_remediation_stops_recorded_total", Help: "GPUs recorded on the ledger as no longer running a model a remediation paused (a signed workloads report)."},
			func() float64 { return float64(p.stops.Recorded.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twinchain_remediation_stops_pending", Help: "GPUs still reported running (or not yet reported without) a model an executed remediation paused."},
			func() float64 { return float64(p.stops.Pending.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "twinchain_remediation_stops_refused_total", Help: "Remediation stops the ledger refused (the message is not tried again)."},
			func() float64 { return float64(p.stops.Refused.Load()) }),
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

// approvalsAPI is the deployments in force for the API's run-time views
// (nil when the ledger is off).
func (p *ledgerPart) approvalsAPI() httpapi.Approvals {
	if p == nil {
		return nil
	}
	return p.approvals
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
	if err := p.damage(); err != nil {
		st["damage"] = err.Error()
	}
	if p.file != nil {
		st["height"] = p.file.Height()
	}
	if p.fabric != nil {
		// The channel's block height, or why not (the peer is away).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if h, err := p.fabric.Height(ctx); err != nil {
			st["height_error"] = err.Error()
		} else {
			st["height"] = h
		}
	}
	return st
}

func (p *ledgerPart) backend() string {
	if p.cfg.Backend == "" {
		return ledgerFile
	}
	return p.cfg.Backend
}

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/gofiber/fiber/v2"

	"twinchain/chaincode/core"
	"twinchain/internal/anchor"
	"twinchain/internal/eventtree"
	"twinchain/internal/fabricledger"
	"twinchain/internal/fileledger"
	"twinchain/internal/httpapi"
	"twinchain/internal/ingest"
	"twinchain/internal/ledger"
	"twinchain/internal/proofbundle"
	"twinchain/internal/registry"
	"twinchain/internal/signkey"
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
	Backend string `yaml:"backend"`  // file (embedded, default), fabric or off
	Dir     string `yaml:"dir"`      // embedded ledger, event tree, anchor queue; default {data_dir}/ledger
	KeyFile string `yaml:"key_file"` // service Ed25519 key (made when missing); default {data_dir}/service.key
	Org     string `yaml:"org"`      // the organisation the embedded ledger records for callers; default "twinchain"
	// AnonymousReads lets requests without a token read the ledger (and
	// fetch proofs) as an auditor; writes always need a token.
	AnonymousReads bool                `yaml:"anonymous_reads"`
	Tokens         []LedgerToken       `yaml:"tokens"`
	Anchor         anchor.Config       `yaml:"anchor"`
	Fabric         fabricledger.Config `yaml:"fabric"`
}

// LedgerToken is one API credential for the ledger routes, e.g. an ML
// pipeline's: the hex SHA-256 of the bearer token, and who it acts as.
type LedgerToken struct {
	SHA256 string    `yaml:"sha256"`
	ID     string    `yaml:"id"`
	Role   core.Role `yaml:"role"`
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
	for i, t := range c.Tokens {
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("ledger.tokens[%d].sha256: want 64 hex digits", i))
		}
		if !core.ValidID(t.ID) || !t.Role.Valid() {
			errs = append(errs, fmt.Errorf("ledger.tokens[%d]: id %q role %q: want a valid id and role", i, t.ID, t.Role))
		}
	}
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
	if p.tree, err = eventtree.Open(filepath.Join(cfg.Dir, "events")); err != nil {
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

// deps are the API's ledger routes' dependencies.
func (p *ledgerPart) deps() *httpapi.LedgerDeps {
	if p == nil {
		return nil
	}
	return &httpapi.LedgerDeps{Ledger: p.client, Proofs: p.proofs, Caller: p.caller, Status: p.status}
}

// caller maps a bearer token to its configured caller.
func (p *ledgerPart) caller(c *fiber.Ctx) (core.Caller, error) {
	auth := c.Get(fiber.HeaderAuthorization)
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		if p.cfg.AnonymousReads && c.Method() == fiber.MethodGet {
			return core.Caller{ID: "anonymous", Role: core.RoleAuditor}, nil
		}
		return core.Caller{}, errors.New("a bearer token is required")
	}
	sum := sha256.Sum256([]byte(tok))
	for _, t := range p.cfg.Tokens {
		want, _ := hex.DecodeString(t.SHA256)
		if subtle.ConstantTimeCompare(sum[:], want) == 1 {
			return core.Caller{ID: t.ID, Role: t.Role}, nil
		}
	}
	return core.Caller{}, errors.New("unknown token")
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

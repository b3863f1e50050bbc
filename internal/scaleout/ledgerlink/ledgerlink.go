// Package ledgerlink carries ledger calls between twin-service nodes over
// NATS request/reply, so that several nodes anchor into one ledger: a
// designated node keeps the embedded ledger (fileledger) and Serves it;
// every other node Dials a Client, a ledger.Backend, and anchors through
// ledger.New(client).OnChain(nodeID), each node on its own named anchor
// chain (core.AnchorInput.Chain) over its own event tree. The Client also
// reads the signed blocks proof bundles carry (proofbundle.BlockSource),
// so a node exports bundles that verify offline under its own key and the
// ledger node's (proofbundle.VerifyKeys).
//
// The link serves only the calls anchoring and proof export make
// (Functions), for the service role on writes; the caller's organisation is
// the ledger node's own. Who may send requests is NATS's to decide (the
// subject's permissions): a node that may publish on Subject may anchor on
// any chain, as a twin-service may on its own ledger. Requests are bounded
// (MaxRequest bytes, Workers at a time, Queue waiting, each Timeout long);
// a request beyond the queue is dropped and its caller times out with
// ErrUnavailable; every error reaches the caller wrapping the ledger's
// sentinel.
//
// Nothing in twin-service imports this package (deps_test.go).
package ledgerlink

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
	"twinchain/internal/ledger/fileledger"
)

// Subject is the request subject of the ledger node.
const Subject = "twin.ledger"

// Limits of the server.
const (
	MaxRequest = 1 << 20 // bytes of one request
	Workers    = 4
	Queue      = 256
	// Timeout bounds one call on the server and, where its context has no
	// deadline, on the client.
	Timeout = 10 * time.Second
)

// Functions are the ledger functions the link serves: what the anchorer
// (internal/ledger/anchor) writes and reads, and the anchor reads of proof
// export.
var Functions = map[string]bool{
	"SubmitAnchor": true, "SubmitAnchors": true, "AnchorHead": true, "GetAnchor": true, "AnchorForEvent": true,
	"RecordEvidence": true, "RegisterAsset": true, "RegisterAssets": true, "SetAssetStatus": true, "GetAsset": true, "RecordArrival": true,
}

// Operations of a request.
const (
	opSubmit    = "submit"
	opEvaluate  = "evaluate"
	opBlockOfTx = "block_of_tx"
	opKey       = "key"
)

type request struct {
	Op     string          `json:"op"`
	Caller core.Caller     `json:"caller,omitzero"`
	Fn     string          `json:"fn,omitempty"`
	Arg    json.RawMessage `json:"arg,omitempty"`
	TxID   string          `json:"tx_id,omitempty"`
}

type reply struct {
	Result json.RawMessage   `json:"result,omitempty"`
	Block  *fileledger.Block `json:"block,omitempty"`
	Key    []byte            `json:"key,omitempty"`
	Err    string            `json:"err,omitempty"`
	Kind   string            `json:"kind,omitempty"` // the sentinel Err wraps
}

// sentinels are the errors a reply names by kind.
var sentinels = []struct {
	kind string
	err  error
}{
	{"not_found", ledger.ErrNotFound}, {"forbidden", ledger.ErrForbidden}, {"conflict", ledger.ErrConflict},
	{"invalid", ledger.ErrInvalid}, {"tampered", ledger.ErrTampered}, {"unavailable", ledger.ErrUnavailable},
}

func kindOf(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.kind
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "unavailable"
	}
	return ""
}

// Ledger is what the server serves: the embedded ledger (fileledger.Ledger).
type Ledger interface {
	ledger.Backend
	BlockOfTx(id string) (fileledger.Block, error)
	PublicKey() ed25519.PublicKey
}

// Server answers ledger calls on Subject.
type Server struct {
	nc  *nats.Conn
	l   Ledger
	log *slog.Logger

	served, refused, failed atomic.Uint64
}

// Stats are the server's counters.
type Stats struct {
	Served  uint64 `json:"served"`  // calls answered with a result
	Refused uint64 `json:"refused"` // requests refused before the ledger (bad request, function not served, queue full)
	Failed  uint64 `json:"failed"`  // calls the ledger answered with an error
}

// NewServer returns a server of l on nc; Run serves.
func NewServer(nc *nats.Conn, l Ledger, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{nc: nc, l: l, log: log}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Served: s.served.Load(), Refused: s.refused.Load(), Failed: s.failed.Load()}
}

// Run serves until ctx ends. Every server of one ledger subscribes in one
// queue group, so one of them answers each request.
func (s *Server) Run(ctx context.Context) error {
	ch := make(chan *nats.Msg, Queue)
	// The NATS client hands messages to ch and never blocks on it: past
	// Queue it drops them and reports a slow consumer; the requester times
	// out (ErrUnavailable) and retries.
	sub, err := s.nc.ChanQueueSubscribe(Subject, "ledger", ch)
	if err != nil {
		return fmt.Errorf("ledgerlink: subscribe %s: %w", Subject, err)
	}
	if err := s.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("ledgerlink: %w", err)
	}
	var wg sync.WaitGroup
	for range Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-ch:
					s.answer(ctx, m)
				}
			}
		})
	}
	<-ctx.Done()
	err = sub.Unsubscribe()
	wg.Wait()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("ledgerlink: %w", err)
	}
	return nil
}

func (s *Server) answer(ctx context.Context, m *nats.Msg) {
	rep := s.call(ctx, m.Data)
	data, err := json.Marshal(rep)
	if err != nil {
		data, _ = json.Marshal(reply{Err: "encode reply: " + err.Error()})
	}
	if err := m.Respond(data); err != nil {
		s.log.Warn("ledger link reply", "err", err)
	}
}

func (s *Server) call(ctx context.Context, data []byte) reply {
	refuse := func(err error) reply {
		s.refused.Add(1)
		return reply{Err: err.Error(), Kind: kindOf(err)}
	}
	var req request
	if len(data) > MaxRequest {
		return refuse(fmt.Errorf("ledger link request of %d bytes (at most %d): %w", len(data), MaxRequest, ledger.ErrInvalid))
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return refuse(fmt.Errorf("ledger link request: %v: %w", err, ledger.ErrInvalid))
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var rep reply
	var err error
	switch req.Op {
	case opSubmit, opEvaluate:
		if !Functions[req.Fn] {
			return refuse(fmt.Errorf("ledger link serves no function %q: %w", req.Fn, ledger.ErrForbidden))
		}
		if req.Op == opSubmit && req.Caller.Role != core.RoleService {
			return refuse(fmt.Errorf("ledger link writes for the service role only, not %q: %w", req.Caller.Role, ledger.ErrForbidden))
		}
		req.Caller.MSP = "" // the ledger node's own organisation
		if req.Op == opSubmit {
			rep.Result, err = s.l.Submit(ctx, req.Caller, req.Fn, req.Arg)
		} else {
			rep.Result, err = s.l.Evaluate(ctx, req.Caller, req.Fn, req.Arg)
		}
	case opBlockOfTx:
		var b fileledger.Block
		if b, err = s.l.BlockOfTx(req.TxID); err == nil {
			rep.Block = &b
		}
	case opKey:
		rep.Key = s.l.PublicKey()
	default:
		return refuse(fmt.Errorf("ledger link operation %q: %w", req.Op, ledger.ErrInvalid))
	}
	if err != nil {
		s.failed.Add(1)
		return reply{Err: err.Error(), Kind: kindOf(err)}
	}
	s.served.Add(1)
	return rep
}

// Client calls a ledger node over NATS; it is a ledger.Backend and a
// proofbundle.BlockSource. Safe for concurrent use.
type Client struct {
	nc  *nats.Conn
	key atomic.Pointer[ed25519.PublicKey]
}

// NewClient returns a client that calls the ledger node through nc; it
// sends nothing yet. Closing it leaves nc open.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// Close does nothing: the connection is the caller's.
func (c *Client) Close() error { return nil }

func (c *Client) do(ctx context.Context, req request) (reply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return reply{}, fmt.Errorf("ledger link: encode %s: %w", req.Fn, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, Timeout)
		defer cancel()
	}
	m, err := c.nc.RequestWithContext(ctx, Subject, data)
	if err != nil {
		return reply{}, fmt.Errorf("ledger link %s %s: %w: %w", req.Op, req.Fn, err, ledger.ErrUnavailable)
	}
	var rep reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return reply{}, fmt.Errorf("ledger link %s %s: reply: %w", req.Op, req.Fn, err)
	}
	if rep.Err != "" {
		for _, s := range sentinels {
			if s.kind == rep.Kind {
				return rep, fmt.Errorf("ledger node: %s: %w", rep.Err, s.err)
			}
		}
		return rep, fmt.Errorf("ledger node: %s", rep.Err)
	}
	return rep, nil
}

// Submit runs a writing ledger function on the ledger node.
func (c *Client) Submit(ctx context.Context, caller core.Caller, fn string, arg []byte) ([]byte, error) {
	rep, err := c.do(ctx, request{Op: opSubmit, Caller: caller, Fn: fn, Arg: arg})
	return rep.Result, err
}

// Evaluate runs a reading ledger function on the ledger node.
func (c *Client) Evaluate(ctx context.Context, caller core.Caller, fn string, arg []byte) ([]byte, error) {
	rep, err := c.do(ctx, request{Op: opEvaluate, Caller: caller, Fn: fn, Arg: arg})
	return rep.Result, err
}

// BlockOfTx reads the ledger node's signed block holding transaction id.
func (c *Client) BlockOfTx(id string) (fileledger.Block, error) {
	rep, err := c.do(context.Background(), request{Op: opBlockOfTx, TxID: id})
	if err != nil {
		return fileledger.Block{}, err
	}
	if rep.Block == nil {
		return fileledger.Block{}, fmt.Errorf("ledger link: no block in the reply for transaction %s", id)
	}
	return *rep.Block, nil
}

// BlockWriting is not served: record bundles are the ledger node's to make.
func (c *Client) BlockWriting(key string) (fileledger.Block, error) {
	return fileledger.Block{}, fmt.Errorf("ledger link: the block writing %s: ask the ledger node: %w", key, ledger.ErrForbidden)
}

// PublicKey is the ledger node's block key (nil while it cannot be
// reached; asked once, then kept).
func (c *Client) PublicKey() ed25519.PublicKey {
	if k := c.key.Load(); k != nil {
		return *k
	}
	rep, err := c.do(context.Background(), request{Op: opKey})
	if err != nil || len(rep.Key) != ed25519.PublicKeySize {
		return nil
	}
	k := ed25519.PublicKey(rep.Key)
	c.key.Store(&k)
	return k
}

package fileledger

import (
	"context"
	"fmt"
	"time"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
)

// Ledger is the embedded ledger: a ledger.Backend that runs the core's
// functions on the Engine's blocks and state.
type Ledger struct {
	*Engine
}

// Open opens or creates the embedded ledger in opts.Dir.
func Open(opts Options) (*Ledger, error) {
	e, err := openEngine(opts)
	if err != nil {
		return nil, err
	}
	return &Ledger{Engine: e}, nil
}

// OpenLedger opens the embedded ledger and wraps it in a ledger.Client.
func OpenLedger(opts Options) (*ledger.Client, *Ledger, error) {
	l, err := Open(opts)
	if err != nil {
		return nil, nil, err
	}
	return ledger.New(l), l, nil
}

func (l *Ledger) caller(c core.Caller) core.Caller {
	if c.MSP == "" {
		c.MSP = l.opts.Org
	}
	return c
}

// Submit runs a writing core function in a new block.
func (l *Ledger) Submit(ctx context.Context, caller core.Caller, fn string, arg []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, ok := core.Lookup(fn)
	if !ok || !f.Write {
		return nil, fmt.Errorf("function %q is not a ledger write: %w", fn, ledger.ErrNotFound)
	}
	caller = l.caller(caller)
	var out []byte
	_, err := l.Engine.Submit(Caller{ID: caller.ID, MSP: caller.MSP, Role: string(caller.Role)}, fn, rawArg(arg),
		func(st *txState, id string, at time.Time) (any, error) {
			var err error
			out, err = f.Invoke(&core.Tx{ID: id, Time: at, Caller: caller, State: st, Transient: ledger.TransientFrom(ctx)}, arg)
			return rawArg(out), err
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Evaluate runs a reading core function on the committed state.
func (l *Ledger) Evaluate(ctx context.Context, caller core.Caller, fn string, arg []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, ok := core.Lookup(fn)
	if !ok || f.Write {
		return nil, fmt.Errorf("function %q is not a ledger query: %w", fn, ledger.ErrNotFound)
	}
	var out []byte
	err := l.Engine.Query(func(st *txState) error {
		var err error
		out, err = f.Invoke(&core.Tx{Time: l.opts.Now().UTC(), Caller: l.caller(caller), State: st}, arg)
		return err
	})
	return out, err
}

// rawArg keeps a JSON argument's bytes as they are in a block.
type rawArg []byte

func (r rawArg) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

var _ ledger.Backend = (*Ledger)(nil)

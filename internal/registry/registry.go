// Package registry is the gateway registry: which gateways may publish, the
// Ed25519 public key each signs with, its site and the assets it reports.
//
// The registry file is JSON:
//
//	{"gateways":[{"id":"gw-srv-s1-001","public_key":"<base64 std of the 32-byte key>","site":"s1","assets":["srv-s1-001","srv-s1-001.gpu0"]}]}
//
// firmware-sim fleet writes it. twin-service treats it as a seed: it imports
// each gateway of the file once (FileWatcher), keeps the registry in its
// store, and from then on the API's edits (revoke, re-key, bind) are the
// truth, across restarts.
package registry

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"twinchain/internal/atomicfile"
	"twinchain/internal/wire"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid gateway")

// Gateway is one registered gateway.
type Gateway struct {
	ID        string            `json:"id"`
	PublicKey ed25519.PublicKey `json:"public_key"` // base64 (std) in JSON
	Site      string            `json:"site"`
	Assets    []string          `json:"assets"`
	// Retired are the gateway's earlier keys, newest last, kept by the
	// registry (Put) when the key changes: the messages its agent signed
	// before the change, still in its queue, are accepted in their own
	// epoch (KeyFor). The API never sets them.
	Retired []RetiredKey `json:"retired_keys,omitempty"`
}

// RetiredKey is an earlier key of a gateway and when it was replaced.
type RetiredKey struct {
	PublicKey ed25519.PublicKey `json:"public_key"`
	Epoch     uint64            `json:"epoch"` // wire.KeyEpoch of the key
	Retired   time.Time         `json:"retired"`
}

// A re-keyed gateway's earlier keys are kept for RetiredKeyWindow after
// their retirement, at most MaxRetiredKeys of them (the newest). The window
// is how long an agent may hold messages it signed before the re-key (its
// disk queue through an outage); messages signed with a retired key must
// also carry a reading time before its retirement. Deleting (revoking) a
// gateway drops its retired keys with it: a key that leaked is revoked, not
// rotated.
const (
	MaxRetiredKeys   = 4
	RetiredKeyWindow = 7 * 24 * time.Hour
)

// Validate checks the gateway's id and key.
func (g *Gateway) Validate() error {
	if !wire.ValidGatewayID(g.ID) {
		return fmt.Errorf("gateway id %q: %w", g.ID, ErrInvalid)
	}
	if len(g.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("gateway %s: public key has %d bytes, want %d: %w", g.ID, len(g.PublicKey), ed25519.PublicKeySize, ErrInvalid)
	}
	for _, a := range g.Assets {
		if a == "" {
			return fmt.Errorf("gateway %s: empty asset id: %w", g.ID, ErrInvalid)
		}
	}
	return nil
}

// Clone returns a deep copy of g.
func (g Gateway) Clone() Gateway {
	g.PublicKey = slices.Clone(g.PublicKey)
	g.Assets = slices.Clone(g.Assets)
	g.Retired = slices.Clone(g.Retired)
	return g
}

// retire returns g with old's retired keys (when g brings none), plus old's
// key when g replaces it, without keys expired at now or equal to g's key,
// at most MaxRetiredKeys.
func (g Gateway) retire(old Gateway, now time.Time) Gateway {
	if g.Retired == nil {
		g.Retired = slices.Clone(old.Retired)
	}
	if len(old.PublicKey) != 0 && !bytes.Equal(old.PublicKey, g.PublicKey) {
		g.Retired = append(g.Retired, RetiredKey{PublicKey: slices.Clone(old.PublicKey), Epoch: wire.KeyEpoch(old.PublicKey), Retired: now.UTC()})
	}
	g.Retired = slices.DeleteFunc(g.Retired, func(k RetiredKey) bool {
		return now.Sub(k.Retired) >= RetiredKeyWindow || bytes.Equal(k.PublicKey, g.PublicKey)
	})
	if n := len(g.Retired); n > MaxRetiredKeys {
		g.Retired = g.Retired[n-MaxRetiredKeys:]
	}
	if len(g.Retired) == 0 {
		g.Retired = nil
	}
	return g
}

// File is the registry file's shape.
type File struct {
	Gateways []Gateway `json:"gateways"`
}

// Validate checks every gateway and that ids are unique.
func (f *File) Validate() error {
	seen := make(map[string]bool, len(f.Gateways))
	for i := range f.Gateways {
		g := &f.Gateways[i]
		if err := g.Validate(); err != nil {
			return fmt.Errorf("gateways[%d]: %w", i, err)
		}
		if seen[g.ID] {
			return fmt.Errorf("gateways[%d]: duplicate id %s: %w", i, g.ID, ErrInvalid)
		}
		seen[g.ID] = true
	}
	return nil
}

// Parse decodes and validates a registry file's bytes.
func Parse(data []byte) (File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("parse registry: %w", err)
	}
	if err := f.Validate(); err != nil {
		return f, fmt.Errorf("registry: %w", err)
	}
	return f, nil
}

// LoadFile reads and validates a registry file.
func LoadFile(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("read registry: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// WriteFile writes f to path atomically (a temporary file renamed into place).
func WriteFile(path string, f File) error {
	if err := f.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("marshal registry: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write registry: %w", err)
	}
	return nil
}

// Store persists registry edits; twin-service's store is one.
type Store interface {
	PutGateways(gws ...Gateway) error
	DeleteGateway(id string) error
}

// Registry is an in-memory index of gateways, safe for concurrent use. The
// ingest looks gateways up here on every message. With a Store (Persist),
// Put and Delete write through to it before changing the index.
type Registry struct {
	mu      sync.RWMutex
	gw      map[string]Gateway
	reports map[string]map[string]struct{} // gateway -> its listed assets (none: no list)
	listed  map[string]int                 // asset -> how many gateways list it
	store   Store
	notify  []func(id string)
	now     func() time.Time // when a key is retired; time.Now unless Clock
	version atomic.Uint64    // counts changes: a reader caches what it derives until it moves
}

// Persist makes Put and Delete write through to st. Call it before the
// registry is shared.
func (r *Registry) Persist(st Store) { r.store = st }

// Notify makes every change of a gateway (Put, PutAll, Delete) call fn with
// its id, after the change and outside the registry's lock: the embedded
// broker closes the sessions of a revoked or re-keyed gateway. Call it
// before the registry is shared.
func (r *Registry) Notify(fn func(id string)) { r.notify = append(r.notify, fn) }

// Clock makes the registry date the keys it retires by now (tests). Call
// it before the registry is shared.
func (r *Registry) Clock(now func() time.Time) { r.now = now }

func (r *Registry) changed(id string) {
	for _, fn := range r.notify {
		fn(id)
	}
}

// New returns a registry holding gws.
func New(gws ...Gateway) *Registry {
	r := &Registry{gw: make(map[string]Gateway, len(gws)), reports: map[string]map[string]struct{}{}, listed: map[string]int{}, now: time.Now}
	for _, g := range gws {
		r.set(g)
	}
	return r
}

// set indexes g; the caller holds the write lock (or owns r).
func (r *Registry) set(g Gateway) {
	r.version.Add(1)
	r.unlist(g.ID)
	r.gw[g.ID] = g.Clone()
	if len(g.Assets) == 0 {
		return
	}
	set := make(map[string]struct{}, len(g.Assets))
	for _, a := range g.Assets {
		if _, dup := set[a]; !dup {
			set[a] = struct{}{}
			r.listed[a]++
		}
	}
	r.reports[g.ID] = set
}

// unlist drops gateway id's asset list from the index.
func (r *Registry) unlist(id string) {
	for a := range r.reports[id] {
		if r.listed[a]--; r.listed[a] <= 0 {
			delete(r.listed, a)
		}
	}
	delete(r.reports, id)
}

// Binding says whether a gateway may report an asset.
type Binding int

const (
	// Bound: the asset is the gateway itself or in its asset list.
	Bound Binding = iota
	// Unbound: the gateway has a list without the asset, or the asset is
	// another gateway or in another gateway's list.
	Unbound
	// Unclaimed: the gateway has no list and no gateway lists the asset.
	// The ingest lets the gateway report it only while no other gateway
	// reports it (the first to report an unlisted asset holds it, until an
	// operator binds it by listing it).
	Unclaimed
)

// Binding says whether gateway gw may report asset.
func (r *Registry) Binding(gw, asset string) Binding {
	if asset == gw {
		return Bound
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if set, ok := r.reports[gw]; ok {
		if _, ok := set[asset]; ok {
			return Bound
		}
		return Unbound
	}
	if _, isGateway := r.gw[asset]; isGateway || r.listed[asset] > 0 {
		return Unbound
	}
	return Unclaimed
}

// Lookup returns the gateway's public key and site.
func (r *Registry) Lookup(id string) (pub ed25519.PublicKey, site string, ok bool) {
	r.mu.RLock()
	g, ok := r.gw[id]
	r.mu.RUnlock()
	return g.PublicKey, g.Site, ok
}

// KeyFor returns the key that signs gateway id's messages of epoch at now:
// its key, or a retired key of that epoch within RetiredKeyWindow (with
// the time it was retired; zero for the current key). For an epoch of no
// such key it returns the current key, which such a message fails (ErrEpoch).
func (r *Registry) KeyFor(id string, epoch uint64, now time.Time) (pub ed25519.PublicKey, retired time.Time, site string, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	g, ok := r.gw[id]
	for i := range g.Retired {
		k := &g.Retired[i]
		if k.Epoch == epoch && now.Sub(k.Retired) < RetiredKeyWindow {
			return k.PublicKey, k.Retired, g.Site, ok
		}
	}
	return g.PublicKey, time.Time{}, g.Site, ok
}

// Get returns a copy of one gateway.
func (r *Registry) Get(id string) (Gateway, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	g, ok := r.gw[id]
	return g.Clone(), ok
}

// Put adds or replaces a gateway after validating it.
func (r *Registry) Put(g Gateway) error { return r.PutAll(File{Gateways: []Gateway{g}}) }

// Delete removes a gateway and reports whether it was there.
func (r *Registry) Delete(id string) (bool, error) {
	ok, err := r.delete(id)
	if ok {
		r.changed(id)
	}
	return ok, err
}

func (r *Registry) delete(id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.gw[id]; !ok {
		return false, nil
	}
	if r.store != nil {
		if err := r.store.DeleteGateway(id); err != nil {
			return false, err
		}
	}
	delete(r.gw, id)
	r.unlist(id)
	r.version.Add(1)
	return true, nil
}

// Version changes whenever a gateway is added, replaced or deleted: what a
// reader derives from the registry (AssetIDs) stays valid while it does
// not move.
func (r *Registry) Version() uint64 { return r.version.Load() }

// AssetIDs lists the assets the gateways name, or nil (no asset check)
// when no gateway lists any.
func (r *Registry) AssetIDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for _, set := range r.reports {
		for a := range set {
			out = append(out, a)
		}
	}
	return out
}

// List returns copies of every gateway, sorted by id.
func (r *Registry) List() []Gateway {
	r.mu.RLock()
	out := make([]Gateway, 0, len(r.gw))
	for _, g := range r.gw {
		out = append(out, g.Clone())
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Len is the number of gateways.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.gw)
}

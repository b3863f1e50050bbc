package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sort"
	"time"

	"twinchain/internal/atomicfile"
)

// FileWatcher imports a registry file (registry.json) into the registry: the
// file is a seed. Each gateway in it is imported once, the first time its id
// appears; from then on the registry (its store, edited over the API: revoke,
// re-key, bind) is the authority and the file's entry for that id is ignored,
// even after a restart. The ids imported are recorded in a JSON file next to
// the store (record), so a gateway revoked over the API is not brought back
// by the file. The file is re-read when its modification time or size
// changes (firmware-sim may write it after twin-service started); a missing
// file is waited for.
type FileWatcher struct {
	path     string
	record   string
	interval time.Duration
	reg      *Registry
	log      *slog.Logger
	mod      time.Time
	size     int64
	warned   map[string]bool // ids whose differing file entry was logged
}

// NewFileWatcher watches path every interval and imports into reg, keeping
// the ids imported in record.
func NewFileWatcher(path, record string, interval time.Duration, reg *Registry, log *slog.Logger) *FileWatcher {
	return &FileWatcher{path: path, record: record, interval: interval, reg: reg, log: log, warned: map[string]bool{}}
}

// importRecord is the record file's shape.
type importRecord struct {
	Note     string   `json:"note"`
	Imported []string `json:"imported"` // gateway ids, sorted
}

const recordNote = "gateway ids imported from the registry file; the registry (API) owns them now"

func (w *FileWatcher) loadRecord() (map[string]bool, error) {
	data, err := os.ReadFile(w.record)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry import record: %w", err)
	}
	var r importRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("registry import record %s: %w", w.record, err)
	}
	out := make(map[string]bool, len(r.Imported))
	for _, id := range r.Imported {
		out[id] = true
	}
	return out, nil
}

func (w *FileWatcher) saveRecord(ids map[string]bool) error {
	r := importRecord{Note: recordNote, Imported: make([]string, 0, len(ids))}
	for id := range ids {
		r.Imported = append(r.Imported, id)
	}
	sort.Strings(r.Imported)
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(w.record, append(data, '\n'), 0o600)
}

// Check reads the file if it changed since the last check and imports the
// gateways it has not imported before. A missing file is not an error.
func (w *FileWatcher) Check() error {
	fi, err := os.Stat(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.ModTime().Equal(w.mod) && fi.Size() == w.size {
		return nil
	}
	f, err := LoadFile(w.path)
	if err != nil {
		return err
	}
	done, err := w.loadRecord()
	if err != nil {
		return err
	}
	var add File
	for _, g := range f.Gateways {
		if done[g.ID] {
			if cur, ok := w.reg.Get(g.ID); (!ok || !sameGateway(cur, g)) && !w.warned[g.ID] {
				w.warned[g.ID] = true
				w.log.Warn("registry file entry ignored: this gateway was imported before and the registry (API) owns it now; edit it with PUT or DELETE /api/v1/gateways/{id}",
					"gateway", g.ID, "path", w.path, "in_registry", ok)
			}
			continue
		}
		if _, ok := w.reg.Get(g.ID); !ok {
			add.Gateways = append(add.Gateways, g)
		}
		done[g.ID] = true
	}
	if err := w.reg.PutAll(add); err != nil {
		return err
	}
	if err := w.saveRecord(done); err != nil {
		return err
	}
	w.mod, w.size = fi.ModTime(), fi.Size()
	w.log.Info("gateway registry file read", "path", w.path, "gateways", len(f.Gateways), "imported", len(add.Gateways))
	return nil
}

// sameGateway reports whether a and b have the same key, site and assets.
func sameGateway(a, b Gateway) bool {
	return a.PublicKey.Equal(b.PublicKey) && a.Site == b.Site && slices.Equal(a.Assets, b.Assets)
}

// Run checks the file every interval until ctx ends. An invalid file is
// logged and retried at the next change.
func (w *FileWatcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := w.Check(); err != nil && err.Error() != lastErr {
				lastErr = err.Error()
				w.log.Error("gateway registry file", "path", w.path, "err", err)
			} else if err == nil {
				lastErr = ""
			}
		}
	}
}

// PutAll adds or replaces every gateway of f in r (write-through when r is
// persisted).
func (r *Registry) PutAll(f File) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if err := r.putAll(f.Gateways); err != nil {
		return err
	}
	for _, g := range f.Gateways {
		r.changed(g.ID)
	}
	return nil
}

func (r *Registry) putAll(gws []Gateway) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	gws = slices.Clone(gws)
	for i := range gws {
		gws[i] = gws[i].retire(r.gw[gws[i].ID], now)
	}
	if r.store != nil {
		if err := r.store.PutGateways(gws...); err != nil {
			return err
		}
	}
	for _, g := range gws {
		r.set(g)
	}
	return nil
}

package registry

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"time"
)

// FileWatcher re-reads a registry file when its modification time or size
// changes and hands each valid version to apply. firmware-sim may write the
// file after twin-service started; a missing file is waited for.
type FileWatcher struct {
	path     string
	interval time.Duration
	apply    func(File) error
	log      *slog.Logger
	mod      time.Time
	size     int64
}

// NewFileWatcher watches path every interval.
func NewFileWatcher(path string, interval time.Duration, apply func(File) error, log *slog.Logger) *FileWatcher {
	return &FileWatcher{path: path, interval: interval, apply: apply, log: log}
}

// Check reads the file if it changed since the last check and applies it.
// A missing file is not an error.
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
	if err := w.apply(f); err != nil {
		return err
	}
	w.mod, w.size = fi.ModTime(), fi.Size()
	w.log.Info("gateway registry file loaded", "path", w.path, "gateways", len(f.Gateways))
	return nil
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

package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// tightenPerms takes group and other access off everything under the data
// directory (files 0600, directories 0700 at most): earlier versions made
// ledger and telemetry files world-readable. Every part creates its files
// private; this fixes a data directory made before that.
func tightenPerms(dir string, log *slog.Logger) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		if mode := info.Mode().Perm(); mode&0o077 != 0 {
			if err := os.Chmod(path, mode&^0o077); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		log.Warn("could not make the data directory private", "dir", dir, "err", err)
	}
	if n > 0 {
		log.Info("took group and other access off files in the data directory", "dir", dir, "files", n)
	}
}

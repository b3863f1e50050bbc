// Package atomicfile writes a file whole or not at all: through a
// temporary file in the same folder, synced, then renamed into place, so
// that a crash or a full disk leaves the old file or the new one, never a
// part.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to path with permissions perm (the file's, whatever
// the umask), replacing any older file.
func Write(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a rename: nothing left to remove
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

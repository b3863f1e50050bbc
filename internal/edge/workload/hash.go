// Package workload finds what runs on a host's GPUs: for each process NVML
// reports, the model artifact it serves (the content hash of a configured
// model directory or file) and the container image it runs in (from its
// cgroup and the container runtime's local socket), and turns them into
// the workloads message.
package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// MaxModelFiles bounds the files hashed for one model directory.
const MaxModelFiles = 100_000

// Hasher hashes model directories and files. A file is read again only
// when its size or modification time changed since it was last hashed, so
// a multi-gigabyte model costs one stat per file per scan once hashed.
type Hasher struct {
	// MaxAge, when set, re-reads a file hashed longer ago than this even
	// when its size and modification time are unchanged (a tamperer can
	// set both back).
	MaxAge time.Duration
	now    func() time.Time

	mu    sync.Mutex
	files map[string]fileSum
	// Read counts the bytes hashed, for tests and metrics.
	Read uint64
}

type fileSum struct {
	size  int64
	mtime time.Time
	at    time.Time // when it was hashed
	sum   [sha256.Size]byte
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher { return &Hasher{files: map[string]fileSum{}, now: time.Now} }

// Digest is the artifact digest of path, "sha256:" and 64 hex digits. For
// a file it is the SHA-256 of its content (what sha256sum prints). For a
// directory it is the SHA-256 of its manifest: one line "HEX  REL\n" per
// regular file below it (REL slash-separated, relative to path), sorted by
// REL; symbolic links and other non-regular files are left out.
func (h *Hasher) Digest(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		sum, err := h.file(path, fi)
		if err != nil {
			return "", err
		}
		return "sha256:" + hex.EncodeToString(sum[:]), nil
	}
	var rels []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if len(rels) == MaxModelFiles {
				return fmt.Errorf("more than %d files", MaxModelFiles)
			}
			rel, _ := filepath.Rel(path, p) // p is below path
			rels = append(rels, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	slices.Sort(rels)
	m := sha256.New()
	for _, rel := range rels {
		p := filepath.Join(path, filepath.FromSlash(rel))
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		sum, err := h.file(p, fi)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(m, "%x  %s\n", sum, rel)
	}
	return "sha256:" + hex.EncodeToString(m.Sum(nil)), nil
}

// file returns the SHA-256 of the file at p, from the cache while its size
// and modification time are those it was hashed at.
func (h *Hasher) file(p string, fi fs.FileInfo) ([sha256.Size]byte, error) {
	h.mu.Lock()
	c, ok := h.files[p]
	h.mu.Unlock()
	if ok && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) && (h.MaxAge == 0 || h.now().Sub(c.at) < h.MaxAge) {
		return c.sum, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return c.sum, err
	}
	defer f.Close()
	s := sha256.New()
	n, err := io.Copy(s, f)
	if err != nil {
		return c.sum, err
	}
	if n != fi.Size() {
		return c.sum, errors.New(p + ": changed while hashed")
	}
	c = fileSum{size: fi.Size(), mtime: fi.ModTime(), at: h.now()}
	s.Sum(c.sum[:0])
	h.mu.Lock()
	h.files[p] = c
	h.Read += uint64(n)
	h.mu.Unlock()
	return c.sum, nil
}

// Package agentkey keeps a gateway's identity on disk: its Ed25519 key,
// created on first run with mode 0600, and its sequence number, which never
// goes back across restarts.
package agentkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// LoadOrCreate reads the PKCS#8 PEM private key at path, or creates one with
// mode 0600 when the file does not exist. It refuses a key file that others
// can read.
func LoadOrCreate(path string) (key ed25519.PrivateKey, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, fmt.Errorf("encode key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("key folder: %w", err)
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := writeFileSync(path, pemBytes, 0o600, true); err != nil {
			return nil, false, fmt.Errorf("write key %s: %w", path, err)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read key: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("stat key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("key %s has mode %04o: others can read it; chmod 600 it", path, st.Mode().Perm())
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("key %s: a %T, want Ed25519", path, k)
	}
	return key, false, nil
}

// writeFileSync writes data to path through a temporary file, fsyncs it,
// renames it into place and fsyncs the folder; with exclusive it fails when
// path exists.
func writeFileSync(path string, data []byte, mode os.FileMode, exclusive bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if exclusive {
		if err := os.Link(tmp, path); err != nil {
			os.Remove(tmp)
			return err
		}
		os.Remove(tmp)
	} else if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// The rename is durable only once the folder is synced: without it a
	// power loss can bring back the old file (and reused sequence numbers).
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("sync folder of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder of %s: %w", path, err)
	}
	return nil
}

// Sequence hands out a gateway's sequence numbers. It reserves them on disk a
// block at a time, so it fsyncs once per block rather than once per message;
// after a restart it continues after the reserved block, leaving a gap that
// twin-service records, never a number it may have used. Safe for concurrent use.
type Sequence struct {
	path   string
	block  uint64
	mu     sync.Mutex
	next   uint64 // the number Next returns
	limit  uint64 // the highest number reserved on disk
	closed bool
}

// OpenSequence opens the sequence file at path (created when missing) and
// reserves numbers block at a time.
func OpenSequence(path string, block uint64) (*Sequence, error) {
	if block == 0 {
		block = 1000
	}
	s := &Sequence{path: path, block: block}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read sequence: %w", err)
	default:
		v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("sequence file %s: %w", path, err)
		}
		s.limit = v
	}
	s.next = s.limit + 1
	return s, nil
}

// Next returns the next sequence number; it is never 0 and never repeats,
// across restarts too.
func (s *Sequence) Next() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("sequence is closed")
	}
	if s.next > s.limit {
		limit := s.next + s.block - 1
		if err := writeFileSync(s.path, []byte(strconv.FormatUint(limit, 10)+"\n"), 0o600, false); err != nil {
			return 0, fmt.Errorf("reserve sequence numbers to %d: %w", limit, err)
		}
		s.limit = limit
	}
	n := s.next
	s.next++
	return n, nil
}

// Close records the last number handed out in place of the reserved block,
// so that after a clean stop the next start continues right after it and
// twin-service sees no gap. Next fails after Close. (After a crash the
// reserved block still guarantees no number is used twice.)
func (s *Sequence) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if last := s.next - 1; last != s.limit {
		if err := writeFileSync(s.path, []byte(strconv.FormatUint(last, 10)+"\n"), 0o600, false); err != nil {
			return fmt.Errorf("record last sequence number %d: %w", last, err)
		}
		s.limit = last
	}
	return nil
}

// Peek returns the number Next will return, without taking it.
func (s *Sequence) Peek() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

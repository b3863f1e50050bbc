// Package signkey loads the service's Ed25519 signing key, the key that
// signs ledger blocks and event-tree checkpoints.
//
// The key file holds the 32-byte seed in hex followed by a newline; it is
// created with mode 0600 when missing.
package signkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreate reads the key at path, or makes a new one there.
func LoadOrCreate(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("service key: %w", err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("service key: %w", err)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if err != nil {
		return nil, fmt.Errorf("service key: %w", err)
	}
	return Parse(b)
}

// Parse reads a key file's contents: a hex seed.
func Parse(b []byte) (ed25519.PrivateKey, error) {
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("service key: want %d bytes of hex seed", ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

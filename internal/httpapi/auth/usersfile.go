package auth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// usersFile is the shape of a users file.
type usersFile struct {
	Users []UserConfig `yaml:"users"`
}

// LoadUsersFile reads the users in a users file.
func LoadUsersFile(path string) ([]UserConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	var f usersFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return f.Users, nil
}

// EnsureAdmin makes sure the users file at path exists. When it does not,
// it writes one holding the user "admin" with a new random password and
// returns that password, so that the caller can print it once; otherwise
// it returns "". The file holds only the bcrypt hash.
func EnsureAdmin(path string, rand io.Reader) (password string, err error) {
	if _, err := os.Stat(path); err == nil {
		return "", nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("users file: %w", err)
	}
	b := make([]byte, 12)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("auth: random: %w", err)
	}
	const letters = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	pw := make([]byte, len(b))
	for i, c := range b {
		pw[i] = letters[int(c)%len(letters)]
	}
	hash, err := HashPassword(string(pw))
	if err != nil {
		return "", err
	}
	out, err := yaml.Marshal(usersFile{Users: []UserConfig{{Name: "admin", Role: Admin, PasswordHash: hash}}})
	if err != nil {
		return "", fmt.Errorf("users file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("users file: %w", err)
	}
	header := []byte("# twinchain users: name, role, bcrypt password_hash. Written at first start.\n")
	if err := os.WriteFile(path, append(header, out...), 0o600); err != nil {
		return "", fmt.Errorf("users file: %w", err)
	}
	return string(pw), nil
}

package auth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"twinchain/internal/atomicfile"
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

// AdminPasswordFile is the file beside the users file in which EnsureAdmin
// leaves the first admin's password (0600), so that it never goes to the
// logs; delete it once read.
func AdminPasswordFile(usersFile string) string {
	return filepath.Join(filepath.Dir(usersFile), "admin-password")
}

// EnsureAdmin makes sure the users file at path exists. When it does not,
// it writes one holding the user "admin" with a new random password (only
// its bcrypt hash), writes that password alone to AdminPasswordFile(path)
// (mode 0600) and returns it; otherwise it returns "".
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
	// The password first, so that a users file never exists without it.
	if err := atomicfile.Write(AdminPasswordFile(path), append(pw, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("admin password file: %w", err)
	}
	header := []byte("# twinchain users: name, role, bcrypt password_hash. Written at first start.\n")
	if err := atomicfile.Write(path, append(header, out...), 0o600); err != nil {
		return "", fmt.Errorf("users file: %w", err)
	}
	return string(pw), nil
}

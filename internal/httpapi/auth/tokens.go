package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"twinchain/internal/atomicfile"
)

// API tokens come from two places: the configuration's auth.tokens (a
// hand-written seed, read-only here) and the token file ({data}/tokens.json,
// mode 0600), which CreateToken and RevokeToken change (the dashboard's
// Settings > API tokens, `twin-service token`). Both store only the token's
// SHA-256; the token itself is shown once, when it is made.

// TokenFile is the token file in a data directory.
func TokenFile(dataDir string) string { return filepath.Join(dataDir, "tokens.json") }

// CLITokenFile is the file in a data directory that holds the token the
// command-line tools use by default (written at first start, 0600).
func CLITokenFile(dataDir string) string { return filepath.Join(dataDir, "cli-token") }

// EnsureCLIToken opens the token file of dataDir; at first start (no token
// file yet) it makes the admin token "cli" and writes it alone to
// CLITokenFile(dataDir), mode 0600, for the command-line tools on this
// host (`twin-service ledger`, `twin-service token`). It returns the path
// of that file when it wrote it, else "".
func (a *Authenticator) EnsureCLIToken(dataDir string) (string, error) {
	created, err := a.OpenTokenFile(TokenFile(dataDir))
	if err != nil || !created {
		return "", err
	}
	tok, _, err := a.CreateToken("cli", Admin, "twin-service (first start)")
	if err != nil {
		return "", err
	}
	path := CLITokenFile(dataDir)
	if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cli token file: %w", err)
	}
	return path, nil
}

// Token errors.
var (
	ErrTokenExists   = errors.New("a token of that name exists")
	ErrTokenNotFound = errors.New("no token of that name")
	ErrTokenInConfig = errors.New("the token is in the configuration file: remove it there")
	ErrNoTokenFile   = errors.New("no token file: tokens can be made only in the configuration")
	ErrTokenName     = errors.New("a token name is 1 to 64 letters, digits and . _ - @")
)

// TokenSource says where a token is kept.
const (
	TokenFromConfig = "config" // auth.tokens in the configuration
	TokenFromFile   = "file"   // the token file: made with CreateToken
)

// TokenInfo is an API token as listed: never the token, nor its hash.
type TokenInfo struct {
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Source    string    `json:"source"`
	Created   time.Time `json:"created,omitzero"`
	CreatedBy string    `json:"created_by,omitempty"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// storedToken is one token in the token file.
type storedToken struct {
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	SHA256    string    `json:"sha256"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// tokenEntry is a token in memory; lastUsed (unix nanoseconds) moves on
// every use, saved is what the token file last got.
type tokenEntry struct {
	storedToken
	source   string
	lastUsed atomic.Int64
	saved    atomic.Int64
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// tokens is the Authenticator's token table.
type tokens struct {
	mu     sync.RWMutex
	byHash map[string]*tokenEntry
	path   string     // the token file; "" when there is none
	saveMu sync.Mutex // one save at a time
}

func (t *tokens) add(e *tokenEntry) { t.byHash[e.SHA256] = e }

func (t *tokens) byName(name string) *tokenEntry {
	for _, e := range t.byHash {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// lastUsedSaveEvery bounds how often a token's use rewrites the token file.
const lastUsedSaveEvery = time.Minute

// OpenTokenFile adds the tokens of the token file at path and makes it the
// file CreateToken and RevokeToken change. created reports that there was
// none: an empty one is written.
func (a *Authenticator) OpenTokenFile(path string) (created bool, err error) {
	raw, err := os.ReadFile(path)
	var stored []storedToken
	switch {
	case errors.Is(err, fs.ErrNotExist):
		created = true
	case err != nil:
		return false, fmt.Errorf("token file: %w", err)
	default:
		if err := json.Unmarshal(raw, &stored); err != nil {
			return false, fmt.Errorf("token file %s: %w", path, err)
		}
	}
	a.tok.mu.Lock()
	defer a.tok.mu.Unlock()
	for _, s := range stored {
		if !s.Role.Valid() || len(s.SHA256) != 64 || !tokenName.MatchString(s.Name) {
			return false, fmt.Errorf("token file %s: token %q: bad role, name or sha256", path, s.Name)
		}
		if a.tok.byName(s.Name) != nil {
			return false, fmt.Errorf("token file %s: token %q is also in the configuration", path, s.Name)
		}
		e := &tokenEntry{storedToken: s, source: TokenFromFile}
		e.lastUsed.Store(s.LastUsed.UnixNano())
		e.saved.Store(s.LastUsed.UnixNano())
		a.tok.add(e)
	}
	a.tok.path = path
	if created {
		return true, a.saveTokensLocked()
	}
	return false, nil
}

// saveTokensLocked writes the token file's tokens (a.tok.mu held, read
// or write).
func (a *Authenticator) saveTokensLocked() error {
	if a.tok.path == "" {
		return ErrNoTokenFile
	}
	out := []storedToken{}
	for _, e := range a.tok.byHash {
		if e.source != TokenFromFile {
			continue
		}
		s := e.storedToken
		if n := e.lastUsed.Load(); n > 0 {
			s.LastUsed = time.Unix(0, n).UTC()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	raw, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	a.tok.saveMu.Lock()
	defer a.tok.saveMu.Unlock()
	if err := atomicfile.Write(a.tok.path, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	for _, e := range a.tok.byHash {
		e.saved.Store(e.lastUsed.Load())
	}
	return nil
}

// CreateToken makes a new API token called name with role, made by by,
// keeps its SHA-256 in the token file and returns the token: the only time
// it is shown.
func (a *Authenticator) CreateToken(name string, role Role, by string) (string, TokenInfo, error) {
	if !tokenName.MatchString(name) {
		return "", TokenInfo{}, ErrTokenName
	}
	if !role.Valid() {
		return "", TokenInfo{}, fmt.Errorf("unknown role %q (want one of %v)", role, Roles())
	}
	tok, err := NewToken(a.rand)
	if err != nil {
		return "", TokenInfo{}, err
	}
	a.tok.mu.Lock()
	defer a.tok.mu.Unlock()
	if a.tok.path == "" {
		return "", TokenInfo{}, ErrNoTokenFile
	}
	if a.tok.byName(name) != nil {
		return "", TokenInfo{}, fmt.Errorf("%q: %w", name, ErrTokenExists)
	}
	e := &tokenEntry{storedToken: storedToken{Name: name, Role: role, SHA256: HashToken(tok), Created: a.now().UTC(), CreatedBy: by}, source: TokenFromFile}
	a.tok.add(e)
	if err := a.saveTokensLocked(); err != nil {
		delete(a.tok.byHash, e.SHA256)
		return "", TokenInfo{}, err
	}
	return tok, e.info(), nil
}

// RevokeToken removes the token called name from the token file: it stops
// working at once. A token of the configuration cannot be revoked here.
func (a *Authenticator) RevokeToken(name string) error {
	a.tok.mu.Lock()
	defer a.tok.mu.Unlock()
	e := a.tok.byName(name)
	switch {
	case e == nil:
		return fmt.Errorf("%q: %w", name, ErrTokenNotFound)
	case e.source != TokenFromFile:
		return fmt.Errorf("%q: %w", name, ErrTokenInConfig)
	}
	delete(a.tok.byHash, e.SHA256)
	if err := a.saveTokensLocked(); err != nil {
		a.tok.add(e)
		return err
	}
	return nil
}

// Tokens lists every token, by name.
func (a *Authenticator) Tokens() []TokenInfo {
	a.tok.mu.RLock()
	out := make([]TokenInfo, 0, len(a.tok.byHash))
	for _, e := range a.tok.byHash {
		out = append(out, e.info())
	}
	a.tok.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (e *tokenEntry) info() TokenInfo {
	i := TokenInfo{Name: e.Name, Role: e.Role, Source: e.source, Created: e.Created, CreatedBy: e.CreatedBy}
	if n := e.lastUsed.Load(); n > 0 {
		i.LastUsed = time.Unix(0, n).UTC()
	}
	return i
}

// Token finds the API token a bearer string is, and notes its use (the
// token file gets it at most once a minute per token).
func (a *Authenticator) Token(bearer string) (Principal, bool) {
	if bearer == "" {
		return Principal{}, false
	}
	a.tok.mu.RLock()
	defer a.tok.mu.RUnlock()
	e, ok := a.tok.byHash[HashToken(bearer)]
	if !ok {
		return Principal{}, false
	}
	now := a.now().UnixNano()
	e.lastUsed.Store(now)
	if e.source == TokenFromFile && time.Duration(now-e.saved.Load()) >= lastUsedSaveEvery {
		e.saved.Store(now) // one save per minute, whoever else uses it meanwhile
		if err := a.saveTokensLocked(); err != nil {
			e.saved.Store(0) // next use tries again
		}
	}
	return Principal{Name: e.Name, Role: e.Role, Via: "token"}, true
}

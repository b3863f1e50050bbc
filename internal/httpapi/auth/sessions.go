package auth

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// ErrBadCredentials is a wrong user name or password. It does not say which.
var ErrBadCredentials = errors.New("wrong user name or password")

// Principal is who a request acts as.
type Principal struct {
	Name string
	Role Role
	// Via is "session" or "token".
	Via string
	// CSRF is the session's anti-forgery token; empty for API tokens.
	CSRF string
}

// Can reports whether p may take action a.
func (p Principal) Can(a Action) bool { return Allowed(p.Role, a) }

// Session is a signed-in browser.
type Session struct {
	ID      string
	CSRF    string
	User    string
	Role    Role
	Expires time.Time
}

// Authenticator checks passwords, sessions and tokens. It is safe for
// concurrent use.
type Authenticator struct {
	users map[string]UserConfig
	tok   tokens // configured and file tokens (tokens.go)
	ttl   time.Duration
	max   int
	now   func() time.Time
	rand  io.Reader
	// dummy is a bcrypt hash compared against when the user is unknown, so
	// an unknown name takes as long as a wrong password (same cost as the
	// first user's hash).
	dummy []byte

	gate *gate // bounds the bcrypt checks at once

	mu       sync.Mutex
	sessions map[string]*Session
	throttle *throttle
	// known are the address and name pairs that signed in before: they
	// may use the gate's known slot (at most maxKnown).
	known map[string]struct{}
}

// New makes an Authenticator from a validated Config. rand supplies
// session ids (crypto/rand.Reader in production).
func New(cfg Config, now func() time.Time, rand io.Reader) (*Authenticator, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{
		users:    make(map[string]UserConfig, len(cfg.Users)),
		tok:      tokens{byHash: make(map[string]*tokenEntry, len(cfg.Tokens))},
		ttl:      cfg.SessionTTL,
		max:      cfg.MaxSessions,
		now:      now,
		rand:     rand,
		sessions: map[string]*Session{},
		throttle: newThrottle(),
		known:    map[string]struct{}{},
		gate:     newGate(cfg.PasswordChecks, cfg.PasswordWait),
	}
	for _, u := range cfg.Users {
		a.users[u.Name] = u
	}
	for _, t := range cfg.Tokens {
		a.tok.add(&tokenEntry{storedToken: storedToken{Name: t.Name, Role: t.Role, SHA256: t.SHA256}, source: TokenFromConfig})
	}
	cost := bcrypt.DefaultCost
	if len(cfg.Users) > 0 {
		cost, _ = bcrypt.Cost([]byte(cfg.Users[0].PasswordHash)) // Validate checked it
	}
	d, err := bcrypt.GenerateFromPassword([]byte("not a password"), cost)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	a.dummy = d
	return a, nil
}

// Login checks a user name and password sent from source (the client's
// address) and opens a session. A wrong name or password is
// ErrBadCredentials. It refuses unchecked with a *Throttled (ErrThrottled)
// when source, or source for this name, had too many attempts lately, and
// with ErrBusy when no password check slot freed in time.
func (a *Authenticator) Login(source, name, password string) (Session, error) {
	source = sourceKey(source)
	a.mu.Lock()
	wait := a.throttle.take(source, name, a.now())
	a.mu.Unlock()
	if wait > 0 {
		return Session{}, &Throttled{RetryAfter: wait}
	}
	a.mu.Lock()
	_, known := a.known[source+"\x00"+name]
	a.mu.Unlock()
	release, err := a.gate.acquire(known)
	if err != nil {
		return Session{}, err
	}
	u, ok := a.users[name]
	hash := a.dummy
	if ok {
		hash = []byte(u.PasswordHash)
	}
	err = bcrypt.CompareHashAndPassword(hash, []byte(password))
	release()
	if err != nil || !ok {
		return Session{}, ErrBadCredentials
	}
	id, err := a.random()
	if err != nil {
		return Session{}, err
	}
	csrf, err := a.random()
	if err != nil {
		return Session{}, err
	}
	s := &Session{ID: id, CSRF: csrf, User: u.Name, Role: u.Role, Expires: a.now().Add(a.ttl)}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.throttle.succeeded(source, name)
	if len(a.known) >= maxKnown {
		clear(a.known) // rare: the known lane is an optimisation
	}
	a.known[source+"\x00"+name] = struct{}{}
	if len(a.sessions) >= a.max {
		a.evictLocked()
	}
	a.sessions[id] = s
	return *s, nil
}

// evictLocked drops expired sessions, then the one closest to expiry if the
// table is still full.
func (a *Authenticator) evictLocked() {
	now := a.now()
	var oldest *Session
	for id, s := range a.sessions {
		if now.After(s.Expires) {
			delete(a.sessions, id)
			continue
		}
		if oldest == nil || s.Expires.Before(oldest.Expires) {
			oldest = s
		}
	}
	if len(a.sessions) >= a.max && oldest != nil {
		delete(a.sessions, oldest.ID)
	}
}

// Session finds a live session by id and extends it.
func (a *Authenticator) Session(id string) (Principal, bool) {
	if id == "" {
		return Principal{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[id]
	if !ok {
		return Principal{}, false
	}
	now := a.now()
	if now.After(s.Expires) {
		delete(a.sessions, id)
		return Principal{}, false
	}
	s.Expires = now.Add(a.ttl)
	return Principal{Name: s.User, Role: s.Role, Via: "session", CSRF: s.CSRF}, true
}

// Logout ends a session; an unknown id is not an error.
func (a *Authenticator) Logout(id string) {
	a.mu.Lock()
	delete(a.sessions, id)
	a.mu.Unlock()
}

// CheckCSRF reports whether got is the session's anti-forgery token, in
// constant time.
func CheckCSRF(p Principal, got string) bool {
	return p.CSRF != "" && subtle.ConstantTimeCompare([]byte(p.CSRF), []byte(got)) == 1
}

func (a *Authenticator) random() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(a.rand, b); err != nil {
		return "", fmt.Errorf("auth: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// NewToken makes a random API token for a machine client: give the token to
// the client and put HashToken(token) in the configuration.
func NewToken(rand io.Reader) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("auth: random: %w", err)
	}
	return "tc_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// Package apiclient is how the command-line tools find twin-service and a
// token to call it with, all in one way:
//
//   - the server: -server, else TWINCHAIN_URL (TWINCHAIN_SERVER, its older
//     name, still counts), else http://127.0.0.1:8080 (make run's address);
//   - the token: -token, else TWINCHAIN_TOKEN, else the file -token-file,
//     else TWINCHAIN_TOKEN_FILE, else {data}/cli-token when it exists, {data}
//     being TWINCHAIN_DATA_DIR or ./data (twin-service writes that file, an
//     admin token, at first start; make run's data directory is ./data).
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultServer is make run's API address.
const DefaultServer = "http://127.0.0.1:8080"

// Flags are the -server, -token and -token-file flags of one command.
type Flags struct {
	server, token, tokenFile string
	getenv                   func(string) string
}

// Bind adds -server, -token and -token-file to fs; getenv reads the
// environment (os.Getenv).
func Bind(fs *flag.FlagSet, getenv func(string) string) *Flags {
	f := &Flags{getenv: getenv}
	fs.StringVar(&f.server, "server", "", "twin-service base URL (env TWINCHAIN_URL; default "+DefaultServer+")")
	fs.StringVar(&f.token, "token", "", "API token (env TWINCHAIN_TOKEN; default: the -token-file)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the API token (env TWINCHAIN_TOKEN_FILE; default {data}/cli-token, {data} being TWINCHAIN_DATA_DIR or ./data)")
	return f
}

// Client calls twin-service's API.
type Client struct {
	Server string // base URL, no trailing slash
	Token  string // "" sends no credential
	// TokenFrom says where the token came from, for error messages.
	TokenFrom string
	HTTP      *http.Client
}

// Client resolves the flags and the environment into a client.
func (f *Flags) Client() (*Client, error) {
	env := func(names ...string) string {
		for _, n := range names {
			if v := f.getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	c := &Client{Server: f.server, Token: f.token, TokenFrom: "-token", HTTP: &http.Client{Timeout: time.Minute}}
	if c.Server == "" {
		c.Server = env("TWINCHAIN_URL", "TWINCHAIN_SERVER")
	}
	if c.Server == "" {
		c.Server = DefaultServer
	}
	c.Server = strings.TrimRight(c.Server, "/")
	if c.Token == "" {
		c.Token, c.TokenFrom = env("TWINCHAIN_TOKEN"), "TWINCHAIN_TOKEN"
	}
	if c.Token != "" {
		return c, nil
	}
	path, explicit := f.tokenFile, true
	if path == "" {
		path = env("TWINCHAIN_TOKEN_FILE")
	}
	if path == "" {
		data := env("TWINCHAIN_DATA_DIR")
		if data == "" {
			data = "data"
		}
		path, explicit = filepath.Join(data, "cli-token"), false
	}
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		c.Token, c.TokenFrom = strings.TrimSpace(string(raw)), path
	case !explicit && errors.Is(err, fs.ErrNotExist):
		c.TokenFrom = "" // no token anywhere: the call goes without one
	default:
		return nil, fmt.Errorf("token file: %w", err)
	}
	return c, nil
}

// StatusError is an answer other than 2xx.
type StatusError struct {
	Status  int
	Code    string // the API's error code
	Message string
}

func (e *StatusError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	}
	return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
}

// Do sends a request to path (under /api/v1) with body as JSON (nil for
// none) and returns the answer's body; an answer other than 2xx is a
// *StatusError with the API's message (and, on 401, where the token came
// from).
func (c *Client) Do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Server+"/api/v1"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Server, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return answer, nil
	}
	se := &StatusError{Status: resp.StatusCode, Message: string(bytes.TrimSpace(answer))}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(answer, &e) == nil && e.Error.Message != "" {
		se.Code, se.Message = e.Error.Code, e.Error.Message
	}
	if resp.StatusCode == http.StatusUnauthorized {
		if c.TokenFrom == "" {
			se.Message += " (no token: pass -token, set TWINCHAIN_TOKEN, or run where ./data/cli-token or TWINCHAIN_TOKEN_FILE is readable)"
		} else {
			se.Message += " (token from " + c.TokenFrom + ")"
		}
	}
	return nil, se
}

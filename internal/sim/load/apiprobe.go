package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// APICalls are the calls APIProbe makes, in the order of its Lat: a page
// of the asset list, one asset (a GPU, in turn), and the fleet counts: what
// an asset manager's dashboard asks while the fleet reports. "visible" is
// not one call but the time from a message's publish to the answer that
// shows it: its GPU asked for until its last_seen reaches the message's
// reading time.
var APICalls = [...]string{"list", "asset", "counts", "visible"}

// visibleWithin is how long the probe looks for a message in the API
// before it counts an error; visibleEvery, how often it asks meanwhile.
const (
	visibleWithin = time.Minute
	visibleEvery  = 10 * time.Millisecond
)

// APIProbe times twin-service's API while the load runs. Each call runs on
// its own, one at a time, every Every: a slow answer delays the next call,
// as it would a user.
type APIProbe struct {
	Base   string   // the service's base URL, e.g. http://127.0.0.1:8080
	Token  string   // an API token (any role), sent as "Authorization: Bearer"
	Assets []string // the assets asked for one by one, in turn (none: no such call)
	// Published are messages whose publish -> visible time the probe
	// takes, one at a time: one sent while it looked for another is
	// skipped (nil: no such call; Load.Watch gives them).
	Published <-chan Published
	Every     time.Duration // between two calls of one kind; default 200ms
	Client    *http.Client  // default: a 30 s timeout

	Lat    [len(APICalls)]Histogram // time to the whole answer, of calls answered 200
	Errors atomic.Int64             // calls that failed or were answered otherwise
	first  atomic.Pointer[string]   // the first failure
}

// Run calls the API until ctx ends.
func (p *APIProbe) Run(ctx context.Context) {
	if p.Every <= 0 {
		p.Every = 200 * time.Millisecond
	}
	if p.Client == nil {
		p.Client = &http.Client{Timeout: 30 * time.Second}
	}
	var wg sync.WaitGroup
	for call := range APICalls {
		wg.Go(func() { p.loop(ctx, call) })
	}
	wg.Wait()
}

// FirstError is the first failed call's error, or "".
func (p *APIProbe) FirstError() string {
	if s := p.first.Load(); s != nil {
		return *s
	}
	return ""
}

func (p *APIProbe) loop(ctx context.Context, call int) {
	switch APICalls[call] {
	case "asset":
		if len(p.Assets) == 0 {
			return
		}
	case "visible":
		if p.Published != nil {
			p.visible(ctx, call)
		}
		return
	}
	tick := time.NewTicker(p.Every)
	defer tick.Stop()
	for n := 0; ; n++ {
		start := time.Now()
		if err := p.get(ctx, p.path(call, n), nil); err == nil {
			p.Lat[call].Record(time.Since(start))
		} else {
			p.fail(ctx, call, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *APIProbe) fail(ctx context.Context, call int, err error) {
	if ctx.Err() != nil {
		return
	}
	p.Errors.Add(1)
	msg := fmt.Sprintf("%s: %v", APICalls[call], err)
	p.first.CompareAndSwap(nil, &msg)
}

// visible takes each message from Published sent after it finished with
// the last one, asks for its GPU every visibleEvery until the answer's
// last_seen reaches the message's reading time, and records the time from
// the publish to that answer.
func (p *APIProbe) visible(ctx context.Context, call int) {
	ready := time.Now()
	for {
		var m Published
		select {
		case <-ctx.Done():
			return
		case m = <-p.Published:
		}
		if m.Sent.Before(ready) {
			continue // sent while the last one was looked for: its publish is long past
		}
		path := "/api/v1/assets/" + url.PathEscape(m.GPU)
		for {
			var a struct {
				LastSeen time.Time `json:"last_seen"`
			}
			err := p.get(ctx, path, &a)
			if errors.Is(err, errNotFound) {
				err = nil // no twin yet: the message may be the GPU's first
			}
			now := time.Now()
			if err == nil && !a.LastSeen.Before(m.Reading) {
				ready = now
				p.Lat[call].Record(now.Sub(m.Sent))
				break
			}
			if err == nil && now.Sub(m.Sent) > visibleWithin {
				err = fmt.Errorf("%s: last_seen %s, not the reading of %s published %s ago", m.GPU, a.LastSeen.Format(time.RFC3339Nano), m.Reading.Format(time.RFC3339Nano), visibleWithin)
			}
			if err != nil {
				ready = now
				p.fail(ctx, call, err)
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(visibleEvery):
			}
		}
	}
}

var errNotFound = errors.New(http.StatusText(http.StatusNotFound))

func (p *APIProbe) path(call, n int) string {
	switch APICalls[call] {
	case "list":
		return "/api/v1/assets?limit=100"
	case "asset":
		return "/api/v1/assets/" + url.PathEscape(p.Assets[n%len(p.Assets)])
	}
	return "/api/v1/stats/assets"
}

// get reads the whole answer to a GET of path, decoded into v unless v is
// nil.
func (p *APIProbe) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Base+path, nil)
	if err != nil {
		return err
	}
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("GET %s: %w", path, errNotFound)
		}
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

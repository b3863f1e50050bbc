package load

import (
	"context"
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
// an asset manager's dashboard asks while the fleet reports.
var APICalls = [...]string{"list", "asset", "counts"}

// APIProbe times twin-service's API while the load runs. Each call runs on
// its own, one at a time, every Every: a slow answer delays the next call,
// as it would a user.
type APIProbe struct {
	Base   string        // the service's base URL, e.g. http://127.0.0.1:8080
	Token  string        // an API token (any role), sent as "Authorization: Bearer"
	Assets []string      // the assets asked for one by one, in turn (none: no such call)
	Every  time.Duration // between two calls of one kind; default 200ms
	Client *http.Client  // default: a 30 s timeout

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
	if APICalls[call] == "asset" && len(p.Assets) == 0 {
		return
	}
	tick := time.NewTicker(p.Every)
	defer tick.Stop()
	for n := 0; ; n++ {
		start := time.Now()
		if err := p.get(ctx, p.path(call, n)); err == nil {
			p.Lat[call].Record(time.Since(start))
		} else if ctx.Err() == nil {
			p.Errors.Add(1)
			msg := fmt.Sprintf("%s: %v", APICalls[call], err)
			p.first.CompareAndSwap(nil, &msg)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *APIProbe) path(call, n int) string {
	switch APICalls[call] {
	case "list":
		return "/api/v1/assets?limit=100"
	case "asset":
		return "/api/v1/assets/" + url.PathEscape(p.Assets[n%len(p.Assets)])
	}
	return "/api/v1/stats/assets"
}

// get reads the whole answer to a GET of path.
func (p *APIProbe) get(ctx context.Context, path string) error {
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
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"twinchain/internal/detect/alert"
)

// Detection is one expected alert that opened.
type Detection struct {
	Expectation
	Alert string `json:"alert"`
	// SimLatency is the alert's first reading time minus the step's
	// simulated time (-1 when the finding is timed by the service clock,
	// as rejections are); WallLatency is when the alert opened minus when
	// the step ran, in real time.
	SimLatency  time.Duration `json:"sim_latency"`
	WallLatency time.Duration `json:"wall_latency"`
}

// Outcome compares the alerts twin-service raised with the file's.
type Outcome struct {
	Name     string        `json:"name"`
	Expected int           `json:"expected"`
	Detected []Detection   `json:"detected"`
	Missing  []Expectation `json:"missing"`
	False    []Expectation `json:"false"` // alerts neither expected nor allowed
	Alerts   []alert.Alert `json:"-"`
}

// OK reports whether every expected alert opened and no other did.
func (o *Outcome) OK() bool { return len(o.Missing) == 0 && len(o.False) == 0 }

func (o *Outcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d/%d detected, %d false", o.Name, len(o.Detected), o.Expected, len(o.False))
	for _, d := range o.Detected {
		sim := "n/a"
		if d.SimLatency >= 0 {
			sim = d.SimLatency.String()
		}
		fmt.Fprintf(&b, "\n  found   %-22s %-22s %-6s latency sim %-8s wall %s", d.Type, d.Asset, d.Alert, sim, d.WallLatency.Round(time.Millisecond))
	}
	for _, m := range o.Missing {
		fmt.Fprintf(&b, "\n  MISSING %s", m)
	}
	for _, f := range o.False {
		fmt.Fprintf(&b, "\n  FALSE   %s", f)
	}
	return b.String()
}

// Alerts fetches every alert from twin-service, newest first, with a
// bearer token that may read (when set).
func Alerts(ctx context.Context, api, token string) ([]alert.Alert, error) {
	var out []alert.Alert
	cursor := ""
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/v1/alerts?limit=1000&cursor="+cursor, nil)
		if err != nil {
			return nil, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET alerts: %d %s", resp.StatusCode, raw)
		}
		var page struct {
			Items      []alert.Alert `json:"items"`
			NextCursor string        `json:"next_cursor"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// Compare matches alerts against the file's expectations.
func Compare(f *File, rep *Report, alerts []alert.Alert) *Outcome {
	o := &Outcome{Name: f.Name, Expected: len(f.Expect), Alerts: alerts}
	has := func(list []Expectation, a *alert.Alert) bool {
		return slices.ContainsFunc(list, func(e Expectation) bool { return e.Type == string(a.Type) && e.Asset == a.Asset })
	}
	for _, e := range f.Expect {
		i := slices.IndexFunc(alerts, func(a alert.Alert) bool { return e.Type == string(a.Type) && e.Asset == a.Asset })
		if i < 0 {
			o.Missing = append(o.Missing, e)
			continue
		}
		a := &alerts[i]
		d := Detection{Expectation: e, Alert: a.ID, SimLatency: -1}
		if st, ok := stepBefore(rep, a); ok {
			if !a.FirstSeen.Before(rep.Start) && !a.FirstSeen.After(rep.WallStart) {
				d.SimLatency = a.FirstSeen.Sub(st.Sim)
			}
			d.WallLatency = a.Opened.Sub(st.Wall)
		}
		o.Detected = append(o.Detected, d)
	}
	for i := range alerts {
		if a := &alerts[i]; !has(f.Expect, a) && !has(f.Allow, a) {
			o.False = append(o.False, Expectation{Type: string(a.Type), Asset: a.Asset})
		}
	}
	return o
}

// stepBefore is the last step that ran before the alert opened.
func stepBefore(rep *Report, a *alert.Alert) (StepReport, bool) {
	var best StepReport
	ok := false
	for _, st := range rep.Steps {
		if !st.Wall.After(a.Opened) {
			best, ok = st, true
		}
	}
	return best, ok
}

// Wait polls twin-service until every expected alert opened or timeout
// passed, then waits settle more for late false alerts, and compares.
func Wait(ctx context.Context, api, token string, f *File, rep *Report, timeout, settle time.Duration) (*Outcome, error) {
	deadline := time.Now().Add(timeout)
	for {
		alerts, err := Alerts(ctx, api, token)
		if err != nil {
			return nil, err
		}
		o := Compare(f, rep, alerts)
		if len(o.Missing) == 0 || time.Now().After(deadline) {
			if settle > 0 {
				time.Sleep(settle)
				if alerts, err = Alerts(ctx, api, token); err != nil {
					return nil, err
				}
				o = Compare(f, rep, alerts)
			}
			return o, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

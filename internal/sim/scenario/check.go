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
	// Incidents is how many incidents the alerts formed; WantIncidents
	// the file's number (-1: not stated).
	Incidents     int           `json:"incidents"`
	WantIncidents int           `json:"want_incidents"`
	Alerts        []alert.Alert `json:"-"`
}

// OK reports whether every expected alert opened, no other did, and the
// alerts formed the stated number of incidents.
func (o *Outcome) OK() bool {
	return len(o.Missing) == 0 && len(o.False) == 0 && (o.WantIncidents < 0 || o.Incidents == o.WantIncidents)
}

// Table is the per-scenario table: expected and detected alerts, false
// alerts, incidents (formed/stated), and the detection latency in
// simulated time (the slowest expected alert; n/a where every finding is
// timed by the service clock) and in real time.
func Table(os []*Outcome) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | expected | detected | false | incidents | latency (sim) | latency (wall) |\n|---|---|---|---|---|---|---|\n")
	var exp, det, fls int
	for _, o := range os {
		sim, wall := time.Duration(-1), time.Duration(0)
		for _, d := range o.Detected {
			sim, wall = max(sim, d.SimLatency), max(wall, d.WallLatency)
		}
		simS := "n/a"
		if sim >= 0 && len(o.Detected) > 0 {
			simS = sim.Round(time.Second).String()
		}
		wallS := "-"
		if len(o.Detected) > 0 {
			wallS = wall.Round(10 * time.Millisecond).String()
		}
		inc := fmt.Sprint(o.Incidents)
		if o.WantIncidents >= 0 {
			inc += fmt.Sprintf("/%d", o.WantIncidents)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s | %s |\n", o.Name, o.Expected, len(o.Detected), len(o.False), inc, simS, wallS)
		exp, det, fls = exp+o.Expected, det+len(o.Detected), fls+len(o.False)
	}
	fmt.Fprintf(&b, "| **all %d** | %d | %d | %d | | | |\n", len(os), exp, det, fls)
	return b.String()
}

func (o *Outcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d/%d detected, %d false, %d incident(s)", o.Name, len(o.Detected), o.Expected, len(o.False), o.Incidents)
	if o.WantIncidents >= 0 && o.Incidents != o.WantIncidents {
		fmt.Fprintf(&b, " (WANT %d)", o.WantIncidents)
	}
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
func Alerts(ctx context.Context, api, token string, query ...string) ([]alert.Alert, error) {
	return getAll[alert.Alert](ctx, api+"/api/v1/alerts?"+strings.Join(append(query, "limit=1000"), "&"), token)
}

// Incidents fetches every incident from twin-service, newest first.
func Incidents(ctx context.Context, api, token string) ([]alert.Incident, error) {
	return getAll[alert.Incident](ctx, api+"/api/v1/incidents?limit=1000", token)
}

// getAll follows a paged list to its end.
func getAll[T any](ctx context.Context, u, token string) ([]T, error) {
	var out []T
	cursor := ""
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"&cursor="+cursor, nil)
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
			return nil, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, raw)
		}
		var page struct {
			Items      []T    `json:"items"`
			NextCursor string `json:"next_cursor"`
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

// Compare matches alerts against the file's expectations: each expected
// alert must be a different alert of that type and asset (and severity,
// when stated).
func Compare(f *File, rep *Report, alerts []alert.Alert, incidents int) *Outcome {
	o := &Outcome{Name: f.Name, Expected: len(f.Expect), Alerts: alerts, Incidents: incidents, WantIncidents: -1}
	if f.Incidents != nil {
		o.WantIncidents = *f.Incidents
	}
	has := func(list []Expectation, a *alert.Alert) bool {
		return slices.ContainsFunc(list, func(e Expectation) bool { return e.Type == string(a.Type) && e.Asset == a.Asset })
	}
	used := make([]bool, len(alerts))
	// Oldest first, so a repeated expectation matches alerts in order.
	for _, e := range f.Expect {
		i := -1
		for j := len(alerts) - 1; j >= 0; j-- {
			a := &alerts[j]
			if !used[j] && e.Type == string(a.Type) && e.Asset == a.Asset && (e.Severity == "" || e.Severity == a.Severity.String()) {
				i = j
				break
			}
		}
		if i < 0 {
			o.Missing = append(o.Missing, e)
			continue
		}
		used[i] = true
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
	compare := func() (*Outcome, error) {
		alerts, err := Alerts(ctx, api, token)
		if err != nil {
			return nil, err
		}
		incidents, err := Incidents(ctx, api, token)
		if err != nil {
			return nil, err
		}
		return Compare(f, rep, alerts, len(incidents)), nil
	}
	for {
		o, err := compare()
		if err != nil {
			return nil, err
		}
		if len(o.Missing) == 0 || time.Now().After(deadline) {
			if settle > 0 {
				time.Sleep(settle)
				return compare()
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

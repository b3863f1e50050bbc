package web_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"twinchain/internal/testsvc"
)

// BenchmarkFleet10k loads the fleet page with about 10,000 assets (a
// firmware-sim fleet of 2 sites x 455 servers x 9 GPUs, plus the servers'
// and sites' gateways) into headless Chromium and reports:
//
//   - ms/first-rows: navigation start to the first table rows on screen,
//   - ms/interactive: navigation start to the whole fleet loaded, counted
//     and filterable,
//   - ms/filter-p50, ms/filter-max: from a keystroke in the search box (or a
//     select change) to the next painted frame, over a set of filters,
//   - assets: how many assets the page held.
//
// Run: go test -run '^$' -bench BenchmarkFleet10k -benchtime 3x ./web/
func BenchmarkFleet10k(b *testing.B) {
	size := fleetSize{sites: 2, servers: 455, gpus: 9}
	svc := startService(b, size, "-rate", "0.05")
	want := size.sites * size.servers * (size.gpus + 1)
	got := svc.waitAssets(b, want, 5*time.Minute)
	b.Logf("the API lists %d assets", got)
	browser := testsvc.StartChromium(b)
	ctx := newTab(b, browser)
	signIn(b, ctx, svc.URL, "admin")

	filters := []filterStep{
		{"#fleet-q", "gpu3", "input"},
		{"#fleet-q", "srv-s2-0421", "input"},
		{"#fleet-q", "s1 gpu", "input"},
		{"#fleet-q", "nothing-matches-this", "input"},
		{"#fleet-q", "", "input"},
		{"#fleet-kind", "server", "change"},
		{"#fleet-kind", "", "change"},
		{"#fleet-site", "s2", "change"},
		{"#fleet-site", "", "change"},
	}
	var firstRows, interactive, filterMs []float64
	var assets int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/fleet"), chromedp.Reload()); err != nil {
			b.Fatal(err)
		}
		waitJS(b, ctx, "the fleet loaded", `document.querySelector("main").dataset.ready === "true"`, 60*time.Second)
		firstRows = append(firstRows, evalJS[float64](b, ctx, `window.__tcPerf.firstRowsAt`))
		interactive = append(interactive, evalJS[float64](b, ctx, `window.__tcPerf.interactiveAt`))
		assets = evalJS[int](b, ctx, `window.__tcPerf.assets`)
		for _, f := range filters {
			filterMs = append(filterMs, f.latency(b, ctx))
		}
		if i == 0 {
			shot(b, ctx, "fleet-10k")
		}
	}
	b.StopTimer()
	if assets < want {
		b.Errorf("the page held %d assets, want at least %d", assets, want)
	}
	b.ReportMetric(median(firstRows), "ms/first-rows")
	b.ReportMetric(median(interactive), "ms/interactive")
	b.ReportMetric(median(filterMs), "ms/filter-p50")
	b.ReportMetric(slices.Max(filterMs), "ms/filter-max")
	b.ReportMetric(float64(assets), "assets")
}

// filterStep sets a filter control as a user would.
type filterStep struct{ sel, value, event string }

// latency is the time in ms from the control's event to the frame after
// the page redrew.
func (f filterStep) latency(b *testing.B, ctx context.Context) float64 {
	b.Helper()
	js := fmt.Sprintf(`new Promise((done) => {
		const e = document.querySelector(%q);
		const t0 = performance.now();
		e.value = %q;
		e.dispatchEvent(new Event(%q, {bubbles: true}));
		requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
	})`, f.sel, f.value, f.event)
	return evalJS[float64](b, ctx, js)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkInbox10k loads the alerts inbox with 10,000 open alerts (seeded
// into detect.db before twin-service starts) into headless Chromium and
// reports:
//
//   - ms/first-rows: navigation start to the first page of alerts drawn,
//   - ms/interactive: navigation start to all 10,000 loaded, sorted and
//     filterable,
//   - ms/filter-p50, ms/filter-max: from a filter change or a keystroke in
//     the search box to the next painted frame, over a set of filters,
//   - ms/filter-js-p50: the script's part of that (filter, sort, draw),
//   - alerts: how many alerts the page held.
//
// Run: go test -run '^$' -bench BenchmarkInbox10k -benchtime 3x ./web/
func BenchmarkInbox10k(b *testing.B) {
	const n = 10000
	svc := startInbox(b, n)
	browser := testsvc.StartChromium(b)
	ctx := newTab(b, browser)
	if err := chromedp.Do(ctx, viewport(1920, 1080, false)); err != nil {
		b.Fatal(err)
	}
	signIn(b, ctx, svc.URL, "sec")
	filters := []filterStep{
		{"#alerts-site", "s2", "change"},
		{"#alerts-severity", "critical", "change"},
		{"#alerts-type", "gpu_xid", "change"},
		{"#alerts-q", "gpu-s1-0042", "input"},
		{"#alerts-q", "", "input"},
		{"#alerts-type", "", "change"},
		{"#alerts-severity", "", "change"},
		{"#alerts-site", "", "change"},
		{"#alerts-state", "", "change"},
	}
	var firstRows, interactive, filterMs, jsMs []float64
	var alerts int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/alerts"), chromedp.Reload()); err != nil {
			b.Fatal(err)
		}
		waitJS(b, ctx, "the inbox loaded", `document.querySelector(".inbox-scroll") && document.querySelector(".inbox-scroll").dataset.loaded === "true"`, 120*time.Second)
		firstRows = append(firstRows, evalJS[float64](b, ctx, `window.__tcPerf.inboxFirstRowsAt`))
		interactive = append(interactive, evalJS[float64](b, ctx, `window.__tcPerf.inboxInteractiveAt`))
		alerts = evalJS[int](b, ctx, `window.__tcPerf.inboxAlerts`)
		for _, f := range filters {
			filterMs = append(filterMs, f.latency(b, ctx))
			jsMs = append(jsMs, evalJS[float64](b, ctx, `window.__tcPerf.inboxFilterMs`))
		}
		if i == 0 {
			shot(b, ctx, "inbox-10k")
		}
	}
	b.StopTimer()
	if alerts != n {
		b.Errorf("the page held %d alerts, want %d", alerts, n)
	}
	b.ReportMetric(median(firstRows), "ms/first-rows")
	b.ReportMetric(median(interactive), "ms/interactive")
	b.ReportMetric(median(filterMs), "ms/filter-p50")
	b.ReportMetric(slices.Max(filterMs), "ms/filter-max")
	b.ReportMetric(median(jsMs), "ms/filter-js-p50")
	b.ReportMetric(float64(alerts), "alerts")
}

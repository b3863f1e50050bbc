package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"twinchain/internal/testsvc"
)

// TestDashboard drives the dashboard in headless Chromium against a running
// twin-service fed by firmware-sim: sign in, the fleet, an asset, the map,
// gateways, alerts and work orders, at desktop and phone widths, with a
// screenshot of each page.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service, firmware-sim and Chromium")
	}
	size := fleetSize{sites: 2, servers: 3, gpus: 4}
	svc := startService(t, size)
	// Every server and its GPUs, and a dock gateway per site.
	want := size.sites * size.servers * (size.gpus + 1)
	total := svc.waitAssets(t, want, 90*time.Second)
	browser := testsvc.StartChromium(t)
	ctx := newTab(t, browser)
	signIn(t, ctx, svc.URL, "admin")

	t.Run("fleet", func(t *testing.T) {
		waitJS(t, ctx, "the fleet loaded", `document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		n := evalJS[int](t, ctx, `window.__tcPerf.assets`)
		if n < want {
			t.Errorf("the fleet page loaded %d assets, want at least %d (the API listed %d)", n, want, total)
		}
		rows := evalJS[int](t, ctx, `document.querySelectorAll("table.vt tbody tr:not(.spacer)").length`)
		if rows == 0 {
			t.Fatalf("the fleet table shows no rows")
		}
		shot(t, ctx, "fleet-1280")
		// Search narrows the table to one GPU.
		id := "srv-s1-002.gpu3"
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`#fleet-q`), id)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the search result", fmt.Sprintf(`window.__tcPerf.lastFilterCount === 1 && document.querySelector("table.vt tbody a").textContent === %q`, id), 10*time.Second)
		shot(t, ctx, "fleet-search")
		// A kind filter from the counts: only GPUs.
		setControl(t, ctx, "#fleet-q", "", "input")
		setControl(t, ctx, "#fleet-kind", "gpu", "change")
		if got, wantGPUs := evalJS[int](t, ctx, `window.__tcPerf.lastFilterCount`), size.sites*size.servers*size.gpus; got != wantGPUs {
			t.Errorf("kind=gpu shows %d rows, want %d", got, wantGPUs)
		}
		setControl(t, ctx, "#fleet-kind", "", "change")
	})

	t.Run("asset", func(t *testing.T) {
		id := "srv-s1-001.gpu0"
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/asset/"+url.PathEscape(id))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the asset view", `document.querySelector("main").dataset.view === "asset" && document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		if h1 := evalJS[string](t, ctx, `document.querySelector("main h1").textContent`); !strings.HasPrefix(h1, id) {
			t.Errorf("asset heading = %q, want it to start with %s", h1, id)
		}
		var api struct {
			Identity struct {
				UUID string `json:"uuid"`
			} `json:"identity"`
		}
		svc.get(t, "/assets/"+id, &api)
		if page := evalJS[string](t, ctx, `document.querySelector("main").innerText`); api.Identity.UUID == "" || !strings.Contains(page, api.Identity.UUID) {
			t.Errorf("the asset page does not show the GPU UUID %q from the API", api.Identity.UUID)
		}
		if n := evalJS[int](t, ctx, `document.querySelectorAll("ol.timeline > li").length`); n == 0 {
			t.Errorf("the event timeline is empty")
		}
		// A GPU's "What runs here" (runtime.js): the simulated fleet reports no workloads.
		if got := evalJS[string](t, ctx, `(document.querySelector("section.runtime:not([hidden])") || {innerText: ""}).innerText`); !strings.Contains(got, "No workloads report yet.") {
			t.Errorf("the GPU's run-time card = %q, want it to say no workloads report came yet", got)
		}
		svc.requireRoute(t, "/assets/"+id+"/series?metric=temp_c")
		waitJS(t, ctx, "a chart with points", `Number(document.querySelector("section.card.wide").dataset.points) > 0`, 60*time.Second)
		if n := evalJS[int](t, ctx, `document.querySelectorAll(".chart canvas").length`); n == 0 {
			t.Errorf("no uPlot canvas on the asset page")
		}
		shot(t, ctx, "asset")

		// Live: last seen moves on without a reload (readings change no revision).
		evalJS[int](t, ctx, `window.__sameDocument = 2`)
		seen := evalJS[string](t, ctx, `document.querySelector(".head-pills span[title]").title`)
		waitJS(t, ctx, "last seen to move on", fmt.Sprintf(`window.__sameDocument === 2 && document.querySelector(".head-pills span[title]").title !== %q`, seen), 60*time.Second)

		// "Show on the map" zooms to where the GPU is (its server's position).
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[href^="#/map?asset="]`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the map zoomed to the asset", `document.querySelector("main").dataset.view === "map" && document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		// The fleet's GPUs and servers have no GPS of their own: the map shows their site.
		if f, z := evalJS[string](t, ctx, `document.querySelector(".map").dataset.focus || ""`), evalJS[float64](t, ctx, `Number(document.querySelector(".map").dataset.zoom)`); f == "" || z < 14 {
			t.Errorf("the map opened from the asset page focuses on %q at zoom %.2f, want the asset or its site, zoomed in (14 or more)", f, z)
		}
		shot(t, ctx, "map-asset")
	})

	t.Run("server", func(t *testing.T) {
		id := "srv-s1-001"
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/asset/"+url.PathEscape(id))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the server's GPUs", `document.querySelector("main").dataset.view === "asset" && document.querySelectorAll("table.parts tbody tr").length > 0`, 30*time.Second)
		got := evalJS[[]string](t, ctx, `[...document.querySelectorAll("table.parts tbody tr")].map((tr) => tr.dataset.id)`)
		if len(got) != size.gpus || !strings.HasPrefix(got[0], id+".gpu") {
			t.Errorf("the server page lists %v, want its %d GPUs", got, size.gpus)
		}
		if h := evalJS[string](t, ctx, `document.querySelector(".rollup").dataset.health`); h == "" || h == "unknown" {
			t.Errorf("the server's rolled-up health is %q, want its GPUs' worst state", h)
		}
		waitJS(t, ctx, "the server's head to show the rolled-up health", `document.querySelectorAll(".head-pills .pill")[1].textContent === document.querySelector(".rollup").dataset.health`, 10*time.Second)
		shot(t, ctx, "server")
	})

	t.Run("map", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/map")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the map", `document.querySelector("main").dataset.view === "map" && document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		// The fleet's site gateways report GPS fixes: markers on the map.
		if n := evalJS[int](t, ctx, `document.querySelectorAll(".leaflet-overlay-pane path.leaflet-interactive, .leaflet-overlay-pane canvas").length`); n == 0 {
			t.Errorf("the map draws no positions")
		}
		// make run's detection config (scripts/run-detect.yaml) fences both
		// sites: GET /sites gives their polygons and the map draws each one.
		if n := evalJS[int](t, ctx, `document.querySelectorAll(".leaflet-overlay-pane path.geofence").length`); n != size.sites {
			t.Errorf("the map draws %d geofence polygons, want %d (one per configured site)", n, size.sites)
		}
		if txt := evalJS[string](t, ctx, `document.querySelector("main .summary").textContent`); !strings.Contains(txt, fmt.Sprintf("%d geofences", size.sites)) {
			t.Errorf("the map summary = %q, want it to count %d geofences", txt, size.sites)
		}
		// Geography with no tile server: the country outlines served with the dashboard.
		if g := evalJS[string](t, ctx, `document.querySelector(".map").dataset.geography || ""`); g != "countries" {
			t.Errorf("the map has geography %q, want the country outlines", g)
		}
		if n := evalJS[int](t, ctx, `document.querySelectorAll(".leaflet-basemap-pane canvas").length`); n == 0 {
			t.Errorf("no country outlines drawn in the basemap pane")
		}
		shot(t, ctx, "map")
		// Both sites fit in one view, so a site's fence is a few pixels wide;
		// its "Zoom to" button brings it into view.
		width := `document.querySelector(".leaflet-overlay-pane path.geofence").getBoundingClientRect().width`
		before := evalJS[float64](t, ctx, width)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button.zoom-site`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the zoomed site", width+` > 200`, 10*time.Second)
		t.Logf("geofence width %.0f px before zooming to the site", before)
		shot(t, ctx, "map-site")
	})

	t.Run("gateways", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/gateways")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the gateways", `document.querySelector("main").dataset.view === "gateways" && document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		var gws page[struct {
			ID string `json:"id"`
		}]
		svc.get(t, "/gateways?limit=1000", &gws)
		shown := evalJS[[]string](t, ctx, `[...document.querySelectorAll("table.plain tbody tr")].map(r => r.dataset.id)`)
		if len(gws.Items) == 0 || len(shown) != len(gws.Items) {
			t.Errorf("the gateways page lists %d gateways, the API %d", len(shown), len(gws.Items))
		}
		if on := evalJS[int](t, ctx, `document.querySelectorAll("table.plain .pill.gw-online").length`); on == 0 {
			t.Errorf("no gateway shows online while firmware-sim publishes")
		}
		// firmware-sim's agents send numbered statuses: each gateway with a
		// status shows its queue depth as a number, the API's figure.
		queueCell := `(() => {
			const col = [...document.querySelectorAll("table.plain thead th")].findIndex(th => th.textContent === "Queue depth");
			return col < 0 ? [] : [...document.querySelectorAll("table.plain tbody tr")].map(r => r.dataset.id + "=" + r.children[col].textContent);
		})()`
		waitJS(t, ctx, "a queue depth", `(`+queueCell+`).some(c => /=\d+$/.test(c))`, 30*time.Second)
		var streams page[struct {
			ID     string `json:"id"`
			Stream *struct {
				QueueDepth int       `json:"queue_depth"`
				StatusTime time.Time `json:"status_time"`
			} `json:"stream"`
		}]
		svc.get(t, "/gateways?limit=1000", &streams)
		want := map[string]bool{}
		for _, g := range streams.Items {
			if g.Stream != nil && !g.Stream.StatusTime.IsZero() {
				want[g.ID] = true
			}
		}
		cells := evalJS[[]string](t, ctx, queueCell)
		numbers := 0
		for _, c := range cells {
			id, v, _ := strings.Cut(c, "=")
			if _, err := strconv.Atoi(v); err == nil {
				numbers++
			} else if want[id] {
				t.Errorf("gateway %s has a status but its queue depth cell is %q, want a number", id, v)
			}
		}
		if numbers == 0 || len(want) == 0 {
			t.Errorf("queue depth cells = %q (%d gateways with a status in the API), want numbers", cells, len(want))
		}
		if txt := evalJS[string](t, ctx, `document.querySelector("main").textContent`); strings.Contains(txt, "not report them") || strings.Contains(txt, "no gateway has sent one yet") || strings.Contains(txt, "null") {
			t.Errorf("the gateways page says queue depths are not available, or shows a null: %q", txt)
		}
		shot(t, ctx, "gateways")
	})

	for _, view := range []string{"alerts", "workorders", "provenance"} {
		t.Run(view, func(t *testing.T) {
			if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/"+view)); err != nil {
				t.Fatal(err)
			}
			waitJS(t, ctx, "the "+view+" view", fmt.Sprintf(`document.querySelector("main").dataset.view === %q && document.querySelector("main").dataset.ready === "true"`, view), 30*time.Second)
			shot(t, ctx, view)
		})
	}

	t.Run("phone", func(t *testing.T) {
		phone := newTab(t, browser)
		if err := chromedp.Do(phone, viewport(390, 844, true)); err != nil {
			t.Fatal(err)
		}
		signIn(t, phone, svc.URL, "view")
		waitJS(t, phone, "the fleet loaded", `document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		if w := evalJS[int](t, phone, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("the fleet page is %d px wide on a 390 px phone, want no sideways scrolling", w)
		}
		shot(t, phone, "fleet-390")
		// The menu opens with a real button and its links are reachable.
		if err := chromedp.Do(phone, chromedp.Click(chromedp.CSS(`.menu-toggle`))); err != nil {
			t.Fatal(err)
		}
		if v := evalJS[string](t, phone, `getComputedStyle(document.querySelector("#nav")).display`); v == "none" {
			t.Errorf("the menu stays hidden after pressing Menu")
		}
		shot(t, phone, "menu-390")
		if err := chromedp.Do(phone, chromedp.Navigate(svc.URL+"/#/asset/srv-s1-001.gpu0")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, phone, "the asset view", `document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		if w := evalJS[int](t, phone, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("the asset page is %d px wide on a 390 px phone", w)
		}
		shot(t, phone, "asset-390")
	})

	t.Run("keyboard", func(t *testing.T) {
		// Tab from the top of a freshly loaded page reaches the skip link first.
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/fleet"), chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the fleet", `document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		if got := evalJS[string](t, ctx, `document.activeElement.className`); got != "skip" {
			t.Errorf("first Tab focuses %q, want the skip link", got)
		}
		// Every control in the page has an accessible name.
		unnamed := evalJS[[]string](t, ctx, `[...document.querySelectorAll("input, select, textarea, button")].filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim()).map(e => e.outerHTML.slice(0, 80))`)
		if len(unnamed) > 0 {
			t.Errorf("controls without a label: %q", unnamed)
		}
	})
}

// TestAlertsLive: an alert raised by a scenario while the inbox is open
// arrives without a reload; a security user acknowledges it with a comment
// and the API shows the new state; a viewer sees it but can neither press
// nor call acknowledge. The scenario is firmware-sim's gpu-swap: a GPU's
// board is replaced (new UUID and serial in the same slot), which the
// detectors report as a substitution.
func TestAlertsLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service, firmware-sim and Chromium")
	}
	file := "../internal/sim/scenario/testdata/scenarios/gpu-swap.yaml"
	svc := startTwin(t, []string{"scenario", file}, "")
	svc.requireRoute(t, "/alerts")
	browser := testsvc.StartChromium(t)
	sec := newTab(t, browser)
	signIn(t, sec, svc.URL, "sec")
	view := newTab(t, browser)
	signIn(t, view, svc.URL, "view")
	for _, ctx := range []context.Context{sec, view} {
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/alerts")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the alerts inbox", `document.querySelector("main").dataset.view === "alerts" && document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
		evalJS[int](t, ctx, `window.__sameDocument = 1`)
	}
	testsvc.StartProcess(t, filepath.Join(binaries(t), "firmware-sim"), "scenario", "-own-fleet", "-broker", svc.MQTT, "-server", svc.URL, "-token", testToken, "-hold", "30s", file)
	waitJS(t, sec, "a substitution alert arriving live", `window.__sameDocument === 1 && !!document.querySelector("table.inbox tr[data-type=substitution]")`, 120*time.Second)
	shot(t, sec, "alerts-live")
	id := evalJS[string](t, sec, `document.querySelector("table.inbox tr[data-type=substitution]").dataset.id`)
	row := fmt.Sprintf(`table.inbox tr[data-id=%q]`, id)
	sel := fmt.Sprintf(`.alert-detail li.alert[data-id=%q]`, id)

	// The viewer sees the alert, without the buttons, and the API refuses it.
	waitJS(t, view, "the alert in the viewer's inbox", fmt.Sprintf(`window.__sameDocument === 1 && !!document.querySelector(%q)`, row), 60*time.Second)
	if err := chromedp.Do(view, chromedp.Click(chromedp.CSS(row+" td.col-type"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, view, "the alert's detail", fmt.Sprintf(`!!document.querySelector(%q)`, sel), 10*time.Second)
	if n := evalJS[int](t, view, fmt.Sprintf(`document.querySelectorAll(%q).length + document.querySelectorAll("table.inbox input[type=checkbox]").length`, sel+" button[data-action]")); n != 0 {
		t.Errorf("the viewer gets %d acknowledge/resolve buttons or selection boxes, want none", n)
	}
	code := evalJS[int](t, view, fmt.Sprintf(`fetch("/api/v1/alerts/%s/ack", {method: "POST", headers: {"Content-Type": "application/json",
		"X-CSRF-Token": decodeURIComponent((document.cookie.match(/tc_csrf=([^;]+)/) || [])[1] || "")}, body: "{\"comment\":\"viewer\"}"}).then(r => r.status)`, id))
	if code != 403 {
		t.Errorf("a viewer's POST /alerts/%s/ack = %d, want 403", id, code)
	}
	shot(t, view, "alerts-viewer")

	// Security opens it and acknowledges it with a comment.
	if err := chromedp.Do(sec, chromedp.Click(chromedp.CSS(row+" td.col-type"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, sec, "the alert's detail", fmt.Sprintf(`!!document.querySelector(%q)`, sel), 10*time.Second)
	setControl(t, sec, sel+` input[name=comment]`, "rack door checked", "input")
	if err := chromedp.Do(sec, chromedp.Click(chromedp.CSS(sel+` button[data-action=ack]`))); err != nil {
		t.Fatal(err)
	}
	var got struct {
		State   string `json:"state"`
		History []struct {
			State   string `json:"state"`
			By      string `json:"by"`
			Comment string `json:"comment"`
		} `json:"history"`
	}
	testsvc.Eventually(t, 30*time.Second, "the API to show the alert acknowledged", func() bool {
		svc.get(t, "/alerts/"+url.PathEscape(id), &got)
		return got.State == "acknowledged"
	})
	last := got.History[len(got.History)-1]
	if last.By != "sec" || last.Comment != "rack door checked" {
		t.Errorf("the acknowledgement is recorded as by %q with %q, want by sec with the comment", last.By, last.Comment)
	}
	setControl(t, sec, "#alerts-state", "", "change")
	waitJS(t, sec, "the acknowledged alert", fmt.Sprintf(`(document.querySelector(%q) || {dataset: {}}).dataset.state === "acknowledged"`, row), 30*time.Second)
	shot(t, sec, "alerts-acknowledged")
}

// TestWorkOrders: one person opens a work order in the dashboard, another
// with an approving role approves it there, and the API shows it approved;
// a viewer gets no form.
func TestWorkOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service, firmware-sim and Chromium")
	}
	svc := startService(t, fleetSize{sites: 1, servers: 1, gpus: 2})
	svc.waitAssets(t, 3, 90*time.Second)
	svc.requireRoute(t, "/workorders")
	browser := testsvc.StartChromium(t)
	admin := newTab(t, browser)
	signIn(t, admin, svc.URL, "admin")
	open := func(ctx context.Context) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/workorders")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the work orders", `document.querySelector("main").dataset.view === "workorders" && document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
	}
	open(admin)
	setControl(t, admin, `form input[name=asset]`, "srv-s1-001.gpu1", "input")
	setControl(t, admin, `form input[name=to]`, "96.00.99.00.01", "input")
	setControl(t, admin, `form input[name=reason]`, "VBIOS update for the XID 79 fix", "input")
	if err := chromedp.Do(admin, chromedp.Click(chromedp.CSS(`form button[type=submit]`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, admin, "the new order", `document.querySelectorAll("table.plain tbody tr").length === 1`, 30*time.Second)
	id := evalJS[string](t, admin, `document.querySelector("table.plain tbody tr").dataset.id`)
	if n := evalJS[int](t, admin, `[...document.querySelectorAll("table.plain button")].filter(b => b.textContent === "Approve").length`); n != 0 {
		t.Errorf("the creator is offered Approve on their own order")
	}

	sec := newTab(t, browser)
	signIn(t, sec, svc.URL, "sec")
	open(sec)
	// The list may still be loading the new order under load: wait for its button.
	waitJS(t, sec, "the Approve button", `[...document.querySelectorAll("table.plain button")].some(b => b.textContent === "Approve")`, 30*time.Second)
	if err := chromedp.Do(sec, chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll("table.plain button")].find(b => b.textContent === "Approve").click()`)); err != nil {
		t.Fatal(err)
	}
	var wo struct {
		State      string `json:"state"`
		ApprovedBy string `json:"approved_by"`
		CreatedBy  string `json:"created_by"`
	}
	testsvc.Eventually(t, 30*time.Second, "the API to show the work order approved", func() bool {
		svc.get(t, "/workorders/"+url.PathEscape(id), &wo)
		return wo.State == "approved"
	})
	if wo.State != "approved" || wo.CreatedBy != "admin" || wo.ApprovedBy != "sec" {
		t.Errorf("work order %s = %+v, want approved, created by admin, approved by sec", id, wo)
	}
	waitJS(t, sec, "the approved order", `document.querySelector("table.plain tbody tr .pill").textContent === "approved"`, 30*time.Second)
	shot(t, sec, "workorders")

	view := newTab(t, browser)
	signIn(t, view, svc.URL, "view")
	open(view)
	if n := evalJS[int](t, view, `document.querySelectorAll("main form").length`); n != 0 {
		t.Errorf("a viewer gets the work order form")
	}
}

// TestLedgerVerify: on an asset's page, Verify fetches the proof bundle of
// an anchored event from the running service's embedded ledger and the
// browser finds it holds; the same bundle with one byte changed, pasted into
// the offline checker, does not.
func TestLedgerVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service, firmware-sim and Chromium")
	}
	svc := startService(t, fleetSize{sites: 1, servers: 1, gpus: 2})
	svc.waitAssets(t, 3, 90*time.Second)
	svc.requireRoute(t, "/ledger/status")
	id := "srv-s1-001.gpu1"
	var events page[struct {
		ID uint64 `json:"id"`
	}]
	svc.get(t, "/assets/"+id+"/events?limit=1000", &events)
	if len(events.Items) == 0 {
		t.Fatalf("asset %s has no events", id)
	}
	first := events.Items[0].ID
	var bundle []byte
	testsvc.Eventually(t, 60*time.Second, fmt.Sprintf("a proof of event %d", first), func() bool {
		code, body := svc.raw(t, fmt.Sprintf("/ledger/events/%d/proof", first))
		bundle = body
		return code == 200
	})

	ctx := newTab(t, testsvc.StartChromium(t))
	signIn(t, ctx, svc.URL, "view")
	if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/asset/"+url.PathEscape(id))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the asset view", `document.querySelector("main").dataset.view === "asset" && document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
	waitJS(t, ctx, "an anchor", `document.querySelectorAll("li.anchor button[data-event]").length > 0`, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`li.anchor button[data-event]`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the verdict", `["true", "false", "error"].includes(document.querySelector("li.anchor .verify-result").dataset.valid)`, 30*time.Second)
	if got := evalJS[string](t, ctx, `document.querySelector("li.anchor .verify-result").dataset.valid`); got != "true" {
		t.Errorf("Verify on the asset page = %s, want true:\n%s", got, evalJS[string](t, ctx, `document.querySelector("li.anchor .verify-result").innerText`))
	}
	shot(t, ctx, "asset-verify")

	// The exported bundle, pasted as it is, holds; with one byte of its leaf
	// changed, it does not.
	// Change the leaf in place, leaving every other byte of the bundle as
	// exported (the block's body is hashed byte for byte).
	var b struct {
		Event struct {
			Leaf string `json:"leaf"`
		} `json:"event"`
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	leaf, _ := base64.StdEncoding.DecodeString(b.Event.Leaf)
	leaf[len(leaf)/2] ^= 1
	tampered := strings.Replace(string(bundle), b.Event.Leaf, base64.StdEncoding.EncodeToString(leaf), 1)
	if tampered == string(bundle) {
		t.Fatal("could not change the bundle's leaf")
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`details.proof-check summary`))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, json, want string
	}{{"the exported bundle", string(bundle), "true"}, {"the bundle with a changed leaf", tampered, "false"}} {
		setControl(t, ctx, "#proof-json", tc.json, "input")
		evalJS[int](t, ctx, `(delete document.querySelector(".proof-check .verify-result").dataset.valid, 1)`)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#proof-verify`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the verdict", `document.querySelector(".proof-check .verify-result").dataset.valid !== undefined`, 10*time.Second)
		if got := evalJS[string](t, ctx, `document.querySelector(".proof-check .verify-result").dataset.valid`); got != tc.want {
			t.Errorf("the offline checker on %s = %s, want %s:\n%s", tc.name, got, tc.want, evalJS[string](t, ctx, `document.querySelector(".proof-check .verify-result").innerText`))
		}
		failed := evalJS[[]string](t, ctx, `[...document.querySelectorAll(".proof-check ul.checks li.bad strong")].map(e => e.textContent)`)
		if tc.want == "false" && (!slices.Contains(failed, "tree inclusion") || slices.Contains(failed, "ledger block")) {
			t.Errorf("a changed leaf fails %q, want tree inclusion and not the ledger block", failed)
		}
	}
	shot(t, ctx, "asset-verify-tampered")
}

// TestProvenance: an ML pipeline (an API token with role ml_engineer)
// records a dataset and a model trained on two GPUs of the fleet; the
// Provenance page shows dataset -> model -> hardware, and the model's ledger
// record, checked in the browser, holds.
func TestProvenance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service, firmware-sim and Chromium")
	}
	svc := startService(t, fleetSize{sites: 1, servers: 1, gpus: 2})
	svc.waitAssets(t, 3, 90*time.Second)
	svc.requireRoute(t, "/ledger/status")
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	ds := map[string]any{"id": "ds-web-1", "name": "rack telemetry corpus", "content_hash": hash("ds-web-1 content"),
		"sources": []any{map[string]any{"kind": "system", "ref": "s3://corpus/2026-11"}},
		"consent": map[string]any{"policy_ref": "policy/7", "licence": "CC-BY-4.0", "use_scope": []string{"training"}, "retention_days": 365}}
	if code := svc.doAs(t, mlToken, "POST", "/ledger/datasets", ds, nil); code/100 != 2 {
		t.Fatalf("POST /ledger/datasets = %d", code)
	}
	end := time.Now().Add(-time.Minute).UTC()
	model := map[string]any{"id": "m-web-1", "name": "thermal forecaster", "artifact_hash": hash("m-web-1 weights"), "datasets": []string{"ds-web-1"},
		"training": map[string]any{"code_ref": "git@example/train@abc123", "config_hash": hash("config"),
			"start": end.Add(-time.Hour).Format(time.RFC3339), "end": end.Format(time.RFC3339),
			"hardware": []any{map[string]any{"asset": "srv-s1-001.gpu0", "revision_start": 1, "revision_end": 2},
				map[string]any{"asset": "srv-s1-001.gpu1", "revision_start": 1, "revision_end": 2}}}}
	// The GPUs are registered on the ledger at their first event, by the anchorer: wait for that.
	testsvc.Eventually(t, 60*time.Second, "POST /ledger/models to succeed", func() bool {
		return svc.doAs(t, mlToken, "POST", "/ledger/models", model, nil)/100 == 2
	})

	ctx := newTab(t, testsvc.StartChromium(t))
	signIn(t, ctx, svc.URL, "view")
	// The page lists the ledger's models and datasets (GET /ledger/models,
	// /ledger/datasets); the model links to its lineage.
	if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/provenance")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the record lists", `document.querySelector("main").dataset.view === "provenance" && (document.querySelector("section.records") || {dataset: {}}).dataset.ready === "true"`, 30*time.Second)
	if got := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#prov-datasets li")].map(li => li.dataset.id)`); !slices.Contains(got, "ds-web-1") {
		t.Errorf("the dataset list = %v, want it to hold ds-web-1", got)
	}
	if got := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#prov-models li")].map(li => li.dataset.id)`); !slices.Contains(got, "m-web-1") {
		t.Errorf("the model list = %v, want it to hold m-web-1", got)
	}
	// The ledger's status reads as labelled values, not JSON, with the
	// service key to copy.
	waitJS(t, ctx, "the ledger status", `!!document.querySelector(".ledger-status")`, 30*time.Second)
	status := evalJS[string](t, ctx, `document.querySelector(".ledger-status").innerText`)
	for _, want := range []string{"Events in the tree", "Service key", "Latest signed checkpoint", "Anchored up to event", "Signature"} {
		if !strings.Contains(status, want) {
			t.Errorf("the ledger status lacks %q:\n%s", want, status)
		}
	}
	if strings.ContainsAny(status, "{}\"") {
		t.Errorf("the ledger status shows raw JSON:\n%s", status)
	}
	var st struct {
		ServiceKey string `json:"service_key"`
	}
	svc.get(t, "/ledger/status", &st)
	if got := evalJS[string](t, ctx, `document.querySelector('.ledger-status dd[data-field=service_key] button.copy').dataset.copy`); st.ServiceKey == "" || got != st.ServiceKey {
		t.Errorf("the service key's copy button holds %q, want %q", got, st.ServiceKey)
	}
	shot(t, ctx, "provenance-ledger")
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('#prov-models li[data-id="m-web-1"] a').click()`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the lineage", `document.querySelector("main").dataset.view === "provenance" && document.querySelector("main").dataset.ready === "true" && !!document.querySelector(".lineage")`, 30*time.Second)
	text := evalJS[string](t, ctx, `document.querySelector(".lineage").innerText`)
	for _, want := range []string{"ds-web-1", "rack telemetry corpus", "m-web-1", "thermal forecaster", "srv-s1-001.gpu0", "srv-s1-001.gpu1", "CC-BY-4.0"} {
		if !strings.Contains(text, want) {
			t.Errorf("the lineage does not show %q:\n%s", want, text)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll("#h-lm ~ .actions button")][0].click()`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the model record's verdict", `["true", "false", "error"].includes((document.querySelector("#h-lm ~ .actions .verify-result") || {dataset: {}}).dataset.valid)`, 30*time.Second)
	if got := evalJS[string](t, ctx, `document.querySelector("#h-lm ~ .actions .verify-result").dataset.valid`); got != "true" {
		t.Errorf("Verify record on the model = %s, want true:\n%s", got, evalJS[string](t, ctx, `document.querySelector("#h-lm ~ .actions .verify-result").innerText`))
	}
	// Where the model runs now (runtime.js): no GPU reports it.
	waitJS(t, ctx, "where the model runs", `(document.querySelector("section.model-runs") || {dataset: {}}).dataset.ready === "true"`, 30*time.Second)
	if got := evalJS[string](t, ctx, `document.querySelector("section.model-runs").innerText`); !strings.Contains(got, "No GPU reports running m-web-1") {
		t.Errorf("where m-web-1 runs = %q, want that no GPU reports it", got)
	}
	shot(t, ctx, "provenance-lineage")
}

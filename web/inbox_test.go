package web_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	bolt "go.etcd.io/bbolt"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/detect/alertstore"
	"twinchain/internal/detect/detectsvc"
	"twinchain/internal/testsvc"
)

// seedAlerts writes n open alerts into dataDir's detect.db before
// twin-service starts: types, sites and severities in rotation, one asset
// each, opened one minute apart (the newest last).
func seedAlerts(t testing.TB, dataDir string, n int) {
	t.Helper()
	start := time.Now().Add(-time.Duration(n) * time.Minute)
	i := 0
	s := seedStore(t, dataDir, func() time.Time { return start.Add(time.Duration(i) * time.Minute) })
	defer s.close()
	now := s.now
	types := []detect.Type{detect.TypeXID, detect.TypeSubstitution, detect.TypeGeofenceExit, detect.TypeOverheating}
	sevs := []detect.Severity{detect.Warning, detect.Critical, detect.Info}
	for i < n {
		var batch []detect.Finding
		for ; i < n && len(batch) < 500; i++ {
			site := fmt.Sprintf("s%d", 1+i%2)
			asset := fmt.Sprintf("gpu-%s-%05d", site, i)
			typ := types[i%len(types)]
			batch = append(batch, detect.Finding{Type: typ, Asset: asset, Site: site, Severity: sevs[i%len(sevs)], Time: now(),
				Summary: fmt.Sprintf("%s on %s", typ, asset), Evidence: detect.Evidence{Values: map[string]string{"n": fmt.Sprint(i)}}})
		}
		s.apply(batch)
	}
}

// seeder writes findings into a data directory's detect.db, as the
// detection engine would, before twin-service starts.
type seeder struct {
	t     testing.TB
	db    *bolt.DB
	store *alertstore.Store
	now   func() time.Time
}

// seedStore opens dataDir's detect.db for seeding; close it before
// twin-service starts.
func seedStore(t testing.TB, dataDir string, now func() time.Time) *seeder {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dataDir, detectsvc.FileName), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := alertstore.NewStore(db, alert.DefaultConfig(), now)
	if err != nil {
		t.Fatal(err)
	}
	return &seeder{t: t, db: db, store: s, now: now}
}

func (s *seeder) close() {
	if err := s.db.Close(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *seeder) apply(batch []detect.Finding) {
	s.t.Helper()
	if _, err := s.store.Apply(batch, nil, nil); err != nil {
		s.t.Fatal(err)
	}
}

// startInbox starts twin-service (no simulator) over a data directory
// holding n seeded alerts.
func startInbox(t testing.TB, n int) *service {
	t.Helper()
	data := t.TempDir()
	seedAlerts(t, data, n)
	return startTwinIn(t, []string{"fleet", "-sites", "1", "-servers", "1", "-gpus", "1"}, "", data)
}

// TestAlertsInbox: the dense inbox over 300 alerts: 50 rows fit at 1080p,
// sorting, filtering with URL state that survives a reload, keyboard
// navigation, the detail pane, and bulk acknowledge, checked through the API.
func TestAlertsInbox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service and Chromium")
	}
	svc := startInbox(t, 300)
	ctx := newTab(t, testsvc.StartChromium(t))
	if err := chromedp.Do(ctx, viewport(1920, 1080, false)); err != nil {
		t.Fatal(err)
	}
	signIn(t, ctx, svc.URL, "sec")
	if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/alerts")); err != nil {
		t.Fatal(err)
	}
	// .inbox-scroll's data-loaded, not main's data-ready: a view left
	// before it finished loading may still mark main ready.
	ready := `document.querySelector("main").dataset.view === "alerts" && document.querySelector(".inbox-scroll") && document.querySelector(".inbox-scroll").dataset.loaded === "true"`
	waitJS(t, ctx, "the inbox", ready, 30*time.Second)
	if n := evalJS[int](t, ctx, `window.__tcPerf.inboxAlerts`); n != 300 {
		t.Fatalf("the inbox holds %d alerts, want 300", n)
	}
	// 50 rows or more are wholly visible in a 1920x1080 window.
	visible := `(() => { const sc = document.querySelector(".inbox-scroll").getBoundingClientRect();
		return [...document.querySelectorAll("table.inbox tbody tr[data-id]")].filter((tr) => { const r = tr.getBoundingClientRect();
			return r.top >= sc.top && r.bottom <= Math.min(sc.bottom, window.innerHeight); }).length; })()`
	if n := evalJS[int](t, ctx, visible); n < 50 {
		t.Errorf("%d alert rows visible at 1920x1080, want at least 50", n)
	}
	shot(t, ctx, "inbox-1080")

	// The default sort: most severe first; a click on Severity turns it.
	sevs := `[...document.querySelectorAll("table.inbox tbody tr[data-id] td.col-sev")].map((td) => td.textContent)`
	if got := evalJS[[]string](t, ctx, sevs); len(got) < 50 || got[0] != "critical" {
		t.Errorf("severities top to bottom %v, want critical first", got)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button.sort[data-sort=sev]`))); err != nil {
		t.Fatal(err)
	}
	if got := evalJS[[]string](t, ctx, sevs); got[0] != "info" {
		t.Errorf("severities ascending %v, want info first", got[:5])
	}
	// Sorting by age, newest first, then oldest first.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button.sort[data-sort=age]`))); err != nil {
		t.Fatal(err)
	}
	first := `document.querySelector("table.inbox tbody tr[data-id] td.col-asset").textContent`
	if got := evalJS[string](t, ctx, first); got != "gpu-s2-00299" {
		t.Errorf("newest first: the top row is %s, want gpu-s2-00299", got)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button.sort[data-sort=age]`))); err != nil {
		t.Fatal(err)
	}
	if got := evalJS[string](t, ctx, first); got != "gpu-s1-00000" {
		t.Errorf("oldest first: the top row is %s, want gpu-s1-00000", got)
	}

	// Filters go into the URL; a reload opens the same view.
	setControl(t, ctx, "#alerts-site", "s2", "change")
	setControl(t, ctx, "#alerts-severity", "critical", "change")
	setControl(t, ctx, "#alerts-q", "substitution", "input")
	hash := evalJS[string](t, ctx, `location.hash`)
	for _, want := range []string{"site=s2", "sev=critical", "q=substitution", "sort=age"} {
		if !strings.Contains(hash, want) {
			t.Errorf("URL %s lacks %s", hash, want)
		}
	}
	rowsNow := `[...document.querySelectorAll("table.inbox tbody tr[data-id]")].map((tr) => tr.dataset.id)`
	before := evalJS[[]string](t, ctx, rowsNow)
	// alert i: site s2 when i is odd, substitution when i%4 == 1, critical when i%3 == 1: i = 1, 13, 25, ... (every 12th)
	if len(before) != 25 {
		t.Errorf("site s2, critical, substitution shows %d rows, want 25", len(before))
	}
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the inbox after reload", ready, 30*time.Second)
	if after := evalJS[[]string](t, ctx, rowsNow); !slices.Equal(before, after) {
		t.Errorf("after reload the rows are %v, want %v", after, before)
	}
	if v := evalJS[string](t, ctx, `document.querySelector("#alerts-site").value + "/" + document.querySelector("#alerts-severity").value`); v != "s2/critical" {
		t.Errorf("after reload the filters read %s, want s2/critical", v)
	}

	// Keyboard: j twice moves to the third row, Enter opens it (URL too),
	// Escape closes it.
	setControl(t, ctx, "#alerts-q", "", "input")
	key := func(k string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS(".inbox-scroll")), chromedp.KeyEvent(k)); err != nil {
			t.Fatal(err)
		}
	}
	key("j")
	key("j")
	third := evalJS[string](t, ctx, `document.querySelectorAll("table.inbox tbody tr[data-id]")[2].dataset.id`)
	if got := evalJS[string](t, ctx, `document.querySelector("table.inbox tr.cursor").dataset.id`); got != third {
		t.Errorf("after j j the cursor is on %s, want the third row %s", got, third)
	}
	key("\r")
	waitJS(t, ctx, "the detail pane", fmt.Sprintf(`!document.querySelector(".alert-detail").hidden && !!document.querySelector('.alert-detail li.alert[data-id=%q]')`, third), 10*time.Second)
	if h := evalJS[string](t, ctx, `location.hash`); !strings.Contains(h, "open="+third) {
		t.Errorf("URL %s does not name the open alert %s", h, third)
	}
	shot(t, ctx, "inbox-detail")
	key("\x1b")
	waitJS(t, ctx, "the detail pane closed", `document.querySelector(".alert-detail").hidden`, 10*time.Second)

	// Bulk acknowledge: x on three rows, then the button.
	var picked []string
	for range 3 {
		picked = append(picked, evalJS[string](t, ctx, `document.querySelector("table.inbox tr.cursor").dataset.id`))
		key("x")
		key("j")
	}
	if got := evalJS[string](t, ctx, `document.querySelector("#alerts-selected").textContent`); got != "3 selected" {
		t.Errorf("selection reads %q, want 3 selected", got)
	}
	setControl(t, ctx, `input[name=bulk-comment]`, "batch triage", "input")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#alerts-bulk-ack`))); err != nil {
		t.Fatal(err)
	}
	for _, id := range picked {
		var got alert.Alert
		testsvc.Eventually(t, 30*time.Second, id+" acknowledged", func() bool {
			svc.get(t, "/alerts/"+id, &got)
			return got.State == alert.Acknowledged
		})
		if last := got.History[len(got.History)-1]; last.By != "sec" || last.Comment != "batch triage" {
			t.Errorf("%s acknowledged by %q with %q, want sec with the comment", id, last.By, last.Comment)
		}
	}
	// The open filter no longer shows them.
	waitJS(t, ctx, "the acknowledged alerts gone from the open view", fmt.Sprintf(`!document.querySelector('table.inbox tr[data-id=%q]')`, picked[0]), 10*time.Second)
	shot(t, ctx, "inbox-bulk-acknowledged")

	// A phone.
	if err := chromedp.Do(ctx, viewport(390, 844, true)); err != nil {
		t.Fatal(err)
	}
	shot(t, ctx, "inbox-390")
}

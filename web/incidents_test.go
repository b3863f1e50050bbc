package web_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"twinchain/chaincode/core"
	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/ledger/proofbundle"
	"twinchain/internal/ledger/signkey"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/testsvc"
)

// seedIncidents writes three incidents into dataDir's detect.db: a
// critical cooling failure (overheating on four GPUs of rack r01), a warning
// XID on one host (two GPUs) and an info substitution at site s2.
func seedIncidents(t testing.TB, dataDir string) {
	t.Helper()
	at := time.Now().Add(-10 * time.Minute)
	s := seedStore(t, dataDir, func() time.Time { return at })
	defer s.close()
	var batch []detect.Finding
	for g := range 4 {
		asset := fmt.Sprintf("srv-s1-001.gpu%d", g)
		batch = append(batch, detect.Finding{Type: detect.TypeOverheating, Asset: asset, Site: "s1", Host: "srv-s1-001", Rack: "r01",
			Severity: detect.Critical, Time: at.Add(time.Duration(g) * time.Second), Summary: "overheating on " + asset})
	}
	for g := range 2 {
		asset := fmt.Sprintf("srv-s1-002.gpu%d", g)
		batch = append(batch, detect.Finding{Type: detect.TypeXID, Asset: asset, Site: "s1", Host: "srv-s1-002", Rack: "r02",
			Severity: detect.Warning, Time: at.Add(time.Minute), Summary: "XID 79 on " + asset})
	}
	batch = append(batch, detect.Finding{Type: detect.TypeSubstitution, Asset: "srv-s2-001.gpu0", Site: "s2", Host: "srv-s2-001",
		Severity: detect.Info, Time: at.Add(2 * time.Minute), Summary: "serial changed on srv-s2-001.gpu0"})
	s.apply(batch)
}

// TestIncidents: the incident view lists the seeded incidents one row each,
// sorted by severity and by time, filters with URL state, opens one with its
// member alerts, its map and proof links and the twin timeline around it,
// acknowledges two incidents at once, assigns both at once, comments on one
// and resolves it, all through the incidents' own routes, checked through
// the API (each incident's history, every member alert moved or annotated,
// by the signed-in user with the comment).
func TestIncidents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service and Chromium")
	}
	data := t.TempDir()
	seedIncidents(t, data)
	svc := startTwinIn(t, []string{"fleet", "-sites", "1", "-servers", "1", "-gpus", "1"}, "", data)
	var page struct {
		Items []alert.Incident `json:"items"`
	}
	svc.get(t, "/incidents", &page)
	if len(page.Items) != 3 {
		t.Fatalf("the API lists %d incidents, want 3: %+v", len(page.Items), page.Items)
	}
	byCause := map[string]alert.Incident{}
	for _, in := range page.Items {
		byCause[in.Cause] = in
	}
	thermal, hardware, identity := byCause["thermal"], byCause["hardware"], byCause["identity"]
	if len(thermal.Alerts) != 4 || len(hardware.Alerts) != 2 || len(identity.Alerts) != 1 {
		t.Fatalf("incidents thermal %v, hardware %v, identity %v: want 4, 2 and 1 alerts", thermal.Alerts, hardware.Alerts, identity.Alerts)
	}

	ctx := newTab(t, testsvc.StartChromium(t))
	if err := chromedp.Do(ctx, viewport(1440, 900, false)); err != nil {
		t.Fatal(err)
	}
	signIn(t, ctx, svc.URL, "sec")
	if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/incidents")); err != nil {
		t.Fatal(err)
	}
	ready := `document.querySelector("main").dataset.view === "incidents" && document.querySelector("table.incidents") && document.querySelector("table.incidents").dataset.loaded === "true"`
	waitJS(t, ctx, "the incident view", ready, 30*time.Second)
	rowIDs := `[...document.querySelectorAll("table.incidents tbody tr[data-id]")].map((tr) => tr.dataset.id)`
	// Most severe first by default; one row per incident, with its counts.
	if got, want := evalJS[[]string](t, ctx, rowIDs), []string{thermal.ID, hardware.ID, identity.ID}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v (critical, warning, info)", got, want)
	}
	row := func(id, col string) string {
		return evalJS[string](t, ctx, fmt.Sprintf(`document.querySelector('table.incidents tr[data-id=%q] td.col-%s').textContent`, id, col))
	}
	if got := row(thermal.ID, "alerts") + "/" + row(thermal.ID, "assets") + "/" + row(thermal.ID, "scope"); got != "4/4/rack r01" {
		t.Errorf("the thermal row reads alerts/assets/scope %s, want 4/4/rack r01", got)
	}
	// Sorting by last seen, newest first: the substitution (2 min later) on top.
	click(t, ctx, `table.incidents button.sort[data-sort=last]`)
	if got, want := evalJS[[]string](t, ctx, rowIDs), []string{identity.ID, hardware.ID, thermal.ID}; !slices.Equal(got, want) {
		t.Errorf("newest last seen first: rows %v, want %v", got, want)
	}
	// A filter goes into the URL and survives a reload.
	setControl(t, ctx, "#incidents-severity", "warning", "change")
	if got, want := evalJS[[]string](t, ctx, rowIDs), []string{hardware.ID, thermal.ID}; !slices.Equal(got, want) {
		t.Errorf("at least warning: rows %v, want %v", got, want)
	}
	if h := evalJS[string](t, ctx, `location.hash`); !strings.Contains(h, "sev=warning") || !strings.Contains(h, "sort=-last") {
		t.Errorf("URL %s lacks sev=warning and sort=-last", h)
	}
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the incident view after reload", ready, 30*time.Second)
	if got, want := evalJS[[]string](t, ctx, rowIDs), []string{hardware.ID, thermal.ID}; !slices.Equal(got, want) {
		t.Errorf("after reload rows %v, want %v", got, want)
	}
	setControl(t, ctx, "#incidents-severity", "", "change")

	// Opening an incident shows its member alerts in full, and the URL names it.
	click(t, ctx, fmt.Sprintf(`table.incidents tr[data-id=%q] td.col-scope`, thermal.ID))
	members := `[...document.querySelectorAll(".incident-detail li.alert")].map((li) => li.dataset.id)`
	waitJS(t, ctx, "the thermal incident's members", members+`.length === 4`, 10*time.Second)
	if got := evalJS[[]string](t, ctx, members); !slices.Equal(got, thermal.Alerts) {
		t.Errorf("member alerts %v, want %v", got, thermal.Alerts)
	}
	if h := evalJS[string](t, ctx, `location.hash`); !strings.Contains(h, "open="+thermal.ID) {
		t.Errorf("URL %s does not name the open incident %s", h, thermal.ID)
	}
	shot(t, ctx, "incidents-1440")

	// The detail links to the map (the incident's host), to each member's
	// proof bundle, and opens the twin timeline around the incident: the
	// events of srv-s1-001.gpu0 that a fleet's first inventory records
	// (minutes after the seeded findings, within the 15 minutes shown).
	if got := evalJS[[]string](t, ctx, `[...document.querySelectorAll(".incident-detail dd.incident-map a")].map((a) => a.getAttribute("href"))`); !slices.Equal(got, []string{"#/map?asset=srv-s1-001"}) {
		t.Errorf("the detail's map links %v, want #/map?asset=srv-s1-001", got)
	}
	var proofs []string
	for _, id := range thermal.Alerts {
		proofs = append(proofs, "/api/v1/ledger/alerts/"+id+"/proof")
	}
	if got := evalJS[[]string](t, ctx, `[...document.querySelectorAll(".incident-detail dd.incident-proofs a[download]")].map((a) => a.getAttribute("href"))`); !slices.Equal(got, proofs) {
		t.Errorf("the detail's proof downloads %v, want %v", got, proofs)
	}
	sim := testsvc.StartProcess(t, filepath.Join(binaries(t), "firmware-sim"), "fleet", "-sites", "1", "-servers", "1", "-gpus", "1", "-broker", svc.MQTT)
	testsvc.Eventually(t, 30*time.Second, "srv-s1-001.gpu0's twin events", func() bool {
		var evs struct {
			Items []json.RawMessage `json:"items"`
		}
		return svc.get(t, "/assets/srv-s1-001.gpu0/events", &evs) == 200 && len(evs.Items) > 0
	})
	click(t, ctx, `.incident-detail details.incident-timeline summary`)
	waitJS(t, ctx, "the twin timeline around the incident", `[...document.querySelectorAll(".incident-detail details.incident-timeline[open] ol.timeline li")].some((li) => li.textContent.includes("srv-s1-001.gpu0"))`, 30*time.Second)
	shot(t, ctx, "incidents-timeline")
	if err := sim.Stop(); err != nil {
		t.Fatal(err)
	}

	// Bulk: select the thermal and hardware incidents, acknowledge both.
	for _, id := range []string{thermal.ID, hardware.ID} {
		click(t, ctx, fmt.Sprintf(`table.incidents tr[data-id=%q] td.col-sel input`, id))
	}
	if got := evalJS[string](t, ctx, `document.querySelector("#incidents-selected").textContent`); got != "2 selected" {
		t.Errorf("selection reads %q, want 2 selected", got)
	}
	setControl(t, ctx, `input[name=incident-comment]`, "cooling team on it", "input")
	click(t, ctx, `#incidents-ack`)
	for _, id := range append(slices.Clone(thermal.Alerts), hardware.Alerts...) {
		var got alert.Alert
		testsvc.Eventually(t, 30*time.Second, id+" acknowledged", func() bool {
			svc.get(t, "/alerts/"+id, &got)
			return got.State == alert.Acknowledged
		})
		if last := got.History[len(got.History)-1]; last.By != "sec" || last.Comment != "cooling team on it" {
			t.Errorf("%s acknowledged by %q with %q, want sec with the comment", id, last.By, last.Comment)
		}
	}
	// Through the incident's own route: one acknowledged entry in each
	// incident's history, by the signed-in user with the comment.
	for _, id := range []string{thermal.ID, hardware.ID} {
		var in alert.Incident
		svc.get(t, "/incidents/"+id, &in)
		if h := in.History; len(h) != 1 || h[0].State != alert.Acknowledged || h[0].By != "sec" || h[0].Comment != "cooling team on it" {
			t.Errorf("%s history %+v, want one acknowledgement by sec with the comment", id, h)
		}
	}
	var still alert.Alert
	svc.get(t, "/alerts/"+identity.Alerts[0], &still)
	if still.State != alert.Open {
		t.Errorf("the unselected incident's alert is %s, want open", still.State)
	}
	// The member cards show the new state.
	waitJS(t, ctx, "the open incident's members acknowledged",
		`[...document.querySelectorAll(".incident-detail li.alert")].every((li) => li.dataset.state === "acknowledged")`, 10*time.Second)
	// Their rows read acknowledged (every member is); the other stays open.
	waitJS(t, ctx, "the acknowledged incidents' rows", fmt.Sprintf(`document.querySelector('table.incidents tr[data-id=%q] td.col-state').textContent === "acknowledged" && document.querySelector('table.incidents tr[data-id=%q] td.col-state').textContent === "acknowledged"`, thermal.ID, hardware.ID), 10*time.Second)
	if got := row(identity.ID, "state"); got != "open" {
		t.Errorf("the unselected incident reads %q, want open", got)
	}
	shot(t, ctx, "incidents-acknowledged")

	// Assign both at once; then a comment on the open one from its detail.
	for _, id := range []string{thermal.ID, hardware.ID} {
		click(t, ctx, fmt.Sprintf(`table.incidents tr[data-id=%q] td.col-sel input`, id))
	}
	setControl(t, ctx, `#incidents-assignee`, "carol", "input")
	setControl(t, ctx, `input[name=incident-comment]`, "carol has rack r01", "input")
	click(t, ctx, `#incidents-assign`)
	for _, in := range []alert.Incident{thermal, hardware} {
		var got alert.Incident
		testsvc.Eventually(t, 30*time.Second, in.ID+" assigned", func() bool {
			svc.get(t, "/incidents/"+in.ID, &got)
			return got.Assignee == "carol"
		})
		if h := got.History; len(h) != 2 || h[1].Step != alert.StepAssigned || h[1].By != "sec" || h[1].Comment != "carol has rack r01" {
			t.Errorf("%s history %+v, want the acknowledgement, then one assignment by sec with the comment", in.ID, h)
		}
		for _, id := range in.Alerts {
			var a alert.Alert
			svc.get(t, "/alerts/"+id, &a)
			if last := a.History[len(a.History)-1]; a.Assignee != "carol" || last.Step != alert.StepAssigned || last.By != "sec" {
				t.Errorf("%s assignee %q, last step %+v; want carol assigned by sec", id, a.Assignee, last)
			}
		}
	}
	waitJS(t, ctx, "the assignee column", fmt.Sprintf(`(document.querySelector('table.incidents tr[data-id=%q] td.col-assignee') || {}).textContent === "carol" && (document.querySelector('table.incidents tr[data-id=%q] td.col-assignee') || {}).textContent === "carol"`, thermal.ID, hardware.ID), 30*time.Second)
	if got := row(identity.ID, "assignee"); got != "—" {
		t.Errorf("the unassigned incident's assignee reads %q, want —", got)
	}
	waitJS(t, ctx, "the detail's assignee", `(document.querySelector(".incident-detail dd.incident-assignee") || {}).textContent === "carol"`, 30*time.Second)
	// Type and click in one step: a live update may redraw the detail between
	// two browser calls, and a redrawn input is empty.
	if got := evalJS[string](t, ctx, `(() => {
		const box = document.querySelector(".incident-detail .annotate");
		const e = box.querySelector("input[name=comment]");
		e.value = "fans replaced, watching temperatures";
		e.dispatchEvent(new Event("input", {bubbles: true}));
		box.querySelector("button[data-action=incident-comment]").click();
		return e.value;
	})()`); got != "fans replaced, watching temperatures" {
		t.Fatalf("comment input holds %q", got)
	}
	waitJS(t, ctx, "the comment in the incident history", `[...document.querySelectorAll(".incident-history li")].some((li) => li.textContent.includes("sec: commented — fans replaced, watching temperatures"))`, 30*time.Second)
	var commented alert.Alert
	svc.get(t, "/alerts/"+thermal.Alerts[0], &commented)
	if last := commented.History[len(commented.History)-1]; last.Step != alert.StepCommented || last.Comment != "fans replaced, watching temperatures" {
		t.Errorf("%s last step %+v, want the comment", commented.ID, last)
	}
	waitJS(t, ctx, "the detail drawn", `document.querySelectorAll(".incident-detail li.alert").length === 4 && !!document.querySelector(".incident-history")`, 30*time.Second)
	shot(t, ctx, "incidents-assigned")

	// Resolving the open incident resolves its members and the incident.
	click(t, ctx, `.incident-detail button[data-action=incident-resolve]`)
	var in alert.Incident
	testsvc.Eventually(t, 30*time.Second, thermal.ID+" resolved", func() bool {
		svc.get(t, "/incidents/"+thermal.ID, &in)
		return in.State == alert.Resolved
	})
	if h := in.History; len(h) == 0 || h[len(h)-1].State != alert.Resolved || h[len(h)-1].By != "sec" {
		t.Errorf("%s history %+v, want it to end resolved by sec (the incident's own route)", thermal.ID, h)
	}
	for _, id := range thermal.Alerts {
		var a alert.Alert
		svc.get(t, "/alerts/"+id, &a)
		if a.State != alert.Resolved || a.History[len(a.History)-1].By != "sec" {
			t.Errorf("%s state %s history %+v, want resolved by sec", id, a.State, a.History)
		}
	}
	// The open filter (the default) no longer lists it.
	waitJS(t, ctx, "the resolved incident gone from the open view", fmt.Sprintf(`!document.querySelector('table.incidents tr[data-id=%q]')`, thermal.ID), 10*time.Second)

	// An alert card links to its incident. The way there leaves the
	// incident view while it redraws (a live update arriving as the user
	// follows a link): the redraw must not pull the address back to the
	// incidents (it did, and the page stayed on them, once in CI).
	leave := fmt.Sprintf(`location.hash = "#/alerts?state=&open=%s"; document.querySelector("#incidents-state").dispatchEvent(new Event("change"))`, hardware.Alerts[0])
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](leave)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the alert's incident link", fmt.Sprintf(`!!document.querySelector('.alert-detail a.incident-link[href*=%q]')`, hardware.ID), 30*time.Second)

	if err := chromedp.Do(ctx, viewport(390, 844, true), chromedp.Navigate(svc.URL+"/#/incidents?state=")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the incident view on a phone", ready, 30*time.Second)
	shot(t, ctx, "incidents-390")
}

// TestDemoIncidents is make run's first-run demo (firmware-sim fleet -demo,
// here every 2 s instead of 3 min): the fleet's own gateways report an XID
// and a server's cooling failure, the detectors raise them, they form a
// hardware and a thermal incident, and the incident view shows both, with
// no rejected message (nothing impersonated). Its ML pipeline's training
// run sees a GPU swapped (reported by the server's own gateway), so the
// gate refuses the model's deployment for it; the model's record bundle
// verifies under the service key. All within five minutes of the start.
func TestDemoIncidents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service, firmware-sim and Chromium")
	}
	fleetArgs := []string{"fleet", "-sites", "1", "-servers", "2", "-gpus", "2"}
	svc := startTwin(t, fleetArgs, "../scripts/run-detect.yaml")
	// make run gives the demo ml_engineer, ml_lead, compliance and
	// maintenance tokens; the admin token stands in for the last here.
	tokens := filepath.Join(t.TempDir(), "demo-tokens")
	if err := os.WriteFile(tokens, []byte("ml="+mlToken+"\nmaint="+testToken+"\nlead="+leadToken+"\ncompliance="+complianceToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	within := func() time.Duration { return max(time.Second, time.Until(start.Add(5*time.Minute))) } // make run's promise
	simArgs := append(fleetArgs, "-broker", svc.MQTT, "-demo", "2s", "-demo-api", svc.URL, "-demo-tokens", tokens, "-demo-swap-after", "5s")
	sim := testsvc.StartProcess(t, filepath.Join(binaries(t), "firmware-sim"), simArgs...)
	causes := map[string]alert.Incident{}
	testsvc.Eventually(t, within(), "a hardware and a thermal incident from the demo", func() bool {
		var page struct {
			Items []alert.Incident `json:"items"`
		}
		svc.get(t, "/incidents?state=", &page)
		for _, in := range page.Items {
			causes[in.Cause] = in
		}
		return causes["hardware"].ID != "" && causes["thermal"].ID != ""
	})
	if hw := causes["hardware"]; !slices.Contains(hw.Types, "gpu_xid") {
		t.Errorf("hardware incident %s has types %v, want gpu_xid", hw.ID, hw.Types)
	}
	if th := causes["thermal"]; !slices.Contains(th.Types, "overheating") || len(th.Assets) != 2 || !strings.HasPrefix(th.Scope, "host ") && !strings.HasPrefix(th.Scope, "rack ") {
		t.Errorf("thermal incident %s: types %v, assets %v, scope %q; want overheating on the server's 2 GPUs, host or rack scope", th.ID, th.Types, th.Assets, th.Scope)
	}
	var alerts struct {
		Items []alert.Alert `json:"items"`
	}
	svc.get(t, "/alerts?state=", &alerts)
	for _, a := range alerts.Items {
		if strings.HasPrefix(string(a.Type), "bad_") || a.Type == "unknown_gateway" || a.Type == "replayed_messages" {
			t.Errorf("the demo raised %s (%s): it must not impersonate a gateway", a.Type, a.Summary)
		}
	}

	// The demo's provenance and work order.
	var model struct {
		Training struct {
			Hardware []struct {
				Asset string `json:"asset"`
			} `json:"hardware"`
		} `json:"training"`
	}
	testsvc.Eventually(t, within(), "the demo's model on the ledger", func() bool {
		return svc.get(t, "/ledger/models/demo-thermal-forecaster", &model) == 200
	})
	if len(model.Training.Hardware) != 2 || model.Training.Hardware[0].Asset != "srv-s1-001.gpu0" {
		t.Errorf("the demo model's training hardware is %+v, want srv-s1-001's 2 GPUs", model.Training.Hardware)
	}
	// The gate refuses the model's deployment: a GPU it trained on was
	// swapped during the run, and the policy refuses swap evidence.
	var dep core.Deployment
	testsvc.Eventually(t, within(), "the demo's deployment decision", func() bool {
		return svc.get(t, "/ledger/deployments/demo-rollout-1", &dep) == 200
	})
	if dep.Allowed || len(dep.Reasons) != 1 || dep.Reasons[0].Code != core.ReasonTrainingEvidence || !strings.HasPrefix(dep.Reasons[0].Detail, "srv-s1-001.gpu1: swap") {
		t.Errorf("the demo's deployment: allowed %v, reasons %+v; want refused only for the swap of srv-s1-001.gpu1 during training", dep.Allowed, dep.Reasons)
	}
	var deps []core.Deployment
	if svc.get(t, "/ledger/models/demo-thermal-forecaster/deployments", &deps); len(deps) != 1 || deps[0].ID != "demo-rollout-1" {
		t.Errorf("the model's deployments = %+v, want demo-rollout-1", deps)
	}
	// The swap came from the server's own gateway: the twin shows the new
	// card and the detector raised a substitution.
	var sub struct {
		Items []alert.Alert `json:"items"`
	}
	svc.get(t, "/alerts?state=&type=substitution", &sub)
	if len(sub.Items) == 0 || sub.Items[0].Asset != "srv-s1-001.gpu1" {
		t.Errorf("substitution alerts %+v, want one on srv-s1-001.gpu1", sub.Items)
	}
	// The model's record bundle verifies under the service key (pinned
	// from its file, as an auditor would).
	var bundle json.RawMessage
	if code := svc.get(t, "/ledger/proofs/model/demo-thermal-forecaster", &bundle); code != 200 {
		t.Fatalf("GET the model's record bundle = %d", code)
	}
	keyPEM, err := os.ReadFile(filepath.Join(svc.DataDir, "service.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := signkey.Parse(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if rep := proofbundle.VerifyJSON(bundle, key.Public().(ed25519.PublicKey)); !rep.Verified() {
		t.Errorf("the demo model's record bundle does not verify: %v", rep.Failed())
	}
	t.Logf("incidents, the refused deployment and the verified model proof %s after the start", time.Since(start).Round(time.Second))

	// A restarted demo puts the replacement card back before its first
	// inventory (no swap back, no second substitution) and records nothing
	// twice.
	if err := sim.Stop(); err != nil {
		t.Fatal(err)
	}
	var before struct {
		Stream struct {
			Accepted uint64 `json:"accepted"`
		} `json:"stream"`
	}
	svc.get(t, "/gateways/gw-srv-s1-001", &before)
	testsvc.StartProcess(t, filepath.Join(binaries(t), "firmware-sim"), simArgs...)
	testsvc.Eventually(t, time.Minute, "the restarted fleet's readings", func() bool {
		var now struct {
			Stream struct {
				Accepted uint64 `json:"accepted"`
			} `json:"stream"`
		}
		return svc.get(t, "/gateways/gw-srv-s1-001", &now) == 200 && now.Stream.Accepted > before.Stream.Accepted+5
	})
	var gpu1 struct {
		Identity struct {
			Serial string `json:"serial"`
		} `json:"identity"`
	}
	svc.get(t, "/assets/srv-s1-001.gpu1", &gpu1)
	if serial, _ := fleet.DemoReplacement("srv-s1-001.gpu1"); gpu1.Identity.Serial != serial {
		t.Errorf("after the restart srv-s1-001.gpu1 has serial %q, want the replacement's %q", gpu1.Identity.Serial, serial)
	}
	var sub2 struct {
		Items []alert.Alert `json:"items"`
	}
	svc.get(t, "/alerts?state=&type=substitution", &sub2)
	if len(sub2.Items) != len(sub.Items) || len(sub2.Items) > 0 && sub2.Items[0].Count != sub.Items[0].Count {
		t.Errorf("substitution alerts after the restart %+v, before %+v: want no new finding", sub2.Items, sub.Items)
	}
	if svc.get(t, "/ledger/models/demo-thermal-forecaster/deployments", &deps); len(deps) != 1 {
		t.Errorf("after the restart the model has %d deployments, want the one", len(deps))
	}
	var orders struct {
		Items []struct {
			Asset  string `json:"asset"`
			Reason string `json:"reason"`
		} `json:"items"`
	}
	svc.get(t, "/workorders", &orders)
	if len(orders.Items) != 1 || orders.Items[0].Asset != "srv-s1-001.gpu0" || !strings.Contains(orders.Items[0].Reason, "simulated") {
		t.Errorf("work orders %+v, want the demo's one for srv-s1-001.gpu0", orders.Items)
	}

	ctx := newTab(t, testsvc.StartChromium(t))
	if err := chromedp.Do(ctx, viewport(1440, 900, false)); err != nil {
		t.Fatal(err)
	}
	signIn(t, ctx, svc.URL, "sec")
	if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/provenance")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the demo's model on the Provenance page", `!!document.querySelector('#prov-models li[data-id="demo-thermal-forecaster"]')`, 30*time.Second)
	shot(t, ctx, "provenance-demo-1440")
	// The model's lineage as a graph: datasets -> training run -> hardware
	// -> model -> deployments, the swapped GPU and the refused deployment
	// marked, each node linked to its record.
	if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/provenance?model=demo-thermal-forecaster")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the lineage graph", `!!document.querySelector(".lineage-graph svg g.lin-deployment")`, 30*time.Second)
	type node struct {
		ID, Kind string
		Bad      bool
		Text     string
	}
	nodes := evalJS[[]node](t, ctx, `[...document.querySelectorAll(".lineage-graph g.lin-node")].map(g => ({ID: g.dataset.id, Kind: g.dataset.kind, Bad: g.classList.contains("lin-bad"), Text: g.textContent}))`)
	got := map[string]node{}
	for _, n := range nodes {
		got[n.ID] = n
		if m := strayValue.FindString(n.Text); m != "" {
			t.Errorf("lineage node %s shows a stray %q: %q", n.ID, m, n.Text)
		}
	}
	for id, want := range map[string]struct {
		kind string
		bad  bool
	}{"ds:demo-telemetry": {"dataset", false}, "ds:demo-telemetry-clean": {"dataset", false}, "run": {"run", false},
		"hw:srv-s1-001.gpu1": {"hardware", true}, "model:demo-thermal-forecaster": {"model", false},
		"eval:0": {"evaluation", false}, "dep:demo-rollout-1": {"deployment", true}} {
		if n, ok := got[id]; !ok || n.Kind != want.kind || n.Bad != want.bad {
			t.Errorf("lineage node %s = %+v (present %v), want kind %s, marked %v", id, n, ok, want.kind, want.bad)
		}
	}
	if n := got["hw:srv-s1-001.gpu0"]; n.Kind != "hardware" { // marked too when the demo's first XID fell within the run
		t.Errorf("lineage node hw:srv-s1-001.gpu0 = %+v, want the other GPU of the run", n)
	}
	if n := got["hw:srv-s1-001.gpu1"]; !strings.Contains(n.Text, "swap") {
		t.Errorf("the swapped GPU's node reads %q, want the swap named", n.Text)
	}
	// Edges run datasets -> run -> hardware -> model -> deployment: dagre
	// lays them out left to right.
	xs := evalJS[map[string]float64](t, ctx, `Object.fromEntries([...document.querySelectorAll(".lineage-graph g.lin-node")].map(g => [g.dataset.id, g.querySelector("rect").x.baseVal.value]))`)
	if !(xs["ds:demo-telemetry"] < xs["ds:demo-telemetry-clean"] && xs["ds:demo-telemetry-clean"] < xs["run"] && xs["run"] < xs["hw:srv-s1-001.gpu1"] &&
		xs["hw:srv-s1-001.gpu1"] < xs["model:demo-thermal-forecaster"] && xs["model:demo-thermal-forecaster"] < xs["dep:demo-rollout-1"]) {
		t.Errorf("lineage columns %v, want datasets < run < hardware < model < deployment", xs)
	}
	if n := evalJS[int](t, ctx, `document.querySelectorAll(".lineage-graph path.lin-edge").length`); n != 8 {
		t.Errorf("the lineage graph has %d edges, want 8 (dataset->dataset, dataset->run, run->2 GPUs, 2 GPUs->model, model->evaluation, model->deployment)", n)
	}
	if n := got["eval:0"]; !strings.Contains(n.Text, "holdout") || !strings.Contains(n.Text, "mae_c 1.4") {
		t.Errorf("the evaluation node reads %q, want the holdout's metrics", n.Text)
	}
	if got := evalJS[string](t, ctx, `document.querySelector('#dep-demo-rollout-1').innerText`); !strings.Contains(got, "refused") || !strings.Contains(got, "training_evidence") {
		t.Errorf("the deployment card reads %q, want refused for training_evidence", got)
	}
	if got := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#h-lsign ~ ul li")].map(li => li.dataset.role + " " + li.innerText)`); len(got) != 2 ||
		!strings.HasPrefix(got[0], "ml_lead ") || !strings.HasPrefix(got[1], "compliance ") || !strings.Contains(got[0], "approve") {
		t.Errorf("the sign-offs read %q, want the ML lead's and compliance's approvals", got)
	}
	shot(t, ctx, "provenance-lineage-graph-1440")
	// On a phone the graph runs top to bottom.
	if err := chromedp.Do(ctx, viewport(390, 844, true), chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the lineage graph top to bottom", `(document.querySelector(".lineage-graph") || {dataset: {}}).dataset.direction === "TB"`, 30*time.Second)
	shot(t, ctx, "provenance-lineage-graph-390")
	if err := chromedp.Do(ctx, viewport(1440, 900, false)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/incidents?state=&open="+causes["thermal"].ID)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the demo's incidents", fmt.Sprintf(`!!document.querySelector('table.incidents tr[data-id=%q]') && !!document.querySelector('table.incidents tr[data-id=%q]') && document.querySelectorAll(".incident-detail li.alert").length >= 2`,
		causes["hardware"].ID, causes["thermal"].ID), 30*time.Second)
	shot(t, ctx, "incidents-demo-1440")
}

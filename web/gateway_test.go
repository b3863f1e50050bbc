package web_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"twinchain/internal/testsvc"
)

// TestGatewayPage: a gateway's page shows its agent (version, host), the
// queue its agent reports, its bound assets, and, once its connection
// drops (firmware-sim killed, so the broker publishes the last will), the
// offline state with the time the will arrived.
func TestGatewayPage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts twin-service, firmware-sim and Chromium")
	}
	fleetArgs := []string{"fleet", "-sites", "1", "-servers", "1", "-gpus", "2"}
	svc := startTwin(t, fleetArgs, "../scripts/run-detect.yaml")
	sim := testsvc.StartProcess(t, filepath.Join(binaries(t), "firmware-sim"), append(fleetArgs, "-broker", svc.MQTT)...)
	const gw = "gw-srv-s1-001"
	type gateway struct {
		Assets []string `json:"assets"`
		Stream *struct {
			State        string    `json:"state"`
			AgentVersion string    `json:"agent_version"`
			StatusTime   time.Time `json:"status_time"`
		} `json:"stream"`
	}
	var g gateway
	testsvc.Eventually(t, 90*time.Second, "the gateway's status and its GPUs' twins", func() bool {
		var gpu struct {
			ID string `json:"id"`
		}
		return svc.get(t, "/gateways/"+gw, &g) == 200 && g.Stream != nil && !g.Stream.StatusTime.IsZero() &&
			svc.get(t, "/assets/srv-s1-001.gpu1", &gpu) == 200
	})

	ctx := newTab(t, testsvc.StartChromium(t))
	if err := chromedp.Do(ctx, viewport(1440, 900, false)); err != nil {
		t.Fatal(err)
	}
	signIn(t, ctx, svc.URL, "view")
	// From the gateways list to the gateway's page.
	if err := chromedp.Do(ctx, chromedp.Navigate(svc.URL+"/#/gateways")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the gateways list", `!!document.querySelector('table.plain tr[data-id="`+gw+`"] a')`, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('table.plain tr[data-id="`+gw+`"] a').click()`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the gateway page", `document.querySelector("main").dataset.view === "gateway" && document.querySelector("main").dataset.ready === "true" && !!document.querySelector("table.gw-assets")`, 30*time.Second)
	text := evalJS[string](t, ctx, `document.querySelector("main").innerText`)
	for _, want := range []string{"Agent", "firmware-sim", "Host", "srv-s1-001", "Offline queue", "Queued readings", "Dropped (queue full), ever", "online"} {
		if !strings.Contains(text, want) {
			t.Errorf("the gateway page lacks %q:\n%s", want, text)
		}
	}
	if host := evalJS[string](t, ctx, `document.querySelector("[data-field=host]").textContent`); !strings.HasPrefix(host, "srv-s1-001") {
		t.Errorf("the agent's host reads %q, want srv-s1-001", host)
	}
	bound := evalJS[[]string](t, ctx, `[...document.querySelectorAll("table.gw-assets tbody tr")].map(r => r.dataset.id)`)
	slices.Sort(bound)
	want := slices.Clone(g.Assets)
	slices.Sort(want)
	if !slices.Equal(bound, want) || len(want) != 3 {
		t.Errorf("bound assets shown %v, the registry %v; want the host and its 2 GPUs", bound, want)
	}
	if kinds := evalJS[[]string](t, ctx, `[...document.querySelectorAll("table.gw-assets tbody tr td:nth-child(2)")].map(td => td.textContent)`); !slices.Contains(kinds, "server") || !slices.Contains(kinds, "gpu") {
		t.Errorf("bound asset kinds %v, want a server and GPUs", kinds)
	}
	shot(t, ctx, "gateway-online-1440")

	// The connection drops without a clean disconnect: the broker publishes
	// the agent's last will, and the page (live) shows it offline with the
	// time the will arrived.
	dropped := time.Now()
	sim.Kill()
	waitJS(t, ctx, "the gateway offline", `!!document.querySelector('#h-gw-state ~ dl [data-field=dropped_at]')`, 60*time.Second)
	text = evalJS[string](t, ctx, `document.querySelector("main").innerText`)
	for _, want := range []string{"offline", "Dropped at", "Last will", "connection lost"} {
		if !strings.Contains(text, want) {
			t.Errorf("the offline gateway's page lacks %q:\n%s", want, text)
		}
	}
	var events struct {
		Items []struct {
			Type     string    `json:"type"`
			Recorded time.Time `json:"recorded"`
		} `json:"items"`
	}
	svc.get(t, "/assets/"+gw+"/events?limit=1000", &events)
	var off time.Time
	for _, e := range events.Items {
		if e.Type == "gateway_offline" {
			off = e.Recorded
		}
	}
	// The time shown is when the will arrived (after the kill), not when
	// it was signed (at the connect).
	if off.Before(dropped.Add(-time.Second)) {
		t.Errorf("gateway_offline recorded at %s, before the connection dropped at %s", off, dropped)
	}
	shot(t, ctx, "gateway-offline-1440")
	if err := chromedp.Do(ctx, viewport(390, 844, true)); err != nil {
		t.Fatal(err)
	}
	shot(t, ctx, "gateway-offline-390")
}

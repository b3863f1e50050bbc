package web_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"twinchain/internal/httpapi"
	"twinchain/internal/httpapi/auth"
	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
	"twinchain/web"
)

// Markup in the names the map shows. The CSP blocks scripts; an element
// made from the text is the injection.
const (
	hostileSite  = `<img id="inj-site" src="x">`
	hostileAsset = `<img id="inj-asset" src="x">tag-1`
	hostileFence = `<b id="inj-fence">fence</b>`
)

// TestMapShowsNamesAsText runs the map over a real store and ingest whose
// gateway sits at a site named with markup and reports the position of a
// tag whose id is markup: Leaflet's tooltips show them as text, no element
// is made from them. On main the site label made an <img>.
func TestMapShowsNamesAsText(t *testing.T) {
	store, err := twinstore.Open(filepath.Join(t.TempDir(), "twins.db"), twinstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	seed := sha256.Sum256([]byte("map test gateway"))
	key := ed25519.NewKeyFromSeed(seed[:])
	reg := registry.New()
	if err := reg.Put(registry.Gateway{ID: "gw-map", PublicKey: key.Public().(ed25519.PublicKey), Site: hostileSite, Assets: []string{}}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	in, err := ingest.New(ingest.Config{}, store, reg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; store.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	for i, fix := range []wire.GPSFix{
		{Lat: 52.0, Lon: 4.0, Quality: 1, Sats: 9, FixTime: now.Add(-time.Minute)},
		{Asset: hostileAsset, Lat: 52.001, Lon: 4.001, Quality: 1, Sats: 9, FixTime: now.Add(-time.Minute)},
	} {
		p, err := wire.Seal(key, "gw-map", uint64(i+1), now.Add(-time.Minute), wire.KindGPS, fix)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := in.Submit(ingest.Source{Client: "test"}, wire.Topic("gw-map", wire.KindGPS), p); err != nil || !out.Accepted() {
			t.Fatalf("Submit GPS fix %d: %v %v", i, err, out.Err)
		}
	}
	a, err := auth.New(testAuthConfig(t), time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Options{
		Auth: httpapi.NewAuth(a, false, log), Log: log,
		Assets: store, Events: store, Ingest: in, Gateways: reg,
		Sites:     []httpapi.Site{{ID: hostileFence, Polygon: [][]float64{{51.99, 3.99}, {51.99, 4.01}, {52.01, 4.01}, {52.01, 3.99}}}},
		Dashboard: web.Dist(),
	})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, srv.App())
	tab := newTab(t, testsvc.StartChromium(t))
	signIn(t, tab, base, "view")
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/#/map")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "the map", `document.querySelector("main").dataset.view === "map" && document.querySelector("main").dataset.ready === "true"`, 30*time.Second)
	waitJS(t, tab, "the site label", `[...document.querySelectorAll(".leaflet-tooltip")].some(e => e.textContent.includes("site "))`, 10*time.Second)
	// Open every other tooltip: hover each fence and marker path.
	evalJS[bool](t, tab, `(() => { for (const e of document.querySelectorAll(".leaflet-interactive")) { e.dispatchEvent(new MouseEvent("mouseover", {bubbles: true})); } return true; })()`)
	label := evalJS[string](t, tab, `[...document.querySelectorAll(".leaflet-tooltip")].map(e => e.textContent).join("\n")`)
	if !strings.Contains(label, "site "+hostileSite) {
		t.Errorf("site label = %q, want the site's name as text %q", label, hostileSite)
	}
	for _, id := range []string{"inj-site", "inj-asset", "inj-fence"} {
		if n := evalJS[int](t, tab, `document.querySelectorAll("#`+id+`").length`); n != 0 {
			t.Errorf("the map made %d element(s) #%s out of a name: injection", n, id)
		}
	}
	shot(t, tab, "map-names-as-text")
}

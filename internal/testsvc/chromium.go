package testsvc

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromiumOptions finds headless Chromium (TWINCHAIN_CHROMIUM, or chromium
// on PATH) and returns chromedp allocator options for it: headless, no
// sandbox, no network chatter of its own, and a fresh profile in a temporary
// directory that t removes.
func ChromiumOptions(t testing.TB) []chromedp.ExecAllocatorOption {
	t.Helper()
	bin := Binary(t, "TWINCHAIN_CHROMIUM", "chromium", "apt-get install -y chromium, or run make test")
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
}

// StartChromium starts a headless Chromium owned by t and returns a browser
// context for chromedp.Run; the browser is stopped by t.Cleanup.
func StartChromium(t testing.TB) context.Context {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), ChromiumOptions(t)...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}

package fleet

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemo: the demo's XID shows in the GPU's next reading, its cooling
// failure holds a whole server's GPUs above the overheating limit, and the
// readings come from the fleet's own gateways.
func TestDemo(t *testing.T) {
	f, err := New(Config{Sites: 1, ServersPerSite: 2, GPUsPerServer: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan string, 8)
	hot := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- f.RunDemo(ctx, Demo{Interval: time.Millisecond, Hold: time.Hour, OnEvent: func(s string) {
			events <- s
			if strings.Contains(s, "cooling failure") {
				close(hot)
			}
		}})
	}()
	if got := <-events; !strings.Contains(got, "XID 79") {
		t.Fatalf("first demo event %q, want an XID 79", got)
	}
	<-hot
	var host *Gateway
	for _, g := range f.Gateways {
		if g.Host != nil {
			host = g
			break
		}
	}
	// The XID went to the first host's first GPU; the cooling failure holds
	// that host (an hour) while its readings are taken.
	xid := false
	for _, s := range host.Sample(time.Now(), time.Second).GPUs {
		if s.TempC < 92 {
			t.Errorf("%s at %.1f °C during the cooling failure, want >= 92", s.Asset, s.TempC)
		}
		if s.LastXID == 79 && s.XIDCount == 1 {
			xid = true
		}
	}
	if !xid {
		t.Error("no GPU of the first host reports the demo's XID 79")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := (&Fleet{}).RunDemo(ctx, Demo{Interval: time.Second}); err == nil {
		t.Error("a demo over a fleet without hosts did not fail")
	}
}

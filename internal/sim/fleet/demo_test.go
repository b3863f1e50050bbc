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

// TestSwapGPU: the demo's swap gives a GPU a new UUID and serial, the same
// in every fleet (a restarted fleet puts the same card back), reported in the
// gateway's inventory and asked of the publisher at once; an unknown GPU is
// an error.
func TestSwapGPU(t *testing.T) {
	var ids []string
	for range 2 {
		f, err := New(Config{Sites: 1, ServersPerSite: 1, GPUsPerServer: 2, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		g := f.Gateways[0]
		before := g.Inventory().GPUs[1]
		id, err := f.SwapGPU(before.Asset)
		if err != nil {
			t.Fatal(err)
		}
		after := g.Inventory().GPUs[1]
		if after != id || after.UUID == before.UUID || after.Serial == before.Serial || after.Asset != before.Asset {
			t.Errorf("inventory after the swap %+v (swap said %+v), before %+v: want a new UUID and serial in the same slot", after, id, before)
		}
		if !g.invDue.Load() {
			t.Error("the swap did not ask for an inventory report")
		}
		ids = append(ids, id.UUID+" "+id.Serial)
		if _, err := f.SwapGPU("no-such-gpu"); err == nil {
			t.Error("swapping an unknown GPU did not fail")
		}
	}
	if ids[0] != ids[1] {
		t.Errorf("two fleets swapped in %q and %q, want the same card", ids[0], ids[1])
	}
}

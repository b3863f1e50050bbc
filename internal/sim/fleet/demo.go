package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"twinchain/internal/wire"
)

// Demo is make run's first-run story: simulated incidents played on the
// fleet's own hosts, so a new user sees detection and incidents without
// scripting anything. The hosts' gateways sign their readings as always:
// the detectors see the fleet itself misbehave, nothing is forged or
// impersonated.
type Demo struct {
	Interval time.Duration // between two incidents
	First    time.Duration // before the first (0: Interval)
	Hold     time.Duration // how long a cooling failure lasts (0: 75 s, over the overheating detector's 30 s)
	// OnEvent is told what each incident does (firmware-sim logs it).
	OnEvent func(what string)
}

// Demo temperatures: above the overheating detector's default 92 °C.
const demoHotC = 96

// RunDemo plays, in turn over the fleet's hosts, an XID 79 (the GPU fell
// off the bus) on one GPU and a cooling failure on a whole server (every
// GPU held at 96 °C for Hold), one every Interval, until ctx ends.
func (f *Fleet) RunDemo(ctx context.Context, d Demo) error {
	if d.Interval <= 0 {
		return fmt.Errorf("demo: interval %s: want > 0", d.Interval)
	}
	if d.First <= 0 {
		d.First = d.Interval
	}
	if d.Hold <= 0 {
		d.Hold = 75 * time.Second
	}
	var hosts []*Gateway
	for _, g := range f.Gateways {
		if g.Host != nil && len(g.Host.GPUs) > 0 {
			hosts = append(hosts, g)
		}
	}
	if len(hosts) == 0 {
		return fmt.Errorf("demo: the fleet has no GPU hosts")
	}
	say := func(format string, args ...any) {
		if d.OnEvent != nil {
			d.OnEvent(fmt.Sprintf(format, args...))
		}
	}
	wait := time.NewTimer(d.First)
	defer wait.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
		}
		g := hosts[(n/2)%len(hosts)]
		if n%2 == 0 {
			gpu := g.Host.GPUs[n/2%len(g.Host.GPUs)]
			g.mu.Lock()
			gpu.InjectXID(79)
			g.mu.Unlock()
			say("simulated incident: XID 79 (fallen off the bus) on %s", gpu.Ident.Asset)
		} else {
			g.setHot()
			say("simulated incident: cooling failure on %s, its %d GPUs at %d °C for %s", g.Host.Info.Asset, len(g.Host.GPUs), demoHotC, d.Hold)
			if !g.holdHot(ctx, d.Hold) {
				return nil
			}
			say("simulated incident: cooling on %s restored", g.Host.Info.Asset)
		}
		wait.Reset(d.Interval)
	}
}

// holdHot keeps every GPU of the host at demoHotC for hold (their
// temperature would otherwise fall back towards their load's); false when
// ctx ended first.
func (g *Gateway) holdHot(ctx context.Context, hold time.Duration) bool {
	tick := time.NewTicker(min(time.Second, hold/10))
	defer tick.Stop()
	end := time.NewTimer(hold)
	defer end.Stop()
	for {
		g.setHot()
		select {
		case <-ctx.Done():
			return false
		case <-end.C:
			return true
		case <-tick.C:
		}
	}
}

func (g *Gateway) setHot() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, gpu := range g.Host.GPUs {
		gpu.SetTemp(demoHotC)
	}
}

// SwapGPU plays a GPU swap: the demo's replacement card (a new UUID and
// serial) goes into asset's slot, and its gateway reports its inventory with
// the next reading, signed as always, so the twin sees the swap from the
// fleet's own gateway. The replacement is the same every run (derived from
// the asset id): a restarted fleet that calls SwapGPU again before
// publishing reports the card the twin already knows, not a second swap.
func (f *Fleet) SwapGPU(asset string) (wire.GPUIdentity, error) {
	for _, g := range f.Gateways {
		if g.Host == nil {
			continue
		}
		for _, gpu := range g.Host.GPUs {
			if gpu.Ident.Asset != asset {
				continue
			}
			serial, uuid := DemoReplacement(asset)
			g.mu.Lock()
			gpu.Ident.Serial, gpu.Ident.UUID = serial, uuid
			id := gpu.Ident
			g.mu.Unlock()
			g.invDue.Store(true)
			return id, nil
		}
	}
	return wire.GPUIdentity{}, fmt.Errorf("swap: no GPU %s in the fleet", asset)
}

// DemoReplacement is the serial and UUID of the card SwapGPU puts into
// asset's slot.
func DemoReplacement(asset string) (serial, uuid string) {
	sum := sha256.Sum256([]byte("twinchain demo replacement " + asset))
	a, b := binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:16])
	return fmt.Sprintf("1655%09d", binary.BigEndian.Uint64(sum[16:24])%1e9),
		fmt.Sprintf("GPU-%08x-%04x-%04x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

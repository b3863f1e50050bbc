package fleet

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// Play performs st on the fleet's own gateways: their next readings
// (signed by their own keys, with their next sequence numbers, by the
// fleet's publisher) show it. It returns what it did, and the gateways
// that will report it.
func (f *Fleet) Play(st Step) (did string, gws []*Gateway, err error) {
	if err := st.Validate(); err != nil {
		return "", nil, err
	}
	switch st.Action {
	case "swap_gpu":
		g, gpu, err := f.gpu(st.Target)
		if err != nil {
			return "", nil, err
		}
		g.mu.Lock()
		g.played++
		gpu.Ident.Serial, gpu.Ident.UUID = replacement(st.Target, g.played)
		id := gpu.Ident
		g.mu.Unlock()
		g.invDue.Store(true)
		return fmt.Sprintf("swapped %s: now serial %s, UUID %s", st.Target, id.Serial, id.UUID), []*Gateway{g}, nil
	case "exchange_gpu":
		g1, gpu1, err := f.gpu(st.Target)
		if err != nil {
			return "", nil, err
		}
		g2, gpu2, err := f.gpu(st.With)
		if err != nil {
			return "", nil, err
		}
		if gpu1 == gpu2 {
			return "", nil, fmt.Errorf("exchange_gpu: %s with itself", st.Target)
		}
		g1.mu.Lock()
		a := gpu1.Ident
		g1.mu.Unlock()
		g2.mu.Lock()
		b := gpu2.Ident
		gpu2.Ident.UUID, gpu2.Ident.Serial = a.UUID, a.Serial
		g2.mu.Unlock()
		g1.mu.Lock()
		gpu1.Ident.UUID, gpu1.Ident.Serial = b.UUID, b.Serial
		g1.mu.Unlock()
		g1.invDue.Store(true)
		g2.invDue.Store(true)
		return fmt.Sprintf("exchanged the boards of %s and %s", st.Target, st.With), []*Gateway{g1, g2}, nil
	case "flash_firmware":
		return f.flash(st)
	case "theft":
		g, err := f.gateway(st.Target)
		if err != nil {
			return "", nil, err
		}
		if g.Host != nil {
			return "", nil, fmt.Errorf("theft needs a site gateway with GPS, not %s", st.Target)
		}
		speed := st.SpeedMS
		if speed == 0 {
			speed = 15
		}
		g.mu.Lock()
		g.fx.theft = &theftFx{speed: speed, heading: st.Heading, lat0: g.Site.Lat, lon0: g.Site.Lon}
		g.mu.Unlock()
		return fmt.Sprintf("%s is carried off from site %s at %g m/s heading %g°", st.Target, g.Site.ID, speed, st.Heading), []*Gateway{g}, nil
	case "move_rack":
		h, err := f.host(st.Target)
		if err != nil {
			return "", nil, err
		}
		d, err := f.dock(h.Site.ID)
		if err != nil {
			return "", nil, err
		}
		every := st.Every
		if every == 0 {
			every = 20 * time.Second
		}
		var reads []timedRead
		for i, p := range st.Path {
			reads = append(reads, d.rackRead(time.Duration(i)*every, h.Host.Info.RFIDTag, p.ReadPoint, p.Zone))
		}
		if err := d.queueReads(reads...); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("%s moves past %d read points, one every %s, read by %s", st.Target, len(st.Path), every, d.ID), []*Gateway{d}, nil
	case "clone_tag":
		h, err := f.host(st.Target)
		if err != nil {
			return "", nil, err
		}
		home, err := f.dock(h.Site.ID)
		if err != nil {
			return "", nil, err
		}
		other, err := f.dock(st.Site)
		if err != nil {
			return "", nil, err
		}
		tag := h.Host.Info.RFIDTag
		if err := home.queueReads(home.rackRead(0, tag, home.Site.ID+"-hall-door", home.Site.Zone)); err != nil {
			return "", nil, err
		}
		if err := other.queueReads(other.rackRead(2*time.Second, tag, other.Site.ID+"-hall-door", other.Site.Zone)); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("%s's tag read at %s and, 2 s later, at %s", st.Target, home.Site.ID, other.Site.ID), []*Gateway{home, other}, nil
	case "drift":
		g, _, err := f.gpu(st.Target)
		if err != nil {
			return "", nil, err
		}
		rate := st.Rate
		if rate == 0 {
			rate = 1
		}
		g.mu.Lock()
		if g.fx.drift == nil {
			g.fx.drift = map[string]rampFx{}
		}
		g.fx.drift[st.Target] = rampFx{rate: rate}
		g.mu.Unlock()
		return fmt.Sprintf("%s's temperature sensor drifts %g °C a minute", st.Target, rate), []*Gateway{g}, nil
	case "warm":
		var gws []*Gateway
		for _, g := range f.Gateways {
			if g.Host != nil && (g.Host.Info.Rack == st.Target || g.Host.Info.Asset == st.Target) {
				g.mu.Lock()
				g.fx.warm = &rampFx{rate: st.Rate}
				g.mu.Unlock()
				gws = append(gws, g)
			}
		}
		if len(gws) == 0 {
			return "", nil, fmt.Errorf("no rack or server %s in the fleet", st.Target)
		}
		return fmt.Sprintf("%s warms %g °C a minute (%d servers)", st.Target, st.Rate, len(gws)), gws, nil
	case "xid":
		g, gpu, err := f.gpu(st.Target)
		if err != nil {
			return "", nil, err
		}
		var xids []int
		if st.XID > 0 {
			xids = append(xids, st.XID)
		}
		xids = append(xids, st.XIDs...) // in the same sample: one must not hide another
		g.mu.Lock()
		for _, x := range xids {
			gpu.InjectXID(x)
		}
		g.mu.Unlock()
		return fmt.Sprintf("XID %v on %s", xids, st.Target), []*Gateway{g}, nil
	case "overheat":
		g, _, err := f.gpu(st.Target)
		if err != nil {
			return "", nil, err
		}
		c := st.TempC
		if c == 0 {
			c = 97
		}
		g.mu.Lock()
		if g.fx.hot == nil {
			g.fx.hot = map[string]float64{}
		}
		g.fx.hot[st.Target] = c
		g.mu.Unlock()
		return fmt.Sprintf("%s held at %g °C", st.Target, c), []*Gateway{g}, nil
	case "silence":
		g, err := f.gateway(st.Target)
		if err != nil {
			return "", nil, err
		}
		g.mu.Lock()
		g.fx.silent = true
		g.mu.Unlock()
		return fmt.Sprintf("%s falls silent (connected, publishing nothing) until the fleet restarts", st.Target), []*Gateway{g}, nil
	case "clock_jump":
		g, err := f.gateway(st.Target)
		if err != nil {
			return "", nil, err
		}
		g.mu.Lock()
		off := g.fx.offset + st.Offset
		if off < -maxClockOffset || off > maxClockOffset {
			g.mu.Unlock()
			return "", nil, fmt.Errorf("%s's clock would be off by %s: at most ±%s in all", st.Target, off, maxClockOffset)
		}
		g.fx.offset = off
		g.mu.Unlock()
		return fmt.Sprintf("%s's clock is off by %s", st.Target, off), []*Gateway{g}, nil
	}
	return "", nil, fmt.Errorf("action %q: not played on the running fleet", st.Action)
}

func (f *Fleet) flash(st Step) (string, []*Gateway, error) {
	if st.Part == "bios" || st.Part == "bmc" {
		g, err := f.host(st.Target)
		if err != nil {
			return "", nil, err
		}
		g.mu.Lock()
		if st.Part == "bios" {
			g.Host.Info.BIOSVersion = st.Version
		} else {
			g.Host.Info.BMCVersion = st.Version
		}
		g.mu.Unlock()
		g.invDue.Store(true)
		return fmt.Sprintf("flashed %s %s on %s", st.Part, st.Version, st.Target), []*Gateway{g}, nil
	}
	g, gpu, err := f.gpu(st.Target)
	if err != nil {
		return "", nil, err
	}
	g.mu.Lock()
	FlashGPU(&gpu.Ident, st.Part, st.Version)
	g.mu.Unlock()
	g.invDue.Store(true)
	return fmt.Sprintf("flashed %s %s on %s", st.Part, st.Version, st.Target), []*Gateway{g}, nil
}

// replacement is the serial and UUID of the n-th board a played swap puts
// into asset's slot.
func replacement(asset string, n int) (serial, uuid string) {
	sum := sha256.Sum256(fmt.Appendf(nil, "twinchain played swap %s %d", asset, n))
	a, b := binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:16])
	return fmt.Sprintf("1656%09d", binary.BigEndian.Uint64(sum[16:24])%1e9),
		fmt.Sprintf("GPU-5ca1ab1e-%04x-%04x-%04x-%012x", a&0xffff, (a>>16)&0xffff, b>>48, b&0xffffffffffff)
}

func (g *Gateway) rackRead(delay time.Duration, epc, readPoint, zone string) timedRead {
	return timedRead{delay: delay, read: wireRead(g.ID+"-uhf", readPoint, zone, epc)}
}

// maxClockOffset bounds the clock jumps played on one gateway, in all.
const maxClockOffset = 7 * 24 * time.Hour

// maxQueuedReads bounds the played reads a site gateway still has to report.
const maxQueuedReads = 1024

func (g *Gateway) queueReads(r ...timedRead) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.fx.reads)+len(r) > maxQueuedReads {
		return fmt.Errorf("%s has %d played RFID reads still to report: at most %d", g.ID, len(g.fx.reads), maxQueuedReads)
	}
	g.fx.reads = append(g.fx.reads, r...)
	return nil
}

func (f *Fleet) gateway(id string) (*Gateway, error) {
	for _, g := range f.Gateways {
		if g.ID == id {
			return g, nil
		}
	}
	return nil, fmt.Errorf("no gateway %s in the fleet", id)
}

// dock is the site gateway (GPS + RFID) of a site.
func (f *Fleet) dock(site string) (*Gateway, error) { return f.gateway("gw-" + site + "-dock") }

// host is the gateway of a server asset.
func (f *Fleet) host(id string) (*Gateway, error) {
	for _, g := range f.Gateways {
		if g.Host != nil && g.Host.Info.Asset == id {
			return g, nil
		}
	}
	return nil, fmt.Errorf("no server %s in the fleet", id)
}

// gpu finds the gateway and GPU of a GPU asset id.
func (f *Fleet) gpu(id string) (*Gateway, *GPU, error) {
	for _, g := range f.Gateways {
		if gpu := g.GPU(id); gpu != nil {
			return g, gpu, nil
		}
	}
	return nil, nil, fmt.Errorf("no GPU %s in the fleet", id)
}

// Check reports whether Play would take st: its shape, and that the fleet
// has its targets. It changes nothing.
func (f *Fleet) Check(st Step) error {
	if err := st.Validate(); err != nil {
		return err
	}
	var err error
	switch st.Action {
	case "swap_gpu", "drift", "xid", "overheat":
		_, _, err = f.gpu(st.Target)
	case "exchange_gpu":
		if _, _, err = f.gpu(st.Target); err == nil {
			_, _, err = f.gpu(st.With)
		}
	case "flash_firmware":
		if st.Part == "bios" || st.Part == "bmc" {
			_, err = f.host(st.Target)
		} else {
			_, _, err = f.gpu(st.Target)
		}
	case "theft":
		var g *Gateway
		if g, err = f.gateway(st.Target); err == nil && g.Host != nil {
			err = fmt.Errorf("theft needs a site gateway with GPS, not %s", st.Target)
		}
	case "move_rack", "clone_tag":
		var h *Gateway
		if h, err = f.host(st.Target); err == nil {
			_, err = f.dock(h.Site.ID)
		}
		if err == nil && st.Action == "clone_tag" {
			_, err = f.dock(st.Site)
		}
	case "warm":
		err = fmt.Errorf("no rack or server %s in the fleet", st.Target)
		for _, g := range f.Gateways {
			if g.Host != nil && (g.Host.Info.Rack == st.Target || g.Host.Info.Asset == st.Target) {
				err = nil
			}
		}
	default: // silence, clock_jump
		_, err = f.gateway(st.Target)
	}
	return err
}

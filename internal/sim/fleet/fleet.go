// Package fleet is a simulated fleet of sites, GPU servers and gateways that
// speaks exactly as edge agents do: it builds real signed, sequenced
// envelopes with plausible readings. Everything is reproducible from a seed:
// the gateways' keys, the hardware identities and the readings.
package fleet

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"twinchain/internal/wire"
)

// Config says how big the fleet is and how it behaves.
type Config struct {
	Sites          int   // sites s1..sN
	ServersPerSite int   // GPU servers per site
	GPUsPerServer  int   // GPUs in each server
	Seed           int64 // same seed, same fleet and readings
	// SiteGateways adds one gateway per site with a GPS receiver and an RFID
	// reader at the hall entrance (gw-s1-dock).
	SiteGateways bool
}

// DefaultConfig is the fleet `make run` starts: small, but every kind of message.
func DefaultConfig() Config {
	return Config{Sites: 2, ServersPerSite: 4, GPUsPerServer: 8, Seed: 1, SiteGateways: true}
}

// Validate checks the sizes.
func (c Config) Validate() error {
	switch {
	case c.Sites < 1 || c.Sites > 99:
		return fmt.Errorf("fleet: sites = %d, want 1..99", c.Sites)
	case c.ServersPerSite < 0 || c.ServersPerSite > 9999:
		return fmt.Errorf("fleet: servers per site = %d, want 0..9999", c.ServersPerSite)
	case c.GPUsPerServer < 0 || c.GPUsPerServer > 16:
		return fmt.Errorf("fleet: GPUs per server = %d, want 0..16", c.GPUsPerServer)
	}
	return nil
}

// Site is one location with a position.
type Site struct {
	ID       string
	Lat, Lon float64
	Zone     string // the hall where the servers stand
}

var siteCoords = [][2]float64{{52.5200, 13.4050}, {50.1109, 8.6821}, {48.1351, 11.5820}, {53.5511, 9.9937}}

// Fleet is the simulated hardware and its gateways.
type Fleet struct {
	Sites    []Site
	Gateways []*Gateway
}

// Gateway is one simulated edge agent: a GPU host's agent (Host set) or a
// site gateway with GPS and RFID (Host nil).
type Gateway struct {
	ID   string
	Key  ed25519.PrivateKey
	Site Site
	Host *Host

	mu  sync.Mutex
	seq uint64
	rng *rand.Rand
	// Tags are the RFID tags a site gateway's reader sees (the site's servers).
	Tags []string
	// invDue asks the publisher for an inventory report now (a swapped GPU).
	invDue atomic.Bool
	// fx is what played steps do to its readings (Fleet.Play); played
	// counts its played swaps.
	fx     effects
	played int
}

// Host is a GPU server.
type Host struct {
	Info wire.HostInfo
	GPUs []*GPU
}

// GPU is one simulated GPU: its identity and the state its readings follow.
type GPU struct {
	Ident wire.GPUIdentity

	busy       bool
	jobLeft    float64 // seconds of the current job or idle spell
	util       float64
	temp       float64
	sbe, dbe   uint64
	replays    uint64
	xidCount   uint64
	lastXID    int
	xids       []int // the newest XIDs, oldest first
	retired    int
	remapped   int
	powerLimit float64
}

var pciBuses = []string{"18", "2a", "3a", "5d", "9a", "ab", "ba", "db", "1b", "2b", "3b", "5e", "9b", "ac", "bb", "dc"}

// New builds the fleet for cfg. It does no I/O.
func New(cfg Config) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x7477696e636861))
	f := &Fleet{}
	for s := 0; s < cfg.Sites; s++ {
		c := siteCoords[s%len(siteCoords)]
		site := Site{ID: fmt.Sprintf("s%d", s+1), Lat: c[0] + float64(s/len(siteCoords)), Lon: c[1], Zone: fmt.Sprintf("s%d-hall", s+1)}
		f.Sites = append(f.Sites, site)
		var tags []string
		for n := 0; n < cfg.ServersPerSite; n++ {
			hostID := fmt.Sprintf("srv-%s-%03d", site.ID, n+1)
			h := &Host{Info: wire.HostInfo{
				Asset:       hostID,
				Hostname:    fmt.Sprintf("gpu-%s-%03d", site.ID, n+1),
				Serial:      fmt.Sprintf("SRV%08d", rng.IntN(1e8)),
				BoardPart:   "965-24387-0002-000",
				RFIDTag:     fmt.Sprintf("E28011606000%012X", rng.Uint64()&0xffffffffffff),
				Rack:        fmt.Sprintf("%s-r%02d", site.ID, n/8+1),
				BIOSVersion: "1.5.2",
				BMCVersion:  "24.09.17",
			}}
			tags = append(tags, h.Info.RFIDTag)
			for i := 0; i < cfg.GPUsPerServer; i++ {
				h.GPUs = append(h.GPUs, &GPU{
					Ident: wire.GPUIdentity{
						Asset:           fmt.Sprintf("%s.gpu%d", hostID, i),
						Index:           i,
						Name:            "NVIDIA H100 80GB HBM3",
						UUID:            uuidFrom(rng),
						Serial:          fmt.Sprintf("1654%09d", rng.IntN(1e9)),
						PCIBusID:        fmt.Sprintf("00000000:%s:00.0", pciBuses[i%len(pciBuses)]),
						BoardPartNumber: "692-2G520-0200-000",
						VBIOS:           "96.00.74.00.1C",
						Driver:          "550.54.15",
						InfoROM:         "G520.0200.00.05",
					},
					temp:       30 + rng.Float64()*5,
					powerLimit: 700,
				})
			}
			f.Gateways = append(f.Gateways, newGateway("gw-"+hostID, site, h, cfg.Seed))
		}
		if cfg.SiteGateways {
			g := newGateway("gw-"+site.ID+"-dock", site, nil, cfg.Seed)
			g.Tags = tags
			f.Gateways = append(f.Gateways, g)
		}
	}
	return f, nil
}

func newGateway(id string, site Site, h *Host, seed int64) *Gateway {
	// The key comes from the seed and the id, so a restarted simulator
	// matches the registry it wrote before.
	s := sha256.Sum256(fmt.Appendf(nil, "twinchain fleet key %d %s", seed, id))
	idSum := sha256.Sum256([]byte(id))
	return &Gateway{
		ID:   id,
		Key:  ed25519.NewKeyFromSeed(s[:]),
		Site: site,
		Host: h,
		rng:  rand.New(rand.NewPCG(uint64(seed), binary.LittleEndian.Uint64(idSum[:8]))),
	}
}

func uuidFrom(rng *rand.Rand) string {
	a, b := rng.Uint64(), rng.Uint64()
	return fmt.Sprintf("GPU-%08x-%04x-%04x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

// Credentials are the gateway's MQTT username and password for a connect at
// now: password, when set (a broker with a password file), else a connect
// password signed by its key (twin-service's embedded broker).
func (g *Gateway) Credentials(password string, now time.Time) (string, string) {
	if password != "" {
		return g.ID, password
	}
	return g.ID, wire.ConnectPassword(g.Key, g.ID, now)
}

// PublicKey is the gateway's Ed25519 public key.
func (g *Gateway) PublicKey() ed25519.PublicKey { return g.Key.Public().(ed25519.PublicKey) }

// Assets lists the asset ids the gateway reports: its host and GPUs, or for a
// site gateway itself.
func (g *Gateway) Assets() []string {
	if g.Host == nil {
		return []string{g.ID}
	}
	ids := []string{g.Host.Info.Asset}
	for _, gpu := range g.Host.GPUs {
		ids = append(ids, gpu.Ident.Asset)
	}
	return ids
}

// SetSeq sets the last sequence number used; the next message gets seq+1.
func (g *Gateway) SetSeq(seq uint64) {
	g.mu.Lock()
	g.seq = seq
	g.mu.Unlock()
}

// Seq is the last sequence number used.
func (g *Gateway) Seq() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seq
}

// Seal signs body as the gateway's next message. It returns the envelope
// bytes, the topic and the sequence number.
func (g *Gateway) Seal(kind wire.Kind, t time.Time, body any) (data []byte, topic string, seq uint64, err error) {
	g.mu.Lock()
	g.seq++
	seq = g.seq
	g.mu.Unlock()
	data, err = wire.Seal(g.Key, g.ID, seq, t, kind, body)
	return data, wire.Topic(g.ID, kind), seq, err
}

// Will is the signed last-will "offline" status (sequence 0).
func (g *Gateway) Will(t time.Time) ([]byte, string, error) {
	data, err := wire.Seal(g.Key, g.ID, 0, t, wire.KindStatus, wire.Status{State: wire.StateOffline, Reason: "connection lost"})
	return data, wire.Topic(g.ID, wire.KindStatus), err
}

// Inventory is the host's identity and firmware (nil for a site gateway).
func (g *Gateway) Inventory() *wire.Inventory {
	if g.Host == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	inv := &wire.Inventory{Host: g.Host.Info}
	for _, gpu := range g.Host.GPUs {
		inv.GPUs = append(inv.GPUs, gpu.Ident)
	}
	return inv
}

// Sample advances every GPU of the host by dt and returns their readings at t.
// Load comes in jobs; power tracks utilisation; temperature follows power
// with a lag; single-bit ECC errors are rare.
func (g *Gateway) Sample(t time.Time, dt time.Duration) *wire.Telemetry {
	if g.Host == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	sec := dt.Seconds()
	tel := &wire.Telemetry{Host: g.Host.Info.Asset, GPUs: make([]wire.GPUSample, 0, len(g.Host.GPUs))}
	for _, gpu := range g.Host.GPUs {
		tel.GPUs = append(tel.GPUs, gpu.step(g.rng, sec))
	}
	g.mangle(tel, t)
	return tel
}

func (gpu *GPU) step(rng *rand.Rand, sec float64) wire.GPUSample {
	gpu.jobLeft -= sec
	if gpu.jobLeft <= 0 {
		gpu.busy = rng.Float64() < 0.75
		if gpu.busy {
			gpu.jobLeft = rng.ExpFloat64() * 1800
		} else {
			gpu.jobLeft = rng.ExpFloat64() * 300
		}
	}
	target := 2 + rng.Float64()*3
	if gpu.busy {
		target = 85 + rng.NormFloat64()*5
	}
	gpu.util += (target - gpu.util) * math.Min(1, sec/5)
	gpu.util = clamp(gpu.util, 0, 100)
	power := 70 + gpu.util*6.0 + rng.NormFloat64()*8
	power = clamp(power, 50, gpu.powerLimit)
	ambient := 26.0
	targetTemp := ambient + power*0.07
	gpu.temp += (targetTemp - gpu.temp) * math.Min(1, sec/60)
	if rng.Float64() < 2e-4*sec {
		gpu.sbe++
	}
	if rng.Float64() < 1e-4*sec {
		gpu.replays++
	}
	s := wire.GPUSample{
		Asset:        gpu.Ident.Asset,
		Index:        gpu.Ident.Index,
		UUID:         gpu.Ident.UUID,
		TempC:        round1(gpu.temp + rng.NormFloat64()*0.3),
		MemTempC:     round1(gpu.temp + 8 + rng.NormFloat64()*0.3),
		PowerW:       round1(power),
		PowerLimitW:  gpu.powerLimit,
		UtilPct:      math.Round(gpu.util),
		MemUtilPct:   math.Round(gpu.util * 0.6),
		SMClockMHz:   345,
		MemClockMHz:  2619,
		ECCSingleBit: gpu.sbe,
		ECCDoubleBit: gpu.dbe,
		RetiredPages: gpu.retired,
		RemappedRows: gpu.remapped,
		LastXID:      gpu.lastXID,
		XIDCount:     gpu.xidCount,
		XIDs:         slices.Clone(gpu.xids),
		PCIeReplays:  gpu.replays,
	}
	if gpu.util > 20 {
		s.SMClockMHz = 1980
	}
	if power >= gpu.powerLimit-5 {
		s.Throttle = []string{wire.ThrottlePowerCap}
	}
	return s
}

// GPU returns the GPU with the given asset id, or nil.
func (g *Gateway) GPU(asset string) *GPU {
	if g.Host == nil {
		return nil
	}
	for _, gpu := range g.Host.GPUs {
		if gpu.Ident.Asset == asset {
			return gpu
		}
	}
	return nil
}

// InjectXID records an XID event on the GPU (e.g. 79: fallen off the bus).
func (gpu *GPU) InjectXID(xid int) {
	gpu.xidCount++
	gpu.lastXID = xid
	gpu.xids = append(gpu.xids, xid)
	gpu.xids = gpu.xids[max(0, len(gpu.xids)-wire.MaxRecentXIDs):]
	if xid == 48 {
		gpu.dbe++
	}
}

// SetTemp forces the GPU's temperature (overheating scenarios).
func (gpu *GPU) SetTemp(c float64) { gpu.temp = c }

// Position is the site gateway's GPS fix at t: the site's position with a
// few metres of receiver jitter.
func (g *Gateway) Position(t time.Time) *wire.GPSFix {
	if g.Host != nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	const metre = 1.0 / 111_320
	fix := &wire.GPSFix{
		Asset: g.ID, Lat: round7(g.Site.Lat + g.rng.NormFloat64()*2*metre), Lon: round7(g.Site.Lon + g.rng.NormFloat64()*2*metre),
		AltM: round1(34 + g.rng.NormFloat64()), Quality: 1, HDOP: round1(0.8 + g.rng.Float64()*0.4), Sats: 9 + g.rng.IntN(5),
		SpeedMS: round1(math.Abs(g.rng.NormFloat64() * 0.1)), CourseDeg: round1(g.rng.Float64() * 360), FixTime: t,
	}
	g.carry(fix, t)
	return fix
}

// Reads is what the site gateway's RFID reader at the hall entrance saw in
// the window ending at t: now and then one of the site's server tags.
func (g *Gateway) Reads(t time.Time, window time.Duration) *wire.RFID {
	if g.Host != nil || len(g.Tags) == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rng.Float64() > 0.3 {
		return nil
	}
	tag := g.Tags[g.rng.IntN(len(g.Tags))]
	n := 1 + g.rng.IntN(6)
	return &wire.RFID{Reads: []wire.RFIDRead{{
		Reader: g.ID + "-uhf", ReadPoint: g.Site.ID + "-hall-door", Zone: g.Site.Zone, EPC: tag,
		RSSI: round1(-50 - g.rng.Float64()*20), Antenna: 1 + g.rng.IntN(4),
		FirstSeen: t.Add(-window / 2), LastSeen: t, Count: n,
	}}}
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
func round1(v float64) float64        { return math.Round(v*10) / 10 }
func round7(v float64) float64        { return math.Round(v*1e7) / 1e7 }

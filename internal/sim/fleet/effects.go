package fleet

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"twinchain/internal/wire"
)

// Step is one scripted incident played on the fleet's own gateways (the
// control socket's request; internal/sim/scenario's steps, less their
// time): what Action does to which Target. The gateways go on signing
// their readings with their own keys and next sequence numbers; only
// what they read changes.
type Step struct {
	Action  string        `json:"action"`
	Target  string        `json:"target"`
	Part    string        `json:"part,omitempty"`     // flash_firmware: vbios, driver, inforom, bios, bmc
	Version string        `json:"version,omitempty"`  // flash_firmware
	XID     int           `json:"xid,omitempty"`      // xid
	XIDs    []int         `json:"xids,omitempty"`     // xid: several in the same sample
	TempC   float64       `json:"temp_c,omitempty"`   // overheat (0: 97 °C)
	Rate    float64       `json:"rate,omitempty"`     // drift, warm: °C a minute
	SpeedMS float64       `json:"speed_ms,omitempty"` // theft (0: 15 m/s)
	Heading float64       `json:"heading,omitempty"`  // theft, degrees
	Every   time.Duration `json:"every,omitempty"`    // move_rack: between read points (0: 20 s)
	Path    []ReadPoint   `json:"path,omitempty"`     // move_rack
	Site    string        `json:"site,omitempty"`     // clone_tag: the other site
	With    string        `json:"with,omitempty"`     // exchange_gpu: the other GPU
	Offset  time.Duration `json:"offset,omitempty"`   // clock_jump
}

// ReadPoint is one RFID read point on a rack's way.
type ReadPoint struct {
	ReadPoint string `yaml:"read_point" json:"read_point"`
	Zone      string `yaml:"zone" json:"zone"`
}

// FleetActions are the step actions the fleet plays on its own gateways.
// The others a scenario knows (forge, replay, unknown_gateway: an
// attacker's messages; offline: a connection dropped without a goodbye)
// need connections of their own: the scenario's own simulated fleet plays
// them.
var FleetActions = []string{
	"swap_gpu", "exchange_gpu", "flash_firmware", "theft", "move_rack", "clone_tag",
	"drift", "warm", "xid", "overheat", "silence", "clock_jump",
}

// Bounds on one step.
const (
	maxPath  = 64
	maxXIDs  = 16
	maxField = 200
)

// Validate checks a step's shape and bounds (not whether its target exists:
// Fleet.Play does).
func (s *Step) Validate() error {
	if !slices.Contains(FleetActions, s.Action) {
		return fmt.Errorf("action %q is not played on the running fleet (it plays %s)", s.Action, strings.Join(FleetActions, ", "))
	}
	for _, f := range []string{s.Target, s.Part, s.Version, s.Site, s.With} {
		if len(f) > maxField {
			return fmt.Errorf("a field is longer than %d bytes", maxField)
		}
	}
	if s.Target == "" {
		return fmt.Errorf("target is required")
	}
	if len(s.Path) > maxPath || len(s.XIDs) > maxXIDs {
		return fmt.Errorf("at most %d read points and %d XIDs", maxPath, maxXIDs)
	}
	for _, x := range append([]int{s.XID}, s.XIDs...) {
		if x < 0 || x > 1000 {
			return fmt.Errorf("xid %d: want 1..1000", x)
		}
	}
	for _, v := range []float64{s.TempC, s.Rate, s.SpeedMS, s.Heading} {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e4 {
			return fmt.Errorf("a number is out of range (|x| <= 10000)")
		}
	}
	if s.Every < 0 || s.Every > time.Hour || s.Offset < -24*time.Hour || s.Offset > 24*time.Hour {
		return fmt.Errorf("every must be within 0..1h, offset within ±24h")
	}
	switch s.Action {
	case "flash_firmware":
		if !slices.Contains(FirmwareParts, s.Part) || s.Version == "" {
			return fmt.Errorf("flash_firmware needs part (%s) and version", strings.Join(FirmwareParts, ", "))
		}
	case "xid":
		if s.XID <= 0 && len(s.XIDs) == 0 {
			return fmt.Errorf("xid needs xid or xids")
		}
	case "exchange_gpu":
		if s.With == "" {
			return fmt.Errorf("exchange_gpu needs with (the other GPU)")
		}
	case "clock_jump":
		if s.Offset == 0 {
			return fmt.Errorf("clock_jump needs offset")
		}
	case "warm":
		if s.Rate == 0 {
			return fmt.Errorf("warm needs rate (°C a minute)")
		}
	case "move_rack":
		if len(s.Path) == 0 {
			return fmt.Errorf("move_rack needs a path of read points")
		}
	case "clone_tag":
		if s.Site == "" {
			return fmt.Errorf("clone_tag needs the other site")
		}
	}
	return nil
}

// effects is what played steps do to a gateway's readings from then on,
// under the gateway's lock. A zero start time is set by the first reading
// after the step.
type effects struct {
	theft  *theftFx
	drift  map[string]rampFx  // GPU asset -> its sensor drifting
	warm   *rampFx            // every GPU of the host warming
	hot    map[string]float64 // GPU asset -> held temperature
	reads  []timedRead        // RFID reads the site gateway still has to report
	offset time.Duration      // added to every reading time
	silent bool               // publishes nothing
}

type theftFx struct {
	from           time.Time
	speed, heading float64
	lat0, lon0     float64
}

type rampFx struct {
	from time.Time
	rate float64 // °C a minute
}

// timedRead is an RFID read delay after the first reading time the site
// gateway sees once it is queued.
type timedRead struct {
	at    time.Time
	delay time.Duration
	read  wire.RFIDRead
}

func wireRead(reader, readPoint, zone, epc string) wire.RFIDRead {
	return wire.RFIDRead{Reader: reader, ReadPoint: readPoint, Zone: zone, EPC: epc, RSSI: -55, Antenna: 1, Count: 4}
}

const metrePerDegLat = 111_320.0

// CarriedOff is the position d metres from lat0, lon0 along heading
// (degrees from north): where a stolen receiver is.
func CarriedOff(lat0, lon0, d, heading float64) (lat, lon float64) {
	rad := heading * math.Pi / 180
	return lat0 + d*math.Cos(rad)/metrePerDegLat, lon0 + d*math.Sin(rad)/(metrePerDegLat*math.Cos(lat0*math.Pi/180))
}

// Overheat holds a GPU sample at c °C (memory 8 °C above, noise added to
// the core), thermally throttled.
func Overheat(s *wire.GPUSample, c, noise float64) {
	s.TempC, s.MemTempC = c+noise, c+8
	s.Throttle = []string{wire.ThrottleHWThermal, wire.ThrottleSWThermal}
	s.SMClockMHz = 900
}

func since(from *time.Time, t time.Time) time.Duration {
	if from.IsZero() {
		*from = t
	}
	return t.Sub(*from)
}

// mangle applies drift, warming and overheating to the host's sample at t;
// the caller holds g.mu.
func (g *Gateway) mangle(tel *wire.Telemetry, t time.Time) {
	fx := &g.fx
	for i := range tel.GPUs {
		s := &tel.GPUs[i]
		if d, ok := fx.drift[s.Asset]; ok {
			s.TempC = round1(s.TempC + d.rate*since(&d.from, t).Minutes())
			fx.drift[s.Asset] = d
		}
		if fx.warm != nil {
			up := fx.warm.rate * since(&fx.warm.from, t).Minutes()
			s.TempC, s.MemTempC = round1(s.TempC+up), round1(s.MemTempC+up)
		}
		if c, ok := fx.hot[s.Asset]; ok {
			Overheat(s, c, g.rng.NormFloat64()*0.3)
		}
	}
}

// carry moves a site gateway's fix at t when it is being carried off; the
// caller holds g.mu.
func (g *Gateway) carry(fix *wire.GPSFix, t time.Time) {
	th := g.fx.theft
	if th == nil {
		return
	}
	fix.Lat, fix.Lon = CarriedOff(th.lat0, th.lon0, th.speed*since(&th.from, t).Seconds(), th.heading)
	fix.Lat, fix.Lon = round7(fix.Lat), round7(fix.Lon)
	fix.SpeedMS, fix.CourseDeg = th.speed, th.heading
}

// DueReads is what the site gateway's reader reports at t of the reads
// played steps queued (a rack passing read points, a cloned tag), or nil.
func (g *Gateway) DueReads(t time.Time) *wire.RFID {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []wire.RFIDRead
	rest := g.fx.reads[:0]
	for _, r := range g.fx.reads {
		if r.at.IsZero() {
			r.at = t.Add(r.delay)
		}
		if r.at.After(t) {
			rest = append(rest, r)
			continue
		}
		rd := r.read
		rd.FirstSeen, rd.LastSeen = t.Add(-time.Second), t
		out = append(out, rd)
	}
	g.fx.reads = rest
	if len(out) == 0 {
		return nil
	}
	return &wire.RFID{Reads: out}
}

// ClockOffset is what a played clock_jump added to the gateway's reading
// times.
func (g *Gateway) ClockOffset() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fx.offset
}

// Silent reports whether a played step silenced the gateway.
func (g *Gateway) Silent() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fx.silent
}

// FirmwareParts are what a flash_firmware step flashes: bios and bmc on
// the host, the others on a GPU.
var FirmwareParts = []string{"vbios", "driver", "inforom", "bios", "bmc"}

// FlashGPU sets a GPU part's version (vbios, driver or inforom).
func FlashGPU(id *wire.GPUIdentity, part, version string) {
	switch part {
	case "vbios":
		id.VBIOS = version
	case "driver":
		id.Driver = version
	case "inforom":
		id.InfoROM = version
	}
}

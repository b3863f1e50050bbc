package scenario

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/detect/workorder"
	"twinchain/internal/sim/fleet"
	"twinchain/internal/wire"
)

// Options say where a scenario plays.
type Options struct {
	Broker string // MQTT broker URL, e.g. tcp://127.0.0.1:1883
	API    string // twin-service base URL, for work orders, e.g. http://127.0.0.1:8080
	// Tokens are the API bearer tokens: one that may read, and two people
	// for work orders (one opens them, another approves).
	Tokens Tokens
	Log    *slog.Logger
	// Start is the simulated time of the first reading; zero: now minus
	// the duration, so that readings never lie in the future.
	Start time.Time
	// Hold keeps the fleet publishing (heartbeats, telemetry) for this much
	// real time after the script ends, at the same speed, while alerts land.
	Hold time.Duration
}

// Tokens are twin-service API tokens.
type Tokens struct {
	Read, Create, Approve string
}

// StepReport is when a step ran, in simulated and real time.
type StepReport struct {
	Index  int       `json:"index"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Sim    time.Time `json:"sim"`
	Wall   time.Time `json:"wall"`
}

// Report is what a run did.
type Report struct {
	Name      string       `json:"name"`
	Start     time.Time    `json:"start"` // simulated
	End       time.Time    `json:"end"`
	WallStart time.Time    `json:"wall_start"`
	WallEnd   time.Time    `json:"wall_end"`
	Gateways  int          `json:"gateways"`
	GPUs      int          `json:"gpus"`
	Steps     []StepReport `json:"steps"`
	Sent      uint64       `json:"sent"`
	Acked     uint64       `json:"acked"`
	Failed    uint64       `json:"failed"`
	Abandoned uint64       `json:"abandoned"` // in flight when their gateway went offline
	Refused   int          `json:"refused"`   // connections the broker refused (unknown_gateway)
}

// NewFleet builds the scenario's fleet (for its registry, before Run).
func (f *File) NewFleet() (*fleet.Fleet, error) {
	site := true
	if f.Fleet.SiteGateways != nil {
		site = *f.Fleet.SiteGateways
	}
	return fleet.New(fleet.Config{Sites: f.Fleet.Sites, ServersPerSite: f.Fleet.Servers, GPUsPerServer: f.Fleet.GPUs, Seed: f.Fleet.Seed, SiteGateways: site})
}

// sim is one gateway in a run.
type sim struct {
	gw       *fleet.Gateway
	client   mqtt.Client
	mu       sync.Mutex
	conn     net.Conn
	dead     bool // offline: refuse to reconnect
	stopped  bool
	capture  int // messages still to capture for a replay
	captured []captured
	invDue   bool
	theft    *theft
	drift    map[string]drift
	hot      map[string]float64
	offset   time.Duration // clock_jump: added to every reading time
}

type captured struct {
	topic string
	data  []byte
}

type theft struct {
	from           time.Time
	speed, heading float64
	lat0, lon0     float64
}

type drift struct {
	from time.Time
	rate float64
}

// warming heats every GPU (both sensors) of a rack or server.
type warming struct {
	target string // rack or server id
	from   time.Time
	rate   float64 // °C a minute
}

type pend struct {
	tok mqtt.Token
	s   *sim // nil for a client of no gateway
}

type rackRead struct {
	at        time.Time
	by        *sim
	epc       string
	readPoint string
	zone      string
}

type runner struct {
	f         *File
	opts      Options
	fleet     *fleet.Fleet
	sims      map[string]*sim
	order     []*sim
	ticks     [][]pend // publishes of the ticks not yet acknowledged, oldest first
	rng       *rand.Rand
	reads     []rackRead
	warms     []warming
	extra     []mqtt.Client
	report    Report
	sent      atomic.Uint64
	acked     atomic.Uint64
	failed    atomic.Uint64
	abandoned atomic.Uint64
}

// Run plays f against the broker and returns what it did. The fleet must
// already be registered with twin-service (see File.NewFleet and Registry).
func Run(ctx context.Context, f *File, opts Options) (*Report, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	fl, err := f.NewFleet()
	if err != nil {
		return nil, err
	}
	wallStart := time.Now()
	start := opts.Start
	if start.IsZero() {
		start = wallStart.Add(-f.Duration - opts.Hold*time.Duration(f.Speed)).UTC().Truncate(time.Second)
	}
	r := &runner{f: f, opts: opts, fleet: fl, sims: map[string]*sim{}, rng: rand.New(rand.NewPCG(uint64(f.Fleet.Seed), 42))}
	r.report = Report{Name: f.Name, Start: start, WallStart: wallStart, Gateways: len(fl.Gateways)}
	if err := r.fileWorkOrders(ctx, start); err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range r.order {
			s.client.Disconnect(100)
		}
		for _, c := range r.extra {
			c.Disconnect(100)
		}
	}()
	seqBase := uint64(wallStart.UnixMilli())
	for _, g := range fl.Gateways {
		s := &sim{gw: g, drift: map[string]drift{}, hot: map[string]float64{}}
		for _, st := range f.Steps {
			if st.Action == "replay" && st.Target == g.ID {
				s.capture = max(st.Count, 1)
			}
		}
		if g.Host != nil {
			r.report.GPUs += len(g.Host.GPUs)
		}
		g.SetSeq(seqBase)
		if err := r.connect(ctx, s); err != nil {
			return nil, err
		}
		r.sims[g.ID] = s
		r.order = append(r.order, s)
	}
	err = r.loop(ctx, start)
	r.report.End = start.Add(f.Duration)
	r.report.WallEnd = time.Now()
	r.report.Sent = r.sent.Load()
	r.drain(0)
	r.report.Acked, r.report.Failed, r.report.Abandoned = r.acked.Load(), r.failed.Load(), r.abandoned.Load()
	return &r.report, err
}

func (r *runner) connect(ctx context.Context, s *sim) error {
	will, willTopic, err := s.gw.Will(time.Now().UTC())
	if err != nil {
		return err
	}
	u, err := url.Parse(r.opts.Broker)
	if err != nil {
		return fmt.Errorf("broker url: %w", err)
	}
	opts := mqtt.NewClientOptions().AddBroker(r.opts.Broker).SetClientID(s.gw.ID).
		SetCredentialsProvider(func() (string, string) { return s.gw.Credentials("", time.Now()) }).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200*time.Millisecond).
		SetMaxReconnectInterval(time.Second).SetKeepAlive(30*time.Second).SetBinaryWill(willTopic, will, 1, false).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.dead {
				return nil, errors.New("gateway is offline (scenario)")
			}
			c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
			if err == nil {
				s.conn = c
			}
			return c, err
		})
	s.client = mqtt.NewClient(opts)
	tok := s.client.Connect()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("connect %s to %s: timed out", s.gw.ID, r.opts.Broker)
	}
}

// publish seals body as the gateway's next message and sends it.
func (r *runner) publish(s *sim, kind wire.Kind, t time.Time, body any) error {
	data, topic, _, err := s.gw.Seal(kind, t.Add(s.offset), body)
	if err != nil {
		return err
	}
	if s.capture > 0 {
		s.capture--
		s.captured = append(s.captured, captured{topic, data})
	}
	r.sendAs(s, s.client, topic, data)
	return nil
}

func (r *runner) send(c mqtt.Client, topic string, data []byte) { r.sendAs(nil, c, topic, data) }

func (r *runner) sendAs(s *sim, c mqtt.Client, topic string, data []byte) {
	r.sent.Add(1)
	tok := c.Publish(topic, 1, false, data)
	if len(r.ticks) == 0 {
		r.ticks = append(r.ticks, nil)
	}
	r.ticks[len(r.ticks)-1] = append(r.ticks[len(r.ticks)-1], pend{tok, s})
}

// maxLagTicks bounds how many ticks may wait for acknowledgements: when
// twin-service cannot keep up with the requested speed, the simulation
// slows down instead of queueing (so reading times stay close to when
// they are stored, as with real agents).
const maxLagTicks = 3

// drain waits for the acknowledgements of all but the newest keep ticks.
func (r *runner) drain(keep int) {
	for len(r.ticks) > keep {
		for _, p := range r.ticks[0] {
			tok := p.tok
			if p.s != nil {
				p.s.mu.Lock()
				dead := p.s.dead
				p.s.mu.Unlock()
				if dead && !tok.WaitTimeout(time.Second) {
					r.abandoned.Add(1) // in flight when the gateway dropped off
					continue
				}
			}
			if !tok.WaitTimeout(30 * time.Second) {
				r.failed.Add(1)
				continue
			}
			if tok.Error() != nil {
				r.failed.Add(1)
			} else {
				r.acked.Add(1)
			}
		}
		r.ticks = r.ticks[1:]
	}
}

func (r *runner) loop(ctx context.Context, start time.Time) error {
	f := r.f
	step := time.Duration(float64(time.Second) / f.Rate)
	steps := slices.Clone(f.Steps)
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
	idx := make([]int, len(steps))
	for i := range idx {
		idx[i] = i
	}
	next := 0
	total := f.Duration + time.Duration(float64(r.opts.Hold)*f.Speed)
	wall0 := time.Now()
	lastStatus := map[*sim]time.Time{}
	lastInv := map[*sim]time.Time{}
	for n := 0; ; n++ {
		off := time.Duration(n) * step
		if off > total {
			return nil
		}
		t := start.Add(off)
		r.drain(maxLagTicks)
		r.ticks = append(r.ticks, nil)
		if wait := time.Until(wall0.Add(time.Duration(float64(off) / f.Speed))); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		for next < len(steps) && steps[next].At <= off && off <= f.Duration {
			st := steps[next]
			if err := r.apply(&st, t); err != nil {
				return fmt.Errorf("step %d (%s %s): %w", next, st.Action, st.Target, err)
			}
			r.report.Steps = append(r.report.Steps, StepReport{Index: next, Action: st.Action, Target: st.Target, Sim: t, Wall: time.Now()})
			next++
		}
		for _, s := range r.order {
			if s.stopped {
				continue
			}
			if l, ok := lastStatus[s]; !ok || t.Sub(l) >= 30*time.Second {
				if err := r.publish(s, wire.KindStatus, t, wire.Status{State: wire.StateOnline, AgentVersion: "firmware-sim scenario"}); err != nil {
					return err
				}
				lastStatus[s] = t
			}
			if inv := s.gw.Inventory(); inv != nil {
				if l, ok := lastInv[s]; !ok || s.invDue || t.Sub(l) >= 10*time.Minute {
					if err := r.publish(s, wire.KindFirmware, t, inv); err != nil {
						return err
					}
					lastInv[s], s.invDue = t, false
				}
			}
		}
		if n == 0 {
			// Hosts are inventoried (their tags registered) before a dock
			// reads the tags: RFID never creates assets, and a read of a tag
			// no asset carries yet is an unknown_tags finding.
			r.drain(0)
			r.ticks = append(r.ticks, nil)
		}
		for _, s := range r.order {
			if s.stopped {
				continue
			}
			if tel := s.gw.Sample(t, step); tel != nil {
				r.mangle(s, tel, t)
				if err := r.publish(s, wire.KindTelemetry, t, tel); err != nil {
					return err
				}
			}
			if fix := s.gw.Position(t); fix != nil && n%int(math.Max(1, 10*f.Rate)) == 0 {
				r.move(s, fix, t)
				if err := r.publish(s, wire.KindGPS, t, fix); err != nil {
					return err
				}
			}
			if reads := s.gw.Reads(t, step); reads != nil {
				if err := r.publish(s, wire.KindRFID, t, reads); err != nil {
					return err
				}
			}
		}
		if err := r.rackReads(t); err != nil {
			return err
		}
	}
}

// mangle applies drifting sensors and overheating to a sample.
func (r *runner) mangle(s *sim, tel *wire.Telemetry, t time.Time) {
	for i := range tel.GPUs {
		g := &tel.GPUs[i]
		if d, ok := s.drift[g.Asset]; ok {
			g.TempC = math.Round((g.TempC+d.rate*t.Sub(d.from).Minutes())*10) / 10
		}
		for _, w := range r.warms {
			if h := s.gw.Host; h != nil && (h.Info.Rack == w.target || h.Info.Asset == w.target) && t.After(w.from) {
				up := w.rate * t.Sub(w.from).Minutes()
				g.TempC, g.MemTempC = math.Round((g.TempC+up)*10)/10, math.Round((g.MemTempC+up)*10)/10
			}
		}
		if c, ok := s.hot[g.Asset]; ok {
			fleet.Overheat(g, c, r.rng.NormFloat64()*0.3)
		}
	}
}

const metrePerDegLat = 111_320.0

// move applies a theft's displacement and the file's GPS jitter to a fix.
func (r *runner) move(s *sim, fix *wire.GPSFix, t time.Time) {
	if th := s.theft; th != nil {
		fix.Lat, fix.Lon = fleet.CarriedOff(th.lat0, th.lon0, th.speed*t.Sub(th.from).Seconds(), th.heading)
		fix.SpeedMS, fix.CourseDeg = th.speed, th.heading
	}
	if j := r.f.GPSJitterM; j > 0 {
		fix.Lat += r.rng.NormFloat64() * j / metrePerDegLat
		fix.Lon += r.rng.NormFloat64() * j / (metrePerDegLat * math.Cos(fix.Lat*math.Pi/180))
	}
	fix.Lat, fix.Lon = math.Round(fix.Lat*1e7)/1e7, math.Round(fix.Lon*1e7)/1e7
}

func (r *runner) rackReads(t time.Time) error {
	rest := r.reads[:0]
	for _, rr := range r.reads {
		if rr.at.After(t) {
			rest = append(rest, rr)
			continue
		}
		body := wire.RFID{Reads: []wire.RFIDRead{{Reader: rr.by.gw.ID + "-uhf", ReadPoint: rr.readPoint, Zone: rr.zone, EPC: rr.epc,
			RSSI: -55, Antenna: 1, FirstSeen: t.Add(-time.Second), LastSeen: t, Count: 4}}}
		if !rr.by.stopped {
			if err := r.publish(rr.by, wire.KindRFID, t, body); err != nil {
				return err
			}
		}
	}
	r.reads = rest
	return nil
}

// host finds the gateway and host of a server asset id.
func (r *runner) host(id string) (*sim, error) {
	for _, s := range r.order {
		if s.gw.Host != nil && s.gw.Host.Info.Asset == id {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no server %s in the fleet", id)
}

// gpu finds the gateway and GPU of a GPU asset id.
func (r *runner) gpu(id string) (*sim, *fleet.GPU, error) {
	for _, s := range r.order {
		if g := s.gw.GPU(id); g != nil {
			return s, g, nil
		}
	}
	return nil, nil, fmt.Errorf("no GPU %s in the fleet", id)
}

func (r *runner) gateway(id string) (*sim, error) {
	if s, ok := r.sims[id]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("no gateway %s in the fleet", id)
}

// dock is the site gateway (GPS + RFID) of a site.
func (r *runner) dock(site string) (*sim, error) { return r.gateway("gw-" + site + "-dock") }

func keyFor(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("twinchain scenario attacker " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// apply performs one step at simulated time t.
func (r *runner) apply(st *Step, t time.Time) error {
	switch st.Action {
	case "swap_gpu":
		s, g, err := r.gpu(st.Target)
		if err != nil {
			return err
		}
		g.Ident.UUID = fmt.Sprintf("GPU-5ca1ab1e-%04x-%04x-%04x-%012x", r.rng.Uint32()&0xffff, r.rng.Uint32()&0xffff, r.rng.Uint32()&0xffff, r.rng.Uint64()&0xffffffffffff)
		g.Ident.Serial = fmt.Sprintf("1654%09d", r.rng.IntN(1e9))
		s.invDue = true
	case "flash_firmware":
		switch st.Part {
		case "bios", "bmc":
			s, err := r.host(st.Target)
			if err != nil {
				return err
			}
			if st.Part == "bios" {
				s.gw.Host.Info.BIOSVersion = st.Version
			} else {
				s.gw.Host.Info.BMCVersion = st.Version
			}
			s.invDue = true
		default:
			s, g, err := r.gpu(st.Target)
			if err != nil {
				return err
			}
			fleet.FlashGPU(&g.Ident, st.Part, st.Version)
			s.invDue = true
		}
	case "theft":
		s, err := r.gateway(st.Target)
		if err != nil {
			return err
		}
		if s.gw.Host != nil {
			return fmt.Errorf("theft needs a site gateway with GPS")
		}
		speed := st.SpeedMS
		if speed == 0 {
			speed = 15
		}
		s.theft = &theft{from: t, speed: speed, heading: st.Heading, lat0: s.gw.Site.Lat, lon0: s.gw.Site.Lon}
	case "move_rack":
		s, err := r.host(st.Target)
		if err != nil {
			return err
		}
		d, err := r.dock(s.gw.Site.ID)
		if err != nil {
			return err
		}
		every := st.Every
		if every == 0 {
			every = 20 * time.Second
		}
		for i, p := range st.Path {
			r.reads = append(r.reads, rackRead{at: t.Add(time.Duration(i) * every), by: d, epc: s.gw.Host.Info.RFIDTag, readPoint: p.ReadPoint, zone: p.Zone})
		}
	case "clone_tag":
		s, err := r.host(st.Target)
		if err != nil {
			return err
		}
		home, err := r.dock(s.gw.Site.ID)
		if err != nil {
			return err
		}
		other, err := r.dock(st.Site)
		if err != nil {
			return err
		}
		tag := s.gw.Host.Info.RFIDTag
		r.reads = append(r.reads,
			rackRead{at: t, by: home, epc: tag, readPoint: home.gw.Site.ID + "-hall-door", zone: home.gw.Site.Zone},
			rackRead{at: t.Add(2 * time.Second), by: other, epc: tag, readPoint: other.gw.Site.ID + "-hall-door", zone: other.gw.Site.Zone})
	case "drift":
		s, _, err := r.gpu(st.Target)
		if err != nil {
			return err
		}
		rate := st.Rate
		if rate == 0 {
			rate = 1
		}
		s.drift[st.Target] = drift{from: t, rate: rate}
	case "xid":
		_, g, err := r.gpu(st.Target)
		if err != nil {
			return err
		}
		if st.XID > 0 {
			g.InjectXID(st.XID)
		}
		for _, x := range st.XIDs { // in the same sample: one must not hide another
			g.InjectXID(x)
		}
	case "exchange_gpu":
		s1, g1, err := r.gpu(st.Target)
		if err != nil {
			return err
		}
		s2, g2, err := r.gpu(st.With)
		if err != nil {
			return err
		}
		g1.Ident.UUID, g2.Ident.UUID = g2.Ident.UUID, g1.Ident.UUID
		g1.Ident.Serial, g2.Ident.Serial = g2.Ident.Serial, g1.Ident.Serial
		s1.invDue, s2.invDue = true, true
	case "clock_jump":
		s, err := r.gateway(st.Target)
		if err != nil {
			return err
		}
		s.offset += st.Offset
	case "warm":
		r.warms = append(r.warms, warming{target: st.Target, from: t, rate: st.Rate})
	case "resolve":
		return r.resolve(st.Target, st.Type)
	case "overheat":
		s, _, err := r.gpu(st.Target)
		if err != nil {
			return err
		}
		c := st.TempC
		if c == 0 {
			c = 97
		}
		s.hot[st.Target] = c
	case "offline":
		s, err := r.gateway(st.Target)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.dead, s.stopped = true, true
		if s.conn != nil {
			s.conn.Close() // no DISCONNECT: the broker publishes the last will
		}
		s.mu.Unlock()
	case "silence":
		s, err := r.gateway(st.Target)
		if err != nil {
			return err
		}
		s.stopped = true
	case "forge":
		s, err := r.gateway(st.Target)
		if err != nil {
			return err
		}
		key := keyFor(st.Target)
		for i := range max(st.Count, 1) {
			data, err := wire.Seal(key, st.Target, s.gw.Seq()+1_000_000+uint64(i), t, wire.KindStatus, wire.Status{State: wire.StateOnline, AgentVersion: "evil"})
			if err != nil {
				return err
			}
			r.send(s.client, wire.Topic(st.Target, wire.KindStatus), data)
		}
	case "unknown_gateway":
		if !wire.ValidGatewayID(st.Target) {
			return fmt.Errorf("%q is not a gateway id", st.Target)
		}
		// It signs its connect password and messages with a key of its own,
		// which twin-service never registered: a broker that authenticates
		// gateways (twin-service's embedded one) refuses the connection.
		key := keyFor(st.Target)
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(r.opts.Broker).SetClientID(st.Target).SetUsername(st.Target).
			SetPassword(wire.ConnectPassword(key, st.Target, time.Now())).SetProtocolVersion(4).SetConnectTimeout(5 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			r.report.Refused++
			return nil
		}
		r.extra = append(r.extra, c)
		for i := range max(st.Count, 1) {
			data, err := wire.Seal(key, st.Target, uint64(i+1), t, wire.KindStatus, wire.Status{State: wire.StateOnline})
			if err != nil {
				return err
			}
			r.send(c, wire.Topic(st.Target, wire.KindStatus), data)
		}
	case "replay":
		s, err := r.gateway(st.Target)
		if err != nil {
			return err
		}
		if len(s.captured) == 0 {
			return fmt.Errorf("nothing captured from %s to replay", st.Target)
		}
		for _, c := range s.captured {
			r.send(s.client, c.topic, c.data)
		}
	default:
		return fmt.Errorf("unknown action %q", st.Action)
	}
	return nil
}

// resolve resolves the open alert of type typ on asset through the API, as
// an analyst would, waiting up to 10 s for it to open.
func (r *runner) resolve(asset, typ string) error {
	if r.opts.API == "" {
		return fmt.Errorf("resolve: the twin-service API URL is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		alerts, err := Alerts(ctx, r.opts.API, r.opts.Tokens.Read, "asset="+url.QueryEscape(asset)+"&type="+url.QueryEscape(typ)+"&state=open")
		if err != nil {
			return err
		}
		if len(alerts) > 0 {
			var out map[string]any
			return postJSON(ctx, r.opts.API+"/api/v1/alerts/"+alerts[0].ID+"/resolve", r.opts.Tokens.Approve, map[string]string{"comment": "resolved by the scenario"}, &out)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("resolve: no open %s alert on %s", typ, asset)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fileWorkOrders creates the file's work orders through the API and has a
// second person approve them.
func (r *runner) fileWorkOrders(ctx context.Context, start time.Time) error {
	if len(r.f.WorkOrders) == 0 {
		return nil
	}
	if r.opts.API == "" {
		return fmt.Errorf("the scenario files work orders: the twin-service API URL is required")
	}
	for i, w := range r.f.WorkOrders {
		o := struct {
			workorder.Order
			By   string `json:"by"`
			Role string `json:"role"`
		}{Order: workorder.Order{Asset: w.Asset, Reason: w.Reason, Changes: w.Changes, Start: start.Add(w.From), End: start.Add(w.To)}, By: "sim-maintenance", Role: "maintenance"}
		var created workorder.Order
		if err := postJSON(ctx, r.opts.API+"/api/v1/workorders", r.opts.Tokens.Create, o, &created); err != nil {
			return fmt.Errorf("work_orders[%d]: %w", i, err)
		}
		if w.Approved != nil && !*w.Approved {
			continue
		}
		if err := postJSON(ctx, r.opts.API+"/api/v1/workorders/"+created.ID+"/approve", r.opts.Tokens.Approve, map[string]string{"by": "sim-security", "role": "security"}, &created); err != nil {
			return fmt.Errorf("approve %s: %w", created.ID, err)
		}
		r.opts.Log.Info("work order filed and approved", "id", created.ID, "asset", w.Asset)
	}
	return nil
}

// postJSON posts in as JSON with a bearer token (when set) and decodes the answer.
func postJSON(ctx context.Context, u, token string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %d %s", u, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

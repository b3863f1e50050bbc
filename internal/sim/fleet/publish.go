package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

// Registry is the gateway registry twin-service loads to accept this fleet.
func (f *Fleet) Registry() registry.File {
	var out registry.File
	for _, g := range f.Gateways {
		out.Gateways = append(out.Gateways, registry.Gateway{ID: g.ID, PublicKey: g.PublicKey(), Site: g.Site.ID, Assets: g.Assets()})
	}
	return out
}

// PublishConfig says where and how fast the fleet publishes.
type PublishConfig struct {
	Broker string  // e.g. tcp://127.0.0.1:1883
	Rate   float64 // samples per simulated second per gateway (1 = 1 Hz)
	// Speed is simulated seconds per real second; readings carry simulated time.
	Speed float64
	// Start is the simulated time of the first reading (zero: now).
	Start time.Time
	// SeqBase is the sequence number before each gateway's first message
	// (zero: the Unix time in milliseconds at start, so a restarted simulator
	// never reuses a sequence number).
	SeqBase uint64
	// Resume, when it has a gateway, is the last sequence number that
	// gateway used before a clean stop: it continues right after it.
	Resume map[string]uint64
	// StatusEvery and InventoryEvery are simulated intervals between a
	// gateway's heartbeats and inventory reports.
	StatusEvery, InventoryEvery time.Duration
	// Password is sent with the gateway id as username, when set; else
	// each gateway's connect password, signed by its key.
	Password string
	// MaxInflight bounds unacknowledged messages per gateway (backpressure).
	MaxInflight int
	// SamplesPerMessage is how many samples a telemetry message carries
	// (wire.Telemetry's Samples): a host publishes every SamplesPerMessage
	// samples, as an agent whose publish interval is that many sampling
	// intervals. 0 or 1: one message per sample, in the one-sample form.
	SamplesPerMessage int
}

// Validate fills defaults and checks the values.
func (c *PublishConfig) Validate() error {
	if c.Broker == "" {
		return errors.New("publish: broker URL is required")
	}
	if c.Rate <= 0 || c.Rate > 1000 {
		return fmt.Errorf("publish: rate = %g Hz, want (0, 1000]", c.Rate)
	}
	if c.Speed == 0 {
		c.Speed = 1
	}
	if c.Speed < 0 {
		return fmt.Errorf("publish: speed = %g, want > 0", c.Speed)
	}
	if c.StatusEvery == 0 {
		c.StatusEvery = 30 * time.Second
	}
	if c.InventoryEvery == 0 {
		c.InventoryEvery = 10 * time.Minute
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 1000
	}
	if c.SamplesPerMessage == 0 {
		c.SamplesPerMessage = 1
	}
	if c.SamplesPerMessage < 1 || c.SamplesPerMessage > wire.MaxSamples {
		return fmt.Errorf("publish: samples per message = %d, want 1..%d", c.SamplesPerMessage, wire.MaxSamples)
	}
	return nil
}

// Stats counts what a publisher did; safe for concurrent use.
type Stats struct {
	Sent, Acked, Failed atomic.Uint64
}

// Publisher publishes a fleet over MQTT, one client per gateway.
type Publisher struct {
	fleet *Fleet
	cfg   PublishConfig
	log   *slog.Logger
	Stats Stats
	// OnAck, when set, is called once for each message the broker
	// acknowledged, from the gateway's own goroutine.
	OnAck func(gateway string, seq uint64)
	// uninventoried counts the hosts whose first inventory is not
	// acknowledged yet: until it is 0 the site gateways read no tags (the
	// tags are registered by the inventories; RFID never creates assets,
	// and a read of a tag no asset carries is an unknown_tags finding).
	uninventoried atomic.Int64
}

// NewPublisher checks cfg and returns a publisher; it connects nothing.
func NewPublisher(f *Fleet, cfg PublishConfig, log *slog.Logger) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Publisher{fleet: f, cfg: cfg, log: log}, nil
}

// Seqs is the last sequence number each gateway used.
func (f *Fleet) Seqs() map[string]uint64 {
	out := make(map[string]uint64, len(f.Gateways))
	for _, gw := range f.Gateways {
		out[gw.ID] = gw.Seq()
	}
	return out
}

// Run connects every gateway and publishes until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	start := p.cfg.Start
	if start.IsZero() {
		start = time.Now().UTC()
	}
	base := p.cfg.SeqBase
	if base == 0 {
		base = uint64(time.Now().UnixMilli())
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, gw := range p.fleet.Gateways {
		if gw.Host != nil {
			p.uninventoried.Add(1)
		}
	}
	for _, gw := range p.fleet.Gateways {
		if last, ok := p.cfg.Resume[gw.ID]; ok {
			gw.SetSeq(last)
		} else {
			gw.SetSeq(base)
		}
		g.Go(func() error { return p.runGateway(ctx, gw, start) })
	}
	return g.Wait()
}

type pending struct {
	tok      mqtt.Token
	seq      uint64
	firstInv bool // the host's first inventory
}

// ackGrace is how long a stopping gateway still waits for the broker's
// acknowledgements; what is not acknowledged by then counts as failed.
const ackGrace = 2 * time.Second

// isDone reports whether tok has completed.
func isDone(tok mqtt.Token) bool {
	select {
	case <-tok.Done():
		return true
	default:
		return false
	}
}

func (p *Publisher) runGateway(ctx context.Context, gw *Gateway, start time.Time) error {
	will, willTopic, err := gw.Will(time.Now().UTC())
	if err != nil {
		return err
	}
	opts := mqtt.NewClientOptions().
		AddBroker(p.cfg.Broker).
		SetClientID(gw.ID).
		SetCredentialsProvider(func() (string, string) { return gw.Credentials(p.cfg.Password, time.Now()) }).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(500*time.Millisecond).
		SetMaxReconnectInterval(2*time.Second).
		SetKeepAlive(30*time.Second).
		SetBinaryWill(willTopic, will, 1, false)
	client := mqtt.NewClient(opts)
	tok := client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil
	}
	defer client.Disconnect(250)

	// Once ctx ends, acknowledgements get ackGrace: the broker may be
	// stopping too (make run's Ctrl-C reaches both), and paho keeps a
	// QoS 1 token open while it waits to reconnect, so waiting for every
	// token would never end.
	waitCtx, stopWaiting := context.WithCancel(ctx)
	giveUp := make(chan struct{})
	context.AfterFunc(waitCtx, func() { time.AfterFunc(ackGrace, func() { close(giveUp) }) })
	acks := make(chan pending, p.cfg.MaxInflight)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for pd := range acks {
			select {
			case <-pd.tok.Done():
			case <-giveUp:
			}
			if pd.firstInv { // stored or failed: the docks wait no longer
				p.uninventoried.Add(-1)
			}
			if !isDone(pd.tok) || pd.tok.Error() != nil {
				p.Stats.Failed.Add(1)
				continue
			}
			p.Stats.Acked.Add(1)
			if p.OnAck != nil {
				p.OnAck(gw.ID, pd.seq)
			}
		}
	}()
	defer func() { stopWaiting(); close(acks); wg.Wait() }()

	inventoried := false
	publish := func(kind wire.Kind, t time.Time, body any) error {
		if gw.Silent() { // a played silence step: connected, publishing nothing
			return nil
		}
		data, topic, seq, err := gw.Seal(kind, t.Add(gw.ClockOffset()), body)
		if err != nil {
			return fmt.Errorf("gateway %s: %w", gw.ID, err)
		}
		first := kind == wire.KindFirmware && !inventoried
		inventoried = inventoried || kind == wire.KindFirmware
		select {
		case acks <- pending{client.Publish(topic, 1, false, data), seq, first}:
			p.Stats.Sent.Add(1)
		case <-ctx.Done():
		}
		return nil
	}

	step := time.Duration(float64(time.Second) / p.cfg.Rate)
	tick := time.NewTicker(time.Duration(float64(step) / p.cfg.Speed))
	defer tick.Stop()
	simNow := start
	var lastStatus, lastInventory time.Time
	batch := &wire.Telemetry{} // samples gathered for the next message (SamplesPerMessage > 1)
	for n := 0; ; n++ {
		if simNow.Sub(lastStatus) >= p.cfg.StatusEvery || n == 0 {
			if err := publish(wire.KindStatus, simNow, wire.Status{State: wire.StateOnline, AgentVersion: "firmware-sim"}); err != nil {
				return err
			}
			lastStatus = simNow
		}
		if inv := gw.Inventory(); inv != nil && (n == 0 || simNow.Sub(lastInventory) >= p.cfg.InventoryEvery || gw.invDue.Swap(false)) {
			if err := publish(wire.KindFirmware, simNow, inv); err != nil {
				return err
			}
			lastInventory = simNow
		}
		if tel := gw.Sample(simNow, step); tel != nil {
			if p.cfg.SamplesPerMessage > 1 {
				batch.Host = tel.Host
				batch.Samples = append(batch.Samples, wire.TelemetrySample{TS: simNow, GPUs: tel.GPUs})
				tel = nil
				if len(batch.Samples) >= p.cfg.SamplesPerMessage {
					tel, batch = batch, &wire.Telemetry{}
				}
			}
			if tel != nil {
				if err := publish(wire.KindTelemetry, simNow, tel); err != nil {
					return err
				}
			}
		}
		if fix := gw.Position(simNow); fix != nil && n%10 == 0 {
			if err := publish(wire.KindGPS, simNow, fix); err != nil {
				return err
			}
		}
		if reads := gw.Reads(simNow, step); reads != nil && p.uninventoried.Load() <= 0 {
			if err := publish(wire.KindRFID, simNow, reads); err != nil {
				return err
			}
		}
		if reads := gw.DueReads(simNow); reads != nil { // played steps' reads
			if err := publish(wire.KindRFID, simNow, reads); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			simNow = simNow.Add(step)
		}
	}
}

package twinnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"twinchain/internal/detect"
	"twinchain/internal/scaleout/natslog"
	"twinchain/internal/wire"
)

// Change is one applied gateway message as every node's read model sees it.
type Change struct {
	Gateway   string    `json:"gw"`
	Epoch     uint64    `json:"epoch"`
	Seq       uint64    `json:"seq"`
	Partition int       `json:"p"`
	Node      string    `json:"node"`
	Kind      string    `json:"kind"`
	UUIDs     []string  `json:"uuids,omitempty"` // GPU identities of an inventory message
	Time      time.Time `json:"t,omitzero"`      // an inventory message's reading time
	// Shipment is set in a declared shipment's change (Kind
	// KindShipment, no gateway): DeclareShipment.
	Shipment *Shipment `json:"shipment,omitempty"`
	// Ack is set in an alert's acknowledgement (Kind KindAlertAck, no
	// gateway): AckAlert.
	Ack *AlertAck `json:"ack,omitempty"`
}

// KindShipment is the kind of a declared shipment's change, KindAlertAck
// that of an alert's acknowledgement.
const (
	KindShipment = "shipment"
	KindAlertAck = "alert_ack"
)

func changeOf(node string, k int, m natslog.Message) ([]byte, error) {
	uuids, t, err := identity(m)
	if err != nil {
		return nil, fmt.Errorf("twinnode: %s seq %d: %w", m.Gateway, m.Seq, err)
	}
	return json.Marshal(Change{Gateway: m.Gateway, Epoch: m.Epoch, Seq: m.Seq, Partition: k, Node: node, Kind: string(m.Kind), UUIDs: uuids, Time: t})
}

// Place is where a gateway stands: its site and the site's position.
type Place struct {
	Site     string
	Lat, Lon float64
}

// DefaultTravelSpeedMS is the fastest a GPU is believed to move between
// sites (an airliner's cruise, 1,080 km/h).
const DefaultTravelSpeedMS = 300.0

// GatewayView is one gateway in the fleet view.
type GatewayView struct {
	Partition int    `json:"partition"`
	Node      string `json:"node"` // the node that applied its newest message
	Epoch     uint64 `json:"epoch"`
	Seq       uint64 `json:"seq"`     // the newest applied
	Applied   int    `json:"applied"` // messages applied
	Late      int    `json:"late"`    // applied with a sequence number not above the newest (out of order)
}

// Alert is a finding of the read model.
type Alert struct {
	// ID is the changes stream's position whose change raised it and its
	// number among the alerts raised there ("1207.1"): the same on every
	// node.
	ID string `json:"id"`
	// Type is "clone" (one GPU identity in two partitions, unless a
	// shipment took it from one to the other), "impossible_travel" (one
	// GPU identity at two sites farther apart than it can have travelled
	// between the two readings), "shipment_misrouted" (a GPU of an open
	// shipment reported at a site that is neither its origin nor its
	// destination) or "shipment_overdue" (a GPU of a shipment not arrived
	// by its due time; Gateways: where it was last seen, if anywhere).
	Type     string   `json:"type"`
	UUID     string   `json:"uuid"`
	Gateways []string `json:"gateways"` // where it was seen, in the order seen
	// An impossible travel's distance between the sites and time between
	// the readings.
	DistanceM float64 `json:"distance_m,omitempty"`
	Seconds   float64 `json:"seconds,omitempty"`
	// Shipment is a misrouted or overdue GPU's shipment id.
	Shipment string `json:"shipment,omitempty"`
	// Acked is who acknowledged it first (nil: nobody yet).
	Acked *AlertAck `json:"acked,omitempty"`
}

// Model is the read model every node folds from the changes of all
// partitions, in the changes stream's order: the same on every node once
// it has read as far. Safe for concurrent use.
type Model struct {
	mu       sync.Mutex
	pos      uint64 // the changes stream's sequence folded up to
	bad      int    // changes that did not decode, and shipments that did not check or repeated an id
	gateways map[string]*GatewayView
	seen     map[string]seenAt // GPU UUID -> where first seen, or where its shipment arrived
	alerts   []Alert
	alerted  map[string]int // UUID -> index in alerts of its clone alert
	alertIDs map[string]int // Alert.ID -> index in alerts
	raisedN  int            // alerts raised at pos so far

	places   map[string]Place    // gateway -> where it stands
	speed    float64             // the fastest believable travel, m/s
	sighted  map[string]sighting // GPU UUID -> its newest sighting at a known place
	traveled map[string]bool     // UUID/from/to -> an impossible travel raised

	shipments []ShipmentView       // in the order declared
	shipIDs   map[string]bool      // the declared shipments' ids
	shipping  map[string]shipping  // GPU UUID -> its newest declared shipment
	inv       map[string]inventory // gateway -> its newest inventory
	due       []int                // shipments with a due time not yet reached, by index
	// clock is the newest reading time folded: the read model's own time,
	// the same on every node at the same position (a node's wall clock
	// is not), against which shipments fall due.
	clock time.Time
}

// shipping is a GPU's part in its newest declared shipment.
type shipping struct {
	i         int       // index in Model.shipments
	departed  time.Time // the inventory at the origin without it (zero: not yet)
	arrived   time.Time // its reading at the destination (zero: not yet)
	misrouted bool      // shipment_misrouted raised
}

// inventory is the GPUs a gateway's inventory listed at a reading time.
type inventory struct {
	at    time.Time
	uuids []string
}

type seenAt struct {
	partition int
	gateway   string
}

type sighting struct {
	gateway string
	place   Place
	at      time.Time
}

// NewModel is an empty read model. places says where each gateway stands
// (a gateway not in it is left out of the travel check); speedMS is the
// fastest believable travel between sites (0: DefaultTravelSpeedMS).
func NewModel(places map[string]Place, speedMS float64) *Model {
	if speedMS <= 0 {
		speedMS = DefaultTravelSpeedMS
	}
	return &Model{gateways: map[string]*GatewayView{}, seen: map[string]seenAt{}, alerted: map[string]int{}, alertIDs: map[string]int{},
		places: places, speed: speedMS, sighted: map[string]sighting{}, traveled: map[string]bool{},
		shipIDs: map[string]bool{}, shipping: map[string]shipping{}, inv: map[string]inventory{}}
}

// Apply folds one change at the changes stream's sequence pos.
func (md *Model) Apply(pos uint64, c Change) {
	md.mu.Lock()
	defer md.mu.Unlock()
	md.pos, md.raisedN = pos, 0
	switch c.Kind {
	case KindShipment:
		md.declare(c.Shipment)
		return
	case KindAlertAck:
		md.acknowledge(c.Ack)
		return
	}
	g := md.gateways[c.Gateway]
	if g == nil {
		g = &GatewayView{}
		md.gateways[c.Gateway] = g
	}
	if g.Applied > 0 && c.Epoch == g.Epoch && c.Seq <= g.Seq {
		g.Late++
	} else {
		g.Epoch, g.Seq = c.Epoch, c.Seq
	}
	g.Partition, g.Node = c.Partition, c.Node
	g.Applied++
	defer md.tick(c.Time) // after the readings: an arrival in this change is in time
	md.departures(c)
	for _, u := range c.UUIDs {
		md.travel(u, c)
		if md.shipped(u, c) {
			continue
		}
		at, ok := md.seen[u]
		if !ok {
			md.seen[u] = seenAt{c.Partition, c.Gateway}
			continue
		}
		if at.partition == c.Partition {
			continue // the same partition's detectors judge it
		}
		if i, ok := md.alerted[u]; ok {
			if !slices.Contains(md.alerts[i].Gateways, c.Gateway) {
				md.alerts[i].Gateways = append(md.alerts[i].Gateways, c.Gateway)
			}
			continue
		}
		md.alerted[u] = len(md.alerts)
		md.raise(Alert{Type: "clone", UUID: u, Gateways: []string{at.gateway, c.Gateway}})
	}
}

// raise adds alert a with its id (Alert.ID).
func (md *Model) raise(a Alert) {
	md.raisedN++
	a.ID = fmt.Sprintf("%d.%d", md.pos, md.raisedN)
	md.alertIDs[a.ID] = len(md.alerts)
	md.alerts = append(md.alerts, a)
}

// acknowledge folds an alert's acknowledgement. The first of an alert
// stands: of two people acknowledging it at two nodes, the one the
// changes stream ordered first. A later one, one without a name, or one
// of an alert not raised is counted bad. (An alert is raised before
// anyone can read its id, so its acknowledgement always comes after it in
// the stream.)
func (md *Model) acknowledge(k *AlertAck) {
	if k == nil || k.By == "" {
		md.bad++
		return
	}
	i, ok := md.alertIDs[k.Alert]
	if !ok || md.alerts[i].Acked != nil {
		md.bad++
		return
	}
	ack := *k
	md.alerts[i].Acked = &ack
}

// travel raises an impossible travel when GPU u, last seen at one site,
// is now reported at another farther away than DefaultTravelSpeedMS (or
// the model's speed) allows in the time between the two readings. Readings
// of different partitions come in the changes stream's order, not in time
// order, so the time between them is taken either way round.
func (md *Model) travel(u string, c Change) {
	p, ok := md.places[c.Gateway]
	if !ok || c.Time.IsZero() {
		return
	}
	prev, had := md.sighted[u]
	if !had || c.Time.After(prev.at) {
		md.sighted[u] = sighting{c.Gateway, p, c.Time}
	}
	if !had || prev.place.Site == p.Site {
		return
	}
	dist := detect.DistanceM(prev.place.Lat, prev.place.Lon, p.Lat, p.Lon)
	secs := math.Abs(c.Time.Sub(prev.at).Seconds())
	if dist <= md.speed*secs {
		return
	}
	key := u + "/" + prev.gateway + "/" + c.Gateway
	if md.traveled[key] {
		return
	}
	md.traveled[key] = true
	md.raise(Alert{Type: "impossible_travel", UUID: u, Gateways: []string{prev.gateway, c.Gateway}, DistanceM: math.Round(dist), Seconds: secs})
}

// declare folds a declared shipment: each of its GPUs is in it from now
// on (a later shipment of the same GPU replaces it). One that does not
// check (only DeclareShipment writes them, after the same check) or whose
// id is known already is counted bad and skipped.
func (md *Model) declare(s *Shipment) {
	if s == nil || s.check() != nil || md.shipIDs[s.ID] {
		md.bad++
		return
	}
	md.shipIDs[s.ID] = true
	i := len(md.shipments)
	md.shipments = append(md.shipments, ShipmentView{Shipment: *s})
	for _, u := range s.UUIDs {
		md.shipping[u] = shipping{i: i}
	}
	if !s.Due.IsZero() {
		md.due = append(md.due, i)
	}
}

// tick moves the model's clock to a reading time t, if newer, and raises
// shipment_overdue for each GPU of a shipment now past its due time that
// has not arrived (a GPU in a newer shipment since is that one's). A
// shipment falls due once; a GPU that arrives later is listed as arrived.
func (md *Model) tick(t time.Time) {
	if !t.After(md.clock) {
		return
	}
	md.clock = t
	md.due = slices.DeleteFunc(md.due, func(i int) bool {
		s := &md.shipments[i]
		if !md.clock.After(s.Due) {
			return false
		}
		for _, u := range s.UUIDs {
			if r := md.shipping[u]; r.i != i || !r.arrived.IsZero() {
				continue
			}
			s.Overdue = true
			var last []string
			if sg, ok := md.sighted[u]; ok {
				last = []string{sg.gateway}
			}
			md.raise(Alert{Type: "shipment_overdue", UUID: u, Gateways: last, Shipment: s.ID})
		}
		return true
	})
}

// departures folds gateway c.Gateway's inventory: each GPU its previous
// inventory listed and this one does not, if its newest shipment leaves
// from this gateway's site and it has not departed yet, departs now. An
// inventory older than the gateway's newest (folded late) changes
// nothing. A GPU gone before its shipment was folded is not seen to
// depart.
func (md *Model) departures(c Change) {
	if c.Kind != string(wire.KindFirmware) {
		return
	}
	prev, had := md.inv[c.Gateway]
	if had && c.Time.Before(prev.at) {
		return
	}
	md.inv[c.Gateway] = inventory{c.Time, c.UUIDs}
	p, placed := md.places[c.Gateway]
	if !placed {
		return
	}
	for _, u := range prev.uuids {
		r, ok := md.shipping[u]
		if !ok || !r.departed.IsZero() || slices.Contains(c.UUIDs, u) {
			continue
		}
		s := &md.shipments[r.i]
		if s.From != p.Site {
			continue
		}
		r.departed = c.Time
		md.shipping[u] = r
		s.Departed = append(s.Departed, Passage{UUID: u, Gateway: c.Gateway, At: c.Time})
	}
}

// shipped tells whether GPU u's reading in c is explained by its shipment,
// and then the clone check must not judge it:
//   - at the destination: it has arrived (the first such reading is its
//     arrival), and its partition is the destination's from now on;
//   - at a third site while the shipment is open: misrouted (one alert);
//   - at the origin: a reading from before it arrived (a partition's
//     change folded late) is explained; one after its arrival is not, and
//     the clone check finds it in two partitions.
//
// A GPU at a gateway of no known place, or in no shipment, is not shipped.
func (md *Model) shipped(u string, c Change) bool {
	r, ok := md.shipping[u]
	p, placed := md.places[c.Gateway]
	if !ok || !placed {
		return false
	}
	s := &md.shipments[r.i]
	switch p.Site {
	case s.To:
		if r.arrived.IsZero() {
			r.arrived = c.Time
			s.Arrived = append(s.Arrived, Passage{UUID: u, Gateway: c.Gateway, At: c.Time})
			md.shipping[u] = r
		}
		md.seen[u] = seenAt{c.Partition, c.Gateway}
		return true
	case s.From:
		return !r.arrived.IsZero() && !c.Time.After(r.arrived)
	}
	if !r.arrived.IsZero() {
		return false
	}
	if !r.misrouted {
		r.misrouted = true
		md.shipping[u] = r
		md.raise(Alert{Type: "shipment_misrouted", UUID: u, Gateways: []string{c.Gateway}, Shipment: s.ID})
	}
	return true
}

// Bad is how many changes were skipped: they did not decode, or were
// shipments that did not check or repeated a known id, or
// acknowledgements of an alert not raised or acknowledged already.
func (md *Model) Bad() int {
	md.mu.Lock()
	defer md.mu.Unlock()
	return md.bad
}

// Pos is the changes stream's sequence the model has folded up to.
func (md *Model) Pos() uint64 {
	md.mu.Lock()
	defer md.mu.Unlock()
	return md.pos
}

// Fleet is a copy of the fleet view.
func (md *Model) Fleet() map[string]GatewayView { return md.View().Fleet }

// Alerts is a copy of the alerts, in the order raised.
func (md *Model) Alerts() []Alert { return md.View().Alerts }

// View is the read model at one position of the changes stream, as every
// node serves it (Handler).
type View struct {
	Pos       uint64                 `json:"pos"`
	Fleet     map[string]GatewayView `json:"fleet,omitempty"`
	Alerts    []Alert                `json:"alerts,omitempty"`
	Shipments []ShipmentView         `json:"shipments,omitempty"`
}

// View is a copy of the model.
func (md *Model) View() View {
	md.mu.Lock()
	defer md.mu.Unlock()
	v := View{Pos: md.pos, Fleet: make(map[string]GatewayView, len(md.gateways)), Alerts: make([]Alert, len(md.alerts))}
	for id, g := range md.gateways {
		v.Fleet[id] = *g
	}
	for i, a := range md.alerts {
		a.Gateways = slices.Clone(a.Gateways)
		if a.Acked != nil {
			k := *a.Acked
			a.Acked = &k
		}
		v.Alerts[i] = a
	}
	v.Shipments = make([]ShipmentView, len(md.shipments))
	for i, s := range md.shipments {
		s.UUIDs, s.Departed, s.Arrived = slices.Clone(s.UUIDs), slices.Clone(s.Departed), slices.Clone(s.Arrived)
		v.Shipments[i] = s
	}
	return v
}

// Handler serves the model read-only as JSON: GET /view is the whole
// View, GET /fleet, /alerts and /shipments each only that part; any node
// serves the same once it has folded as far (compare pos).
func (md *Model) Handler() http.Handler {
	mux := http.NewServeMux()
	serve := func(path string, cut func(*View)) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
			v := md.View()
			cut(&v)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v) // a client gone away is its own business
		})
	}
	serve("/view", func(*View) {})
	serve("/fleet", func(v *View) { v.Alerts, v.Shipments = nil, nil })
	serve("/alerts", func(v *View) { v.Fleet, v.Shipments = nil, nil })
	serve("/shipments", func(v *View) { v.Fleet, v.Alerts = nil, nil })
	return mux
}

// Fold reads the changes stream from its start into md until ctx ends. A
// read that fails or stalls (a server lost) resumes after the last folded
// change with a new consumer.
func (md *Model) Fold(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	for {
		err := md.fold(ctx, js)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("read model: resuming", "pos", md.Pos(), "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// foldIdle is how long fold waits for changes before it asks whether the
// stream holds more than it has folded.
const foldIdle = 2 * time.Second

// fold reads the changes after the folded position through an ephemeral
// consumer of its own (in memory, one replica, no acknowledgements), every
// step under a deadline. nats.go's ordered consumer was tried first: after
// a server was killed, its re-creation retried without end inside Next,
// and one node's model stayed silent (TestProcessesKilled).
func (md *Model) fold(ctx context.Context, js jetstream.JetStream) error {
	pos := md.Pos()
	cc := jetstream.ConsumerConfig{
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, Replicas: 1, InactiveThreshold: time.Minute,
	}
	if pos > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, pos+1
	}
	cctx, cancel := context.WithTimeout(ctx, 5*foldIdle)
	cons, err := js.CreateConsumer(cctx, ChangesStream, cc)
	cancel()
	if err != nil {
		return err
	}
	defer func() { // or it goes after InactiveThreshold
		dctx, cancel := context.WithTimeout(context.Background(), foldIdle)
		defer cancel()
		_ = js.DeleteConsumer(dctx, ChangesStream, cons.CachedInfo().Name)
	}()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(foldIdle))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			got++
			if meta.Sequence.Stream <= md.Pos() {
				continue // folded already
			}
			var c Change
			if err := json.Unmarshal(m.Data(), &c); err != nil {
				// Only nodes write the stream: a change that does not
				// decode is a bug, counted and skipped so the rest stays
				// visible.
				md.mu.Lock()
				md.pos, md.bad = meta.Sequence.Stream, md.bad+1
				md.mu.Unlock()
				continue
			}
			md.Apply(meta.Sequence.Stream, c)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if got == 0 {
			if err := md.behind(ctx, js); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// behind is an error when the changes stream holds changes past the
// folded position.
func (md *Model) behind(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, foldIdle)
	defer cancel()
	st, err := js.Stream(ctx, ChangesStream)
	if err != nil {
		return err
	}
	if last, pos := st.CachedInfo().State.LastSeq, md.Pos(); last > pos {
		return fmt.Errorf("twinnode: read model at %d, %s at %d, no change for %s", pos, ChangesStream, last, foldIdle)
	}
	return nil
}

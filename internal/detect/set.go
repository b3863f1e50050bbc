package detect

import (
	"fmt"
	"sync/atomic"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// Set runs every detector. It is not safe for concurrent use: the engine
// feeds it from one goroutine.
type Set struct {
	cfg      Config
	view     *View
	fences   map[string]*polygon
	identity *identityDetector
	firmware *firmwareDetector
	movement *movementDetector
	clone    *cloneDetector
	gateways *gatewayDetector
	drift    *driftDetector
	hardware *hardwareDetector
	runtime  *runtimeDetector
}

// NewSet returns detectors with empty state over view. cfg must be valid.
func NewSet(cfg Config, view *View) *Set {
	fences := map[string]*polygon{}
	for name, s := range cfg.Sites {
		if p := newPolygon(s.Geofence); p != nil {
			fences[name] = p
		}
	}
	gateways := newGatewayDetector(cfg, view)
	return &Set{
		gateways: gateways,
		movement: newMovementDetector(cfg, view, fences, gateways),
		cfg:      cfg,
		view:     view,
		fences:   fences,
		identity: &identityDetector{view: view, hosts: map[string]map[string]bool{}},
		firmware: &firmwareDetector{view: view, allow: cfg.Firmware.Allow},
		clone:    newCloneDetector(cfg.Clone, view),
		drift:    &driftDetector{cfg: cfg.Drift, view: view, state: map[string]*driftState{}},
		hardware: &hardwareDetector{cfg: cfg.Hardware, view: view, state: map[string]*hwState{}},
		runtime:  newRuntimeDetector(view),
	}
}

// SetApprovals turns the run-time checks on (unapproved_model,
// environment_drift): what runs on each GPU is judged against a's
// deployments in force. Call it before the first Observe.
func (s *Set) SetApprovals(a Approvals) { s.runtime.approvals = a }

// CountImagesNotCompared counts in c each judged process whose container
// image has no registry digest to compare with its deployment's container
// hash (detect.ImageLocalOnly). Call it before the first Observe.
func (s *Set) CountImagesNotCompared(c *atomic.Uint64) { s.runtime.notCompared = c }

// View is the fleet picture the set folds events into.
func (s *Set) View() *View { return s.view }

// Observe runs the detectors on one input. An event is folded into the
// view first (an event the view cannot apply is reported as an error and
// not inspected further).
func (s *Set) Observe(in Input) ([]Finding, error) {
	var out []Finding
	switch {
	case in.Event != nil:
		e := in.Event
		if err := s.view.Apply(*e); err != nil {
			return nil, err
		}
		out = append(out, s.identity.event(e)...)
		out = append(out, s.firmware.event(e)...)
		out = append(out, s.gateways.event(e)...)
		out = append(out, s.runtime.event(e)...)
	case in.Message != nil:
		m := in.Message
		out = append(out, s.gateways.message(m)...)
		switch {
		case m.Telemetry != nil:
			out = s.telemetry(out, m)
		case m.Inventory != nil:
			out = append(out, s.identity.inventory(m)...)
		case m.GPS != nil:
			if f, ok := gpsClock(m); ok {
				out = append(out, f) // a clock anomaly, not a position
				break
			}
			out = append(out, s.movement.gps(m)...)
			out = append(out, s.clone.gps(m)...)
		case m.RFID != nil:
			out = append(out, s.movement.rfid(m)...)
			out = append(out, s.clone.rfid(m)...)
		case m.Workloads != nil:
			out = append(out, s.runtime.workloads(m)...)
		}
	case in.Rejection != nil:
		out = append(out, s.gateways.rejection(in.Rejection)...)
	default:
		return nil, fmt.Errorf("detect: empty input")
	}
	s.place(out)
	return out, nil
}

// telemetry judges a telemetry message's samples in time order, each as a
// one-sample message at its own time (Ref.Time is the sample's, so a
// finding carries the time of the sample that shows it; Ref.Pos still
// names the message, the evidence). A message in the one-sample form
// without Samples (a detector test's) is judged as it is.
func (s *Set) telemetry(out []Finding, m *Message) []Finding {
	judge := func(m *Message) {
		out = append(out, s.clone.telemetry(m)...)
		out = append(out, s.hardware.telemetry(m)...)
		out = append(out, s.drift.telemetry(m)...)
	}
	if len(m.Telemetry.Samples) == 0 {
		judge(m)
		return out
	}
	one, tel := *m, wire.Telemetry{Host: m.Telemetry.Host}
	one.Telemetry = &tel
	for i := range m.Telemetry.Samples {
		sm := &m.Telemetry.Samples[i]
		tel.GPUs, one.Ref.Time = sm.GPUs, sm.TS
		judge(&one)
	}
	return out
}

// place fills each finding's site, host and rack from the view.
func (s *Set) place(fs []Finding) {
	for i := range fs {
		if fs[i].Site == "" {
			fs[i].Site = s.view.site(fs[i].Asset)
		}
		fs[i].Host, fs[i].Rack = s.view.placement(fs[i].Asset)
	}
}

// Tick runs the time-driven checks (missed heartbeats, silence after
// leaving a geofence, the newest workloads when the approvals changed) at now, the service clock (the clock of
// Message.Recorded): silence is judged per gateway or asset on receive
// time (gatewayDetector.quiet).
func (s *Set) Tick(now time.Time) []Finding {
	out := s.gateways.tick(now)
	out = append(out, s.movement.tick(now)...)
	out = append(out, s.runtime.tick()...) // the approvals changed: judge the newest workloads again
	s.place(out)
	return out
}

// sustained reports when a condition has held for a duration, once per spell.
// The spell's start is an instant (no pointer in per-GPU state).
type sustained struct {
	since instant // the zero instant when there is no spell
	fired bool
}

// update records cond at t and reports true the first time it has held for d.
func (s *sustained) update(cond bool, t time.Time, d time.Duration) bool {
	if !cond {
		*s = sustained{}
		return false
	}
	if s.since.IsZero() {
		s.since = instantOf(t)
	}
	if !s.fired && t.Sub(s.since.Time()) >= d {
		s.fired = true
		return true
	}
	return false
}

// identityDetector finds substitutions, unknown assets and vanished GPUs.
type identityDetector struct {
	view  *View
	hosts map[string]map[string]bool // host -> GPU assets in its last inventory
}

// fingerprintFields are the identity fields whose change in a slot means a
// different part sits there.
var fingerprintFields = map[string]bool{
	"identity.uuid": true, "identity.serial": true, "identity.board_part": true,
	"identity.pci_bus_id": true, "identity.rfid_tag": true,
}

func (d *identityDetector) event(e *twin.Event) []Finding {
	var out []Finding
	if e.Type == twin.EventRegistered || e.Revision == 1 {
		a, _ := d.view.Asset(e.Asset)
		if (a.Kind == twin.KindGPU || a.Kind == twin.KindServer) && !d.view.Known(e.Asset) {
			out = append(out, Finding{
				Type: TypeUnknownAsset, Asset: e.Asset, Severity: Warning, Time: e.Time,
				Summary:  fmt.Sprintf("%s %s appeared but no gateway registered it", a.Kind, e.Asset),
				Evidence: Evidence{Events: []twin.Event{*e}, Values: values("uuid", a.Identity.UUID, "serial", a.Identity.Serial)},
				Changes:  []twin.Change{{Field: "registered", New: e.Asset}}, Coverable: true,
			})
		}
		return out
	}
	var changed []twin.Change
	for _, c := range e.Changes {
		if fingerprintFields[c.Field] && c.Old != "" {
			changed = append(changed, c)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return []Finding{{
		Type: TypeSubstitution, Asset: e.Asset, Severity: Critical, Time: e.Time,
		Summary:  "fingerprint changed in slot " + e.Asset + ": " + describe(changed),
		Evidence: Evidence{Events: []twin.Event{*e}},
		Changes:  changed, Coverable: true,
	}}
}

func (d *identityDetector) inventory(m *Message) []Finding {
	inv := m.Inventory
	host := inv.Host.Asset
	if host == "" {
		return nil
	}
	now := make(map[string]bool, len(inv.GPUs))
	for _, g := range inv.GPUs {
		now[g.Asset] = true
	}
	prev, seen := d.hosts[host]
	d.hosts[host] = now
	if !seen {
		return nil
	}
	var out []Finding
	for id := range prev {
		if !now[id] {
			out = append(out, Finding{
				Type: TypeAssetMissing, Asset: id, Severity: Critical, Time: m.Ref.Time,
				Summary:  fmt.Sprintf("GPU %s is gone from host %s's inventory", id, host),
				Evidence: Evidence{Messages: ref(m), Values: values("host", host)},
				Changes:  []twin.Change{{Field: "parent", Old: host, New: ""}}, Coverable: true,
			})
		}
	}
	for _, g := range inv.GPUs {
		if !prev[g.Asset] && !d.view.Known(g.Asset) {
			out = append(out, Finding{
				Type: TypeUnknownAsset, Asset: g.Asset, Severity: Warning, Time: m.Ref.Time,
				Summary:  fmt.Sprintf("GPU %s appeared in host %s", g.Asset, host),
				Evidence: Evidence{Messages: ref(m), Values: values("host", host, "uuid", g.UUID, "serial", g.Serial)},
				Changes:  []twin.Change{{Field: "parent", Old: "", New: host}}, Coverable: true,
			})
		}
	}
	sortFindings(out)
	return out
}

func sortFindings(fs []Finding) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].Asset < fs[j-1].Asset; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

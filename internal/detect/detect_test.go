package detect

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// fleet builds events for a view: registers assets and changes them, with
// the revisions and diffs the core's ingest would make.
type fleet struct {
	assets map[string]twin.Asset
	id     uint64
}

func newFleet() *fleet { return &fleet{assets: map[string]twin.Asset{}} }

// change returns the event that moves asset id to what mut makes of it.
func (f *fleet) change(id string, tm time.Time, mut func(*twin.Asset)) Input {
	prev := f.assets[id]
	next := prev
	next.ID = id
	mut(&next)
	changes := twin.Diff(&prev, &next)
	f.id++
	e := twin.Event{ID: f.id, Asset: id, Revision: prev.Revision + 1, Type: twin.TypeOf(prev.Revision, changes), Time: tm, Changes: changes}
	next.Revision = e.Revision
	f.assets[id] = next
	return Input{Event: &e}
}

func gpu(site, host string, i int, uuid string) func(*twin.Asset) {
	return func(a *twin.Asset) {
		a.Kind, a.Site, a.Parent = twin.KindGPU, site, host
		a.Identity = twin.Identity{Name: "NVIDIA H100 80GB HBM3", UUID: uuid, Serial: "SN" + uuid, PCIBusID: fmt.Sprintf("0000:%02x:00.0", i), BoardPart: "692-2G520"}
		a.Firmware = twin.Firmware{VBIOS: "96.00.99", Driver: "550.54", InfoROM: "G520.0200"}
		a.Custody.Status = twin.StatusInService
	}
}

func msg(gw string, seq uint64, tm time.Time) *Message {
	return &Message{Ref: MessageRef{Gateway: gw, Seq: seq, Time: tm}, Recorded: tm}
}

func telemetry(gw string, seq uint64, tm time.Time, gpus ...wire.GPUSample) Input {
	m := msg(gw, seq, tm)
	m.Kind, m.Telemetry = wire.KindTelemetry, &wire.Telemetry{Host: "srv", GPUs: gpus}
	return Input{Message: m}
}

func fix(gw string, seq uint64, tm time.Time, asset string, lat, lon float64) Input {
	m := msg(gw, seq, tm)
	m.Kind, m.GPS = wire.KindGPS, &wire.GPSFix{Asset: asset, Lat: lat, Lon: lon, Quality: 1, HDOP: 1, Sats: 9, FixTime: tm}
	return Input{Message: m}
}

func read(gw string, seq uint64, tm time.Time, epc, rp, zone string) Input {
	m := msg(gw, seq, tm)
	m.Kind, m.RFID = wire.KindRFID, &wire.RFID{Reads: []wire.RFIDRead{{Reader: "r1", ReadPoint: rp, Zone: zone, EPC: epc, FirstSeen: tm, LastSeen: tm, Count: 3}}}
	return Input{Message: m}
}

func status(gw string, seq uint64, tm time.Time, state string) Input {
	m := msg(gw, seq, tm)
	m.Kind, m.Status = wire.KindStatus, &wire.Status{State: state}
	return Input{Message: m}
}

func inventory(gw string, seq uint64, tm time.Time, host string, gpus ...string) Input {
	m := msg(gw, seq, tm)
	inv := &wire.Inventory{Host: wire.HostInfo{Asset: host}}
	for i, g := range gpus {
		inv.GPUs = append(inv.GPUs, wire.GPUIdentity{Asset: g, Index: i, UUID: "GPU-" + g})
	}
	m.Kind, m.Inventory = wire.KindFirmware, inv
	return Input{Message: m}
}

// reject is a rejection of a message claiming gw, sent by the client gw
// itself (an authenticated connection).
func reject(gw, reason string, tm time.Time) Input {
	return Input{Rejection: &Rejection{Time: tm, Gateway: gw, Reason: reason, Source: gw + "@127.0.0.1", SourceClient: gw, From: "client " + gw}}
}

// rejectFrom is a rejection of a message claiming gw, from a source with no
// client id (e.g. the external broker's subscriber or a test caller).
func rejectFrom(src, gw, reason string, tm time.Time) Input {
	return Input{Rejection: &Rejection{Time: tm, Gateway: gw, Reason: reason, Source: src, From: "at " + src}}
}

// found is "type asset" for each finding, sorted.
func found(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f.Type) + " " + f.Asset
	}
	slices.Sort(out)
	return out
}

// feed runs inputs through a fresh set and returns the findings. A nil
// Input entry with a tick time runs Tick.
type step struct {
	in   Input
	tick time.Time
}

func feed(t *testing.T, cfg Config, known []string, steps []step) []Finding {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	s := NewSet(cfg, NewView(known))
	var out []Finding
	for i, st := range steps {
		if !st.tick.IsZero() {
			out = append(out, s.Tick(st.tick)...)
			continue
		}
		fs, err := s.Observe(st.in)
		if err != nil {
			t.Fatalf("step %d: Observe: %v", i, err)
		}
		for _, f := range fs {
			if f.Summary == "" || f.Time.IsZero() || f.Severity == 0 {
				t.Errorf("step %d: finding %+v lacks summary, time or severity", i, f)
			}
		}
		out = append(out, fs...)
	}
	return out
}

func in(ins ...Input) []step {
	out := make([]step, len(ins))
	for i, x := range ins {
		out[i] = step{in: x}
	}
	return out
}

func check(t *testing.T, name string, got []Finding, want []string) {
	t.Helper()
	if g := found(got); !slices.Equal(g, want) {
		t.Errorf("%s: findings = %q, want %q", name, g, want)
	}
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		name  string
		known []string
		steps func(f *fleet) []Input
		want  []string
	}{
		{"uuid swap is a substitution", nil, func(f *fleet) []Input {
			return []Input{
				f.change("srv.gpu0", at(0), gpu("s1", "srv", 0, "A")),
				f.change("srv.gpu0", at(10), func(a *twin.Asset) { a.Identity.UUID, a.Identity.Serial = "B", "SNB" }),
			}
		}, []string{"substitution srv.gpu0"}},
		{"first identity is no substitution", nil, func(f *fleet) []Input {
			return []Input{
				f.change("srv.gpu0", at(0), func(a *twin.Asset) { a.Kind = twin.KindGPU }),
				f.change("srv.gpu0", at(1), func(a *twin.Asset) { a.Identity.UUID = "A" }),
			}
		}, nil},
		{"hostname change is no substitution", nil, func(f *fleet) []Input {
			return []Input{
				f.change("srv", at(0), func(a *twin.Asset) { a.Kind, a.Identity.Hostname = twin.KindServer, "h1" }),
				f.change("srv", at(1), func(a *twin.Asset) { a.Identity.Hostname = "h2" }),
			}
		}, nil},
		{"unregistered gpu appears", []string{"srv", "srv.gpu0"}, func(f *fleet) []Input {
			return []Input{f.change("srv.gpu0", at(0), gpu("s1", "srv", 0, "A")), f.change("srv.gpu7", at(0), gpu("s1", "srv", 7, "Z"))}
		}, []string{"unknown_asset srv.gpu7"}},
		{"inventory loses and gains a gpu", []string{"srv", "srv.gpu0", "srv.gpu1"}, func(f *fleet) []Input {
			return []Input{
				inventory("gw", 1, at(0), "srv", "srv.gpu0", "srv.gpu1"),
				inventory("gw", 2, at(60), "srv", "srv.gpu0", "srv.gpu1"),
				inventory("gw", 3, at(120), "srv", "srv.gpu0", "srv.gpu2"),
			}
		}, []string{"asset_missing srv.gpu1", "unknown_asset srv.gpu2"}},
	}
	for _, tt := range tests {
		check(t, tt.name, feed(t, Defaults(), tt.known, in(tt.steps(newFleet())...)), tt.want)
	}
}

func TestFirmware(t *testing.T) {
	cfg := Defaults()
	cfg.Firmware.Allow = []AllowList{{Kind: "gpu", Name: "*H100*", VBIOS: []string{"96.00.99", "96.00.A1"}}, {Kind: "server", BIOS: []string{"2.1"}}}
	tests := []struct {
		name  string
		steps func(f *fleet) []Input
		want  []string
	}{
		{"registration on the list", func(f *fleet) []Input { return []Input{f.change("g", at(0), gpu("s1", "srv", 0, "A"))} }, nil},
		{"vbios flash to an allowed version", func(f *fleet) []Input {
			return []Input{f.change("g", at(0), gpu("s1", "srv", 0, "A")), f.change("g", at(9), func(a *twin.Asset) { a.Firmware.VBIOS = "96.00.A1" })}
		}, []string{"firmware_unauthorised g"}},
		{"vbios flash off the list", func(f *fleet) []Input {
			return []Input{f.change("g", at(0), gpu("s1", "srv", 0, "A")), f.change("g", at(9), func(a *twin.Asset) { a.Firmware.VBIOS = "66.6" })}
		}, []string{"firmware_not_allowed g", "firmware_unauthorised g"}},
		{"driver unlisted part is open", func(f *fleet) []Input {
			return []Input{f.change("g", at(0), gpu("s1", "srv", 0, "A")), f.change("g", at(9), func(a *twin.Asset) { a.Firmware.Driver = "560.1" })}
		}, []string{"firmware_unauthorised g"}},
		{"server registered with a bios off the list", func(f *fleet) []Input {
			return []Input{f.change("srv", at(0), func(a *twin.Asset) { a.Kind, a.Firmware.BIOS = twin.KindServer, "1.0" })}
		}, []string{"firmware_not_allowed srv"}},
	}
	for _, tt := range tests {
		got := feed(t, cfg, nil, in(tt.steps(newFleet())...))
		check(t, tt.name, got, tt.want)
		for _, f := range got {
			if f.Type == TypeFirmwareUnauthorised && (!f.Coverable || len(f.Changes) == 0 || len(f.Evidence.Events) != 1) {
				t.Errorf("%s: unauthorised finding %+v: want coverable with changes and its event", tt.name, f)
			}
			if f.Type == TypeFirmwareNotAllowed && f.Coverable {
				t.Errorf("%s: not-allowed finding is coverable; a work order must not explain an off-list version", tt.name)
			}
		}
	}
}

// A square site of about 1.1 km a side around (52.50, 13.40).
var square = [][]float64{{52.495, 13.392}, {52.495, 13.408}, {52.505, 13.408}, {52.505, 13.392}}

func TestMovement(t *testing.T) {
	cfg := Defaults()
	cfg.Sites = map[string]SiteConfig{"s1": {Geofence: square}}
	cfg.Movement.HomeZones = map[string]string{"rack-*": "hall-a"}
	east := func(m float64) float64 { return 13.408 + m/(111320*0.6088) } // metres east of the fence
	srv := func(f *fleet, st twin.Status) Input {
		return f.change("srv", at(0), func(a *twin.Asset) {
			a.Kind, a.Site, a.Identity.RFIDTag, a.Identity.Rack, a.Custody.Status = twin.KindServer, "s1", "E200AA", "rack-3", st
		})
	}
	tests := []struct {
		name  string
		steps func(f *fleet) []Input
		want  []string
	}{
		{"jitter across the fence does not flap", func(f *fleet) []Input {
			ins := []Input{srv(f, twin.StatusInService)}
			for i := range 120 {
				off := 15.0
				if i%2 == 0 {
					off = -15
				}
				ins = append(ins, fix("gw", uint64(i+1), at(float64(i)), "srv", 52.5, east(off)))
			}
			return ins
		}, nil},
		{"a short excursion under the entry delay", func(f *fleet) []Input {
			return []Input{srv(f, twin.StatusInService), fix("gw", 1, at(0), "srv", 52.5, east(-10)), fix("gw", 2, at(5), "srv", 52.5, east(60)),
				fix("gw", 3, at(20), "srv", 52.5, east(60)), fix("gw", 4, at(25), "srv", 52.5, east(-60)), fix("gw", 5, at(60), "srv", 52.5, east(60))}
		}, nil},
		{"leaves the fence and stays out", func(f *fleet) []Input {
			ins := []Input{srv(f, twin.StatusMaintenance)}
			for i := range 10 {
				ins = append(ins, fix("gw", uint64(i+1), at(float64(i*10)), "srv", 52.5, east(float64(i*30))))
			}
			return ins
		}, []string{"geofence_exit srv"}},
		{"in transit may leave", func(f *fleet) []Input {
			ins := []Input{srv(f, twin.StatusInTransit)}
			for i := range 10 {
				ins = append(ins, fix("gw", uint64(i+1), at(float64(i*10)), "srv", 52.5, east(float64(i*30))))
			}
			return ins
		}, nil},
		{"moves inside the site while in service", func(f *fleet) []Input {
			return []Input{srv(f, twin.StatusInService), fix("gw", 1, at(0), "srv", 52.5, 13.40), fix("gw", 2, at(60), "srv", 52.5, 13.40), fix("gw", 3, at(120), "srv", 52.502, 13.40)}
		}, []string{"moved_in_service srv"}},
		{"teleports", func(f *fleet) []Input {
			return []Input{srv(f, twin.StatusMaintenance), fix("gw", 1, at(0), "srv", 52.5, 13.40), fix("gw", 2, at(10), "srv", 52.6, 13.40)}
		}, []string{"impossible_travel srv"}},
		{"rack read outside its zone", func(f *fleet) []Input {
			return []Input{srv(f, twin.StatusInService), read("gw", 1, at(0), "E200AA", "rp-a1", "hall-a"), read("gw", 2, at(30), "E200AA", "rp-corridor", "corridor"),
				read("gw", 3, at(40), "FFFF", "rp-corridor", "corridor")}
		}, []string{"moved_in_service srv", "zone_violation srv"}},
	}
	for _, tt := range tests {
		check(t, tt.name, feed(t, cfg, nil, in(tt.steps(newFleet())...)), tt.want)
	}
}

func TestClone(t *testing.T) {
	tag := func(f *fleet) []Input {
		return []Input{
			f.change("gw-a", at(0), func(a *twin.Asset) { a.Kind, a.Site = twin.KindGateway, "s1" }),
			f.change("gw-b", at(0), func(a *twin.Asset) { a.Kind, a.Site = twin.KindGateway, "s2" }),
			f.change("srv", at(0), func(a *twin.Asset) { a.Kind, a.Site, a.Identity.RFIDTag = twin.KindServer, "s1", "E2" }),
		}
	}
	tests := []struct {
		name  string
		steps func(f *fleet) []Input
		want  []string
	}{
		{"tag read at two sites at once", func(f *fleet) []Input {
			return append(tag(f), read("gw-a", 1, at(0), "E2", "rp1", "z"), read("gw-b", 1, at(5), "E2", "rp9", "z"))
		}, []string{"clone_suspected srv"}},
		{"tag read at two sites an hour apart", func(f *fleet) []Input {
			return append(tag(f), read("gw-a", 1, at(0), "E2", "rp1", "z"), read("gw-b", 1, at(3600), "E2", "rp9", "z"))
		}, nil},
		{"gps from two gateways far apart", func(f *fleet) []Input {
			return []Input{fix("gw-a", 1, at(0), "truck", 52.5, 13.4), fix("gw-b", 1, at(2), "truck", 48.1, 11.6)}
		}, []string{"clone_suspected truck", "impossible_travel truck"}},
		{"one uuid in two slots", func(f *fleet) []Input {
			return []Input{
				telemetry("gw", 1, at(0), wire.GPUSample{Asset: "s.gpu0", UUID: "U"}),
				telemetry("gw2", 1, at(1), wire.GPUSample{Asset: "t.gpu0", UUID: "U"}),
				telemetry("gw", 2, at(2), wire.GPUSample{Asset: "s.gpu0", UUID: "U"}),
			}
		}, []string{"clone_suspected s.gpu0"}},
		{"boards exchanged between two servers, their last samples stored out of order", func(f *fleet) []Input {
			return []Input{
				telemetry("gw", 1, at(0), wire.GPUSample{Asset: "s.gpu0", UUID: "U"}),
				telemetry("gw2", 1, at(0), wire.GPUSample{Asset: "t.gpu0", UUID: "V"}),
				telemetry("gw", 2, at(2), wire.GPUSample{Asset: "s.gpu0", UUID: "V"}),  // exchanged at 1.5 s
				telemetry("gw2", 2, at(1), wire.GPUSample{Asset: "t.gpu0", UUID: "V"}), // read before the exchange, stored late
				telemetry("gw2", 3, at(3), wire.GPUSample{Asset: "t.gpu0", UUID: "U"}),
			}
		}, nil},
		{"a gpu moved to another slot", func(f *fleet) []Input {
			return []Input{
				telemetry("gw", 1, at(0), wire.GPUSample{Asset: "s.gpu0", UUID: "U"}),
				telemetry("gw2", 1, at(30), wire.GPUSample{Asset: "t.gpu0", UUID: "U"}),
				telemetry("gw2", 2, at(31), wire.GPUSample{Asset: "t.gpu0", UUID: "U"}),
			}
		}, nil},
	}
	for _, tt := range tests {
		check(t, tt.name, feed(t, Defaults(), nil, in(tt.steps(newFleet())...)), tt.want)
	}
}

func TestGateways(t *testing.T) {
	cfg := Defaults()
	cfg.Gateways.Heartbeat = []HeartbeatClass{{Match: "gw-srv-*", MaxSilence: 30 * time.Second}, {Match: "*", MaxSilence: 5 * time.Minute}}
	skewed := func(gw string, seq uint64, tm time.Time, skew time.Duration) step {
		m := msg(gw, seq, tm.Add(skew))
		m.Recorded = tm
		m.Kind, m.Status = wire.KindStatus, &wire.Status{State: wire.StateOnline}
		return step{in: Input{Message: m}}
	}
	gap := twin.Event{ID: 1, Asset: "gw-srv-1", Revision: 1, Type: twin.EventSequenceGap, Time: at(0), Changes: []twin.Change{{Field: "kind", New: "gateway"}}}
	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{"last will", in(status("gw-srv-1", 1, at(0), wire.StateOnline), status("gw-srv-1", 0, at(5), wire.StateOffline)), []string{"gateway_offline gw-srv-1"}},
		{"last will then silence: one finding", []step{{in: status("gw-srv-1", 1, at(0), wire.StateOnline)}, {in: status("gw-srv-1", 0, at(5), wire.StateOffline)}, {tick: at(600)}}, []string{"gateway_offline gw-srv-1"}},
		{"per-class heartbeat", []step{
			{in: status("gw-srv-1", 1, at(0), wire.StateOnline)}, {in: status("gw-dock", 1, at(0), wire.StateOnline)},
			{tick: at(29)}, {tick: at(31)}, {tick: at(40)}, {tick: at(200)},
		}, []string{"heartbeat_missed gw-srv-1"}},
		{"heard again, silent again", []step{
			{in: status("gw-srv-1", 1, at(0), wire.StateOnline)}, {tick: at(31)},
			{in: status("gw-srv-1", 2, at(32), wire.StateOnline)}, {tick: at(70)},
		}, []string{"heartbeat_missed gw-srv-1", "heartbeat_missed gw-srv-1"}},
		{"clean shutdown is no missed heartbeat", []step{{in: status("gw-srv-1", 1, at(0), wire.StateOnline)}, {in: status("gw-srv-1", 2, at(1), wire.StateOffline)}, {tick: at(100)}}, nil},
		{"sequence gap", in(Input{Event: &gap}), []string{"sequence_gap gw-srv-1"}},
		{"bad signature burst fires once", in(reject("gw-x", RejectBadSignature, at(0)), reject("gw-x", RejectBadSignature, at(10)), reject("gw-x", RejectBadSignature, at(20)),
			reject("gw-x", RejectBadSignature, at(21)), reject("gw-y", RejectBadSignature, at(21))), []string{"bad_signatures gw-x"}},
		{"invented gateway ids: one finding per source", func() []step {
			// The attack of issue 11: 900 unsigned messages under 300
			// made-up gateway ids opened 300 alerts.
			var st []step
			for i := range 900 {
				st = append(st, step{in: rejectFrom("@10.0.0.9", fmt.Sprintf("gw-fake-%d", i%300), RejectUnknownGateway, at(float64(i)/60))})
				st = append(st, step{in: rejectFrom("@10.0.0.9", fmt.Sprintf("gw-fake-%d", i%300), RejectBadSignature, at(float64(i)/60))})
			}
			return st
		}(), []string{"bad_signatures source:@10.0.0.9", "unknown_gateway source:@10.0.0.9"}},
		{"sources are bounded", func() []step {
			var st []step
			for i := range maxRejectKeys + 10 {
				st = append(st, step{in: rejectFrom(fmt.Sprintf("@10.1.%d.%d", i/256, i%256), "gw-fake", RejectUnknownGateway, at(0))})
			}
			// after every window (unknown_tags: 10 min) the old sources are forgotten and bursts count again
			return append(st, step{in: rejectFrom("@10.9.9.9", "gw-a", RejectUnknownGateway, at(620))}, step{in: rejectFrom("@10.9.9.9", "gw-b", RejectUnknownGateway, at(621))}, step{in: rejectFrom("@10.9.9.9", "gw-c", RejectUnknownGateway, at(622))})
		}(), []string{"unknown_gateway source:@10.9.9.9"}},
		{"spread out bad signatures", in(reject("gw-x", RejectBadSignature, at(0)), reject("gw-x", RejectBadSignature, at(50)), reject("gw-x", RejectBadSignature, at(110))), nil},
		{"replays and forgeries", in(reject("gw-x", RejectReplay, at(0)), reject("gw-x", RejectReplay, at(1)), reject("gw-x", RejectReplay, at(2)),
			rejectFrom("@10.0.0.66", "gw-evil", RejectUnknownGateway, at(0)), rejectFrom("@10.0.0.66", "gw-evil2", RejectUnknownGateway, at(1)), rejectFrom("@10.0.0.66", "gw-evil", RejectUnknownGateway, at(2)),
			reject("gw-x", "malformed", at(3))), []string{"replayed_messages gw-x", "unknown_gateway source:@10.0.0.66"}},
		{"unbound assets and unknown tags", in(reject("gw-x", RejectUnboundAsset, at(0)), reject("gw-x", RejectUnboundAsset, at(1)), reject("gw-x", RejectUnboundAsset, at(2)),
			reject("gw-d", RejectUnknownTags, at(0)), reject("gw-d", RejectUnknownTags, at(1)), reject("gw-d", RejectUnknownTags, at(500))), []string{"unbound_assets gw-x", "unknown_tags gw-d"}},
		{"old duplicates are replays, fresh ones redeliveries", []step{
			{in: status("gw-x", 1000, at(0), wire.StateOnline)},
			{in: reject("gw-x", RejectDuplicate, at(1))}, {in: reject("gw-x", RejectDuplicate, at(1))}, {in: reject("gw-x", RejectDuplicate, at(1))},
			{in: Input{Rejection: &Rejection{Time: at(2), Gateway: "gw-x", Seq: 5, Reason: RejectDuplicate}}},
			{in: Input{Rejection: &Rejection{Time: at(2), Gateway: "gw-x", Seq: 6, Reason: RejectDuplicate}}},
			{in: Input{Rejection: &Rejection{Time: at(3), Gateway: "gw-x", Seq: 7, Reason: RejectDuplicate}}},
		}, []string{"replayed_messages gw-x", "replayed_messages gw-x"}}, // two bursts of 3 (one alert: they merge)
		{"clock skew against the fleet", []step{
			skewed("gw-1", 1, at(0), time.Second), skewed("gw-2", 1, at(0), 2*time.Second), skewed("gw-3", 1, at(0), -time.Second),
			skewed("gw-4", 1, at(2), 10*time.Minute), skewed("gw-4", 2, at(3), 10*time.Minute), skewed("gw-1", 2, at(4), time.Second),
		}, []string{"clock_skew gw-4"}},
		{"fleet-wide offset (simulated time) is no skew", []step{
			skewed("gw-1", 1, at(0), time.Hour), skewed("gw-2", 1, at(0), time.Hour+time.Second), skewed("gw-3", 1, at(2), time.Hour-time.Second),
		}, nil},
		{"backlog replay is no skew", []step{
			skewed("gw-1", 1, at(0), 0), skewed("gw-2", 1, at(0), 0), skewed("gw-3", 10, at(0), 0), skewed("gw-3", 5, at(2), -time.Hour),
		}, nil},
	}
	for _, tt := range tests {
		got := feed(t, cfg, nil, tt.steps)
		if strings.HasPrefix(tt.name, "invented gateway ids") {
			// A burst that goes on raises a finding per further Count; they
			// all name the source, so they merge into one alert per source.
			if len(got) > 2*900/cfg.Tamper.Unknown.Count {
				t.Errorf("%s: %d findings for 1,800 rejections, want at most one per %d", tt.name, len(got), cfg.Tamper.Unknown.Count)
			}
			got = slices.CompactFunc(got, func(a, b Finding) bool { return a.Type == b.Type && a.Asset == b.Asset })
			slices.SortFunc(got, func(a, b Finding) int { return strings.Compare(string(a.Type), string(b.Type)) })
			got = slices.CompactFunc(got, func(a, b Finding) bool { return a.Type == b.Type && a.Asset == b.Asset })
		}
		check(t, tt.name, got, tt.want)
	}
}

// TestLastWillTime: a gateway-offline finding carries when the gateway
// dropped (after the last message heard), not when its last will was
// sealed at connect time.
func TestLastWillTime(t *testing.T) {
	got := feed(t, Defaults(), nil, in(status("gw-srv-1", 1, at(0), wire.StateOnline), status("gw-srv-1", 2, at(40), wire.StateOnline),
		status("gw-srv-1", 0, at(-100), wire.StateOffline)))
	if len(got) != 1 || got[0].Type != TypeGatewayOffline || !got[0].Time.Equal(at(40)) {
		t.Fatalf("findings %+v, want one gateway_offline at %s", got, at(40))
	}
}

// TestClockSkewAcceleratedFleet: a fleet whose readings run 120 times
// faster than the service clock (a simulation) is not skewed; one gateway
// three minutes ahead of it is.
func TestClockSkewAcceleratedFleet(t *testing.T) {
	var steps []step
	wall := t0.Add(24 * time.Hour)
	for tick := range 2000 {
		sim := t0.Add(time.Duration(tick) * time.Second)
		rec := wall.Add(time.Duration(tick) * time.Second / 120)
		for g := range 8 {
			if g >= 6 && tick%10 != 0 { // site gateways speak every 10 s
				continue
			}
			at := sim
			if g == 3 && tick > 1500 {
				at = sim.Add(3 * time.Minute)
			}
			rec := rec.Add(time.Duration(g) * time.Millisecond)
			m := msg(fmt.Sprintf("gw-%d", g), uint64(tick+1), at)
			m.Recorded = rec
			m.Kind, m.Status = wire.KindStatus, &wire.Status{State: wire.StateOnline}
			steps = append(steps, step{in: Input{Message: m}})
		}
	}
	cfg := Defaults()
	cfg.Gateways.MaxClockSkew = time.Minute
	check(t, "accelerated fleet", feed(t, cfg, nil, steps), []string{"clock_skew gw-3"})
}

func TestDrift(t *testing.T) {
	// Eight GPUs whose temperature follows a shared load with noise; one
	// sensor drifts upward by 0.05 °C a sample from sample 1200 (after
	// the slow check's 15 min of learning).
	host := func(n, drifting int, rate float64) []Input {
		var ins []Input
		seed := uint32(7)
		noise := func() float64 { // deterministic, roughly uniform in [-1.5, 1.5]
			seed = seed*1664525 + 1013904223
			return float64(seed>>8)/float64(1<<24)*3 - 1.5
		}
		for i := range n {
			load := 50 + 30*float64((i/120)%2)
			var gs []wire.GPUSample
			for g := range 8 {
				temp := 35 + 0.4*load + float64(g) + noise()
				if g == drifting && i >= 1200 {
					temp += rate * float64(i-1200)
				}
				gs = append(gs, wire.GPUSample{Asset: fmt.Sprintf("srv.gpu%d", g), TempC: temp})
			}
			ins = append(ins, telemetry("gw", uint64(i+1), at(float64(i)), gs...))
		}
		return ins
	}
	check(t, "steady fleet, 1 simulated hour", feed(t, Defaults(), nil, in(host(3600, -1, 0)...)), nil)
	got := feed(t, Defaults(), nil, in(host(1500, 5, 0.05)...))
	check(t, "drifting sensor", got, []string{"sensor_drift srv.gpu5"})
	if len(got) == 1 && !strings.Contains(got[0].Summary, "up") {
		t.Errorf("drift summary %q does not say up", got[0].Summary)
	}
}

func TestHardware(t *testing.T) {
	g := func(mut func(*wire.GPUSample)) wire.GPUSample {
		s := wire.GPUSample{Asset: "srv.gpu0", UUID: "U", TempC: 60, PowerW: 500, PowerLimitW: 700}
		if mut != nil {
			mut(&s)
		}
		return s
	}
	series := func(n int, every float64, mut func(i int, s *wire.GPUSample)) []Input {
		var ins []Input
		for i := range n {
			ins = append(ins, telemetry("gw", uint64(i+1), at(float64(i)*every), g(func(s *wire.GPUSample) { mut(i, s) })))
		}
		return ins
	}
	tests := []struct {
		name string
		ins  []Input
		want []string
	}{
		{"xid 79", series(3, 1, func(i int, s *wire.GPUSample) {
			if i == 2 {
				s.LastXID, s.XIDCount = 79, 1
			}
		}), []string{"gpu_xid srv.gpu0"}},
		{"application xid 13 is ignored", series(3, 1, func(i int, s *wire.GPUSample) {
			if i == 2 {
				s.LastXID, s.XIDCount = 13, 1
			}
		}), nil},
		{"xid 79 then 31 in the same second: 31 does not mask 79", series(3, 1, func(i int, s *wire.GPUSample) {
			if i == 2 {
				s.LastXID, s.XIDCount, s.XIDs = 31, 2, []int{79, 31}
			}
		}), []string{"gpu_xid srv.gpu0"}},
		{"old xid at first sight is history", series(3, 1, func(i int, s *wire.GPUSample) { s.LastXID, s.XIDCount = 79, 4 }), nil},
		{"double-bit ecc and row remap failure", series(3, 1, func(i int, s *wire.GPUSample) {
			if i == 2 {
				s.ECCDoubleBit, s.RowRemapFailure = 2, true
			}
		}), []string{"ecc_double_bit srv.gpu0", "row_remap_failure srv.gpu0"}},
		{"retired pages over the limit, once", series(4, 1, func(i int, s *wire.GPUSample) { s.RetiredPages = 58 + i }), []string{"retired_pages srv.gpu0"}},
		{"overheating sustained", series(60, 1, func(i int, s *wire.GPUSample) {
			if i >= 20 {
				s.TempC = 95
			}
		}), []string{"overheating srv.gpu0"}},
		{"a hot spike is no overheating", series(60, 1, func(i int, s *wire.GPUSample) {
			if i%20 == 0 {
				s.TempC = 96
			}
		}), nil},
		{"thermal slowdown sustained", series(60, 1, func(i int, s *wire.GPUSample) {
			if i >= 10 {
				s.Throttle = []string{wire.ThrottleSWThermal}
			}
		}), []string{"thermal_slowdown srv.gpu0"}},
		{"power cap is no thermal slowdown", series(60, 1, func(i int, s *wire.GPUSample) { s.Throttle = []string{wire.ThrottlePowerCap} }), nil},
		{"power excursion", series(60, 1, func(i int, s *wire.GPUSample) { s.PowerW = 800 }), []string{"power_excursion srv.gpu0"}},
		{"pcie replay storm", series(10, 20, func(i int, s *wire.GPUSample) { s.PCIeReplays = uint64(i * 100) }), []string{"pcie_replays srv.gpu0"}},
		{"a few pcie replays", series(10, 20, func(i int, s *wire.GPUSample) { s.PCIeReplays = uint64(i) }), nil},
	}
	for _, tt := range tests {
		check(t, tt.name, feed(t, Defaults(), nil, in(tt.ins...)), tt.want)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := Defaults()
	bad.Sites = map[string]SiteConfig{"s1": {Geofence: [][]float64{{1, 2}, {3}, {95, 0}}}}
	bad.Gateways.Heartbeat = []HeartbeatClass{{Match: "[", MaxSilence: 0}}
	bad.Hardware.XIDs[79] = "dire"
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate(bad) = nil, want errors")
	}
	for _, want := range []string{"detect.sites.s1.geofence.1", "detect.sites.s1.geofence.2", "detect.gateways.heartbeat.0.match", "detect.gateways.heartbeat.0.max_silence", "detect.hardware.xids.79"} {
		if !strings.Contains(err.Error(), want+":") {
			t.Errorf("Validate(bad) = %v, want an error at %s", err, want)
		}
	}
	good := Defaults()
	if err := good.Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v, want nil", err)
	}
}

func TestSeverityText(t *testing.T) {
	for _, s := range []Severity{Info, Warning, Critical} {
		b, _ := s.MarshalText()
		var back Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("severity round trip %v = %v, %v", s, back, err)
		}
	}
	if _, err := ParseSeverity("dire"); err == nil {
		t.Errorf("ParseSeverity(dire) = nil error, want error")
	}
}

// TestReplayNamesItsSource: a replay alert says where the replay came from.
func TestReplayNamesItsSource(t *testing.T) {
	var steps []step
	for i := range 3 {
		r := &Rejection{Time: t0.Add(time.Duration(i) * time.Second), Gateway: "gw-x", Seq: uint64(i + 1), Reason: RejectReplay,
			Source: "gw-x@10.0.0.7", SourceClient: "gw-x", From: "client gw-x at 10.0.0.7:40112"}
		steps = append(steps, step{in: Input{Rejection: r}})
	}
	got := feed(t, Defaults(), nil, steps)
	if len(got) != 1 || got[0].Type != TypeReplayedMessages || !strings.Contains(got[0].Summary, "10.0.0.7:40112") || got[0].Evidence.Values["from"] != "client gw-x at 10.0.0.7:40112" {
		t.Errorf("replay findings = %+v, want one replayed_messages naming client gw-x at 10.0.0.7:40112", got)
	}
}

// TestXIDNotMasked: XID 79 followed in the same second by XID 13 (listed as
// info) raises a critical alert naming 79, and an older 79 still in the
// recent list does not count again.
func TestXIDNotMasked(t *testing.T) {
	cfg := Defaults()
	cfg.Hardware.XIDs[13] = "info"
	sample := func(count uint64, xids ...int) wire.GPUSample {
		return wire.GPUSample{Asset: "srv.gpu0", TempC: 60, XIDCount: count, LastXID: xids[len(xids)-1], XIDs: xids}
	}
	got := feed(t, cfg, nil, in(telemetry("gw", 1, at(0), sample(1, 48)), telemetry("gw", 2, at(1), sample(3, 48, 79, 13)),
		telemetry("gw", 3, at(2), sample(4, 48, 79, 13, 13))))
	check(t, "79 then 13", got, []string{"gpu_xid srv.gpu0", "gpu_xid srv.gpu0"})
	if len(got) == 2 {
		if got[0].Severity != Critical || got[0].Evidence.Values["xid"] != "79" {
			t.Errorf("79 then 13: severity %s xid %s, want critical 79", got[0].Severity, got[0].Evidence.Values["xid"])
		}
		if got[1].Severity != Info || got[1].Evidence.Values["xid"] != "13" {
			t.Errorf("a later 13 alone: severity %s xid %s, want info 13", got[1].Severity, got[1].Evidence.Values["xid"])
		}
	}
}

// TestBadSignaturesRecur: a wave of forged messages that goes on after the
// first burst keeps raising findings (one per further burst), so after
// its alert was resolved the next ones open a new alert.
func TestBadSignaturesRecur(t *testing.T) {
	var st []step
	for i := range 3 {
		st = append(st, step{in: reject("gw-x", RejectBadSignature, at(float64(i)))})
	}
	for i := range 24 {
		st = append(st, step{in: reject("gw-x", RejectBadSignature, at(30+float64(i)))})
	}
	got := feed(t, Defaults(), nil, st)
	if len(got) != 9 {
		t.Fatalf("27 forged messages in bursts of 3: %d findings (%q), want 9", len(got), found(got))
	}
	for _, f := range got {
		if f.Type != TypeBadSignatures || f.Asset != "gw-x" || f.Severity != Critical {
			t.Errorf("finding %s %s %s, want critical bad_signatures gw-x", f.Type, f.Asset, f.Severity)
		}
	}
}

// TestTheftThenSilence: a gateway whose last fix lies outside its site's
// fence and that then falls silent within the entry delay raises
// geofence_exit once the delay has passed on the service clock; one that
// comes back inside before that does not.
func TestTheftThenSilence(t *testing.T) {
	cfg := Defaults()
	cfg.Sites = map[string]SiteConfig{"s1": {Geofence: square}}
	east := func(m float64) float64 { return 13.408 + m/(111320*0.6088) }
	dock := func(f *fleet) Input {
		return f.change("gw-dock", at(0), func(a *twin.Asset) { a.Kind, a.Site, a.Custody.Status = twin.KindGateway, "s1", twin.StatusMaintenance })
	}
	f := newFleet()
	got := feed(t, cfg, nil, []step{{in: dock(f)}, {in: fix("gw-dock", 1, at(0), "gw-dock", 52.5, east(-50))},
		{in: fix("gw-dock", 2, at(10), "gw-dock", 52.5, east(200))}, {tick: at(20)}, {tick: at(39)}, {tick: at(41)}, {tick: at(100)}})
	check(t, "stolen, then silent", got, []string{"geofence_exit gw-dock"})
	if len(got) == 1 && (!strings.Contains(got[0].Summary, "silent") || got[0].Time.Before(at(40))) {
		t.Errorf("finding %q at %s: want it to say silent, at the end of the entry delay", got[0].Summary, got[0].Time)
	}
	f = newFleet()
	check(t, "back inside in time", feed(t, cfg, nil, []step{{in: dock(f)}, {in: fix("gw-dock", 1, at(0), "gw-dock", 52.5, east(-50))},
		{in: fix("gw-dock", 2, at(10), "gw-dock", 52.5, east(200))}, {in: fix("gw-dock", 3, at(20), "gw-dock", 52.5, east(-50))}, {tick: at(100)}}), nil)

	// Reporting every 10 s from outside: the tick between two fixes at the
	// end of the entry delay does not call it silent; the fix that is due
	// reports the exit, and says where it is.
	f = newFleet()
	got = feed(t, cfg, nil, []step{{in: dock(f)}, {in: fix("gw-dock", 1, at(0), "gw-dock", 52.5, east(-50))},
		{in: fix("gw-dock", 2, at(10), "gw-dock", 52.5, east(200))}, {in: fix("gw-dock", 3, at(20), "gw-dock", 52.5, east(210))},
		{in: fix("gw-dock", 4, at(30), "gw-dock", 52.5, east(220))}, {tick: at(40.5)}, {in: fix("gw-dock", 5, at(41), "gw-dock", 52.5, east(230))},
		{tick: at(100)}})
	check(t, "reporting from outside", got, []string{"geofence_exit gw-dock"})
	if len(got) == 1 && (strings.Contains(got[0].Summary, "silent") || !got[0].Time.Equal(at(41))) {
		t.Errorf("finding %q at %s: want the fix at %s to report it, not silence", got[0].Summary, got[0].Time, at(41))
	}
}

// TestLivenessAcceleratedFleet: a simulated fleet reads 60 times faster
// than the service clock. A gateway that stops is silent 60 times faster
// too; when the whole fleet stops (the simulation ended), time passes at
// the service clock's pace again: nobody is missed for two real minutes.
func TestLivenessAcceleratedFleet(t *testing.T) {
	wall := t0.Add(24 * time.Hour)
	var steps []step
	seq := uint64(0)
	for tick := range 150 { // 15 s of service time, 100 ms apart
		rec := wall.Add(time.Duration(tick) * 100 * time.Millisecond)
		sim := t0.Add(time.Duration(tick) * 6 * time.Second)
		seq++
		for g := range 4 {
			if g == 3 && tick >= 50 {
				continue // gw-3 stops after 5 s (5 simulated minutes)
			}
			m := msg(fmt.Sprintf("gw-%d", g), seq, sim)
			m.Recorded = rec
			m.Kind, m.Status = wire.KindStatus, &wire.Status{State: wire.StateOnline}
			steps = append(steps, step{in: Input{Message: m}})
		}
		steps = append(steps, step{tick: rec})
	}
	end := wall.Add(15 * time.Second)
	steps = append(steps, step{tick: end.Add(30 * time.Second)}, step{tick: end.Add(100 * time.Second)})
	check(t, "accelerated fleet, then the end of the simulation", feed(t, Defaults(), nil, steps), []string{"heartbeat_missed gw-3"})
	steps = append(steps, step{tick: end.Add(125 * time.Second)})
	check(t, "two real minutes after the end", feed(t, Defaults(), nil, steps),
		[]string{"heartbeat_missed gw-0", "heartbeat_missed gw-1", "heartbeat_missed gw-2", "heartbeat_missed gw-3"})
}

// TestFindingsPlaced: a finding names the server its GPU sits in and that
// server's rack (what incidents group by); a gateway's (no twin) neither.
func TestFindingsPlaced(t *testing.T) {
	f := newFleet()
	srv := f.change("srv", at(0), func(a *twin.Asset) { a.Kind, a.Site, a.Identity.Rack = twin.KindServer, "s1", "r7" })
	g := f.change("srv.gpu0", at(0), gpu("s1", "srv", 0, "U0"))
	sample := func(n uint64) wire.GPUSample {
		return wire.GPUSample{Asset: "srv.gpu0", TempC: 60, XIDCount: n, LastXID: 79}
	}
	got := feed(t, Defaults(), nil, append(in(srv, g, telemetry("gw", 1, at(0), sample(0)), telemetry("gw", 2, at(1), sample(1))),
		step{tick: at(600)}))
	check(t, "placed", got, []string{"gpu_xid srv.gpu0", "heartbeat_missed gw"})
	for _, f := range got {
		host, rack := "srv", "r7"
		if f.Asset == "gw" {
			host, rack = "", ""
		}
		if f.Host != host || f.Rack != rack {
			t.Errorf("%s %s placed in host %q rack %q, want %q %q", f.Type, f.Asset, f.Host, f.Rack, host, rack)
		}
	}
}

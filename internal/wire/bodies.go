package wire

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"twinchain/internal/fastjson"
)

// Telemetry is a host's GPUs at one or more sampling instants. One message
// carries every GPU of the host, so one signature covers many readings.
//
// It has two forms. The one-sample form (GPUs; every agent before the
// publish interval sends it) is one instant at the envelope's time. The
// several-sample form (Samples) carries up to MaxSamples instants of an
// agent whose publish interval is longer than its sampling interval, oldest
// first, each at its own time inside the envelope's window (SampleWindow
// before the envelope's time, up to that time): the per-message costs
// (signature, envelope, log record, broker) are paid once per message, not
// once per instant. DecodeTelemetry checks either form and returns the
// instants in Samples.
type Telemetry struct {
	Host    string            `json:"host"`           // asset id of the host
	GPUs    []GPUSample       `json:"gpus,omitempty"` // the one-sample form
	Samples []TelemetrySample `json:"samples,omitempty"`
}

// TelemetrySample is one sampling instant of a host's GPUs in a
// several-sample telemetry message.
type TelemetrySample struct {
	TS   time.Time   `json:"ts"`
	GPUs []GPUSample `json:"gpus"`
}

// MaxSamples is the most sampling instants one telemetry message carries
// (a minute at 1 Hz).
const MaxSamples = 60

// SampleWindow is how long before its envelope's time a telemetry message's
// oldest sample may be: MaxSamples at a 10 s sampling interval.
const SampleWindow = 10 * time.Minute

// ErrSamples is a telemetry message whose samples break the contract: too
// many, not in time order, outside the envelope's window, or both forms.
var ErrSamples = errors.New("bad telemetry samples")

// DecodeTelemetry decodes a telemetry envelope's body, checks its samples
// and returns it with every instant in Samples, oldest first: the
// one-sample form becomes one sample at the envelope's time (GPUs is then
// nil, so a caller reads one form only). The newest sample's GPUs are the
// host's latest readings.
//
// Bodies of the shape agents send take a hand-written scanner
// (scanTelemetry); any other body takes encoding/json's rules, with the same
// values and errors either way.
func DecodeTelemetry(e *Envelope) (Telemetry, error) {
	t, ok := scanTelemetry(e.Body)
	if !ok {
		var err error
		if t, err = unmarshalTelemetry(e.Body); err != nil {
			return Telemetry{}, fmt.Errorf("%w: %s body: %v", ErrMalformed, e.Kind, err)
		}
	}
	return t, t.normalize(e.Time)
}

// unmarshalTelemetry is DecodeTelemetry's general path: encoding/json's
// rules (fastjson), into a presized Telemetry.
func unmarshalTelemetry(body []byte) (Telemetry, error) {
	var t Telemetry
	t.presize(body)
	err := fastjson.Unmarshal(body, &t)
	return t, err
}

// presize gives a several-sample body's Samples, and each sample's GPUs,
// their capacity before decoding, guessed from how often "ts": and
// "asset": occur in it: the decoder then appends into them (encoding/json's
// rules for a slice) instead of growing every sample's GPUs 1, 2, 4, 8, a
// third of the decoding's CPU in a profile of 10-sample messages. A wrong
// guess costs only the growth it was to save.
func (t *Telemetry) presize(body []byte) {
	n := bytes.Count(body, []byte(`"ts":`))
	if n < 2 || n > MaxSamples {
		return
	}
	per := (bytes.Count(body, []byte(`"asset":`)) + n - 1) / n
	if per < 1 || per > 64 {
		return
	}
	t.Samples = make([]TelemetrySample, n)
	for j := range t.Samples {
		// one array per sample, not one for all: a twin's latest readings
		// point into the newest sample's and keep only that one alive
		t.Samples[j].GPUs = make([]GPUSample, 0, per)
	}
	t.Samples = t.Samples[:0]
}

func (t *Telemetry) normalize(at time.Time) error {
	if len(t.Samples) == 0 {
		t.Samples = []TelemetrySample{{TS: at, GPUs: t.GPUs}}
		t.GPUs = nil
		return nil
	}
	if t.GPUs != nil {
		return fmt.Errorf("%w: both gpus and samples", ErrSamples)
	}
	if len(t.Samples) > MaxSamples {
		return fmt.Errorf("%w: %d samples, at most %d", ErrSamples, len(t.Samples), MaxSamples)
	}
	from := at.Add(-SampleWindow)
	for i := range t.Samples {
		ts := t.Samples[i].TS
		switch {
		case ts.After(at) || ts.Before(from):
			return fmt.Errorf("%w: samples[%d] at %s is outside the envelope's window [%s, %s]", ErrSamples, i, ts.Format(time.RFC3339Nano), from.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
		case i > 0 && !ts.After(t.Samples[i-1].TS):
			return fmt.Errorf("%w: samples[%d] at %s is not after samples[%d]", ErrSamples, i, ts.Format(time.RFC3339Nano), i-1)
		}
	}
	return nil
}

// Latest is the newest sample (the host's latest readings); nil before
// DecodeTelemetry for the one-sample form.
func (t *Telemetry) Latest() *TelemetrySample {
	if len(t.Samples) == 0 {
		return nil
	}
	return &t.Samples[len(t.Samples)-1]
}

// GPUSample is one GPU's readings at one instant. Counters are cumulative
// since the driver loaded, as NVML reports them.
type GPUSample struct {
	Asset           string   `json:"asset"` // asset id of the GPU, e.g. "srv-s1-001.gpu3"
	Index           int      `json:"index"`
	UUID            string   `json:"uuid"`
	TempC           float64  `json:"temp_c"`
	MemTempC        float64  `json:"mem_temp_c,omitempty"`
	PowerW          float64  `json:"power_w"`
	PowerLimitW     float64  `json:"power_limit_w,omitempty"`
	UtilPct         float64  `json:"util_pct"`
	MemUtilPct      float64  `json:"mem_util_pct"`
	SMClockMHz      int      `json:"sm_clock_mhz"`
	MemClockMHz     int      `json:"mem_clock_mhz"`
	ECCSingleBit    uint64   `json:"ecc_sbe"`
	ECCDoubleBit    uint64   `json:"ecc_dbe"`
	RetiredPages    int      `json:"retired_pages"`
	RemappedRows    int      `json:"remapped_rows"`               // correctable + uncorrectable remaps
	RowRemapFailure bool     `json:"row_remap_failure,omitempty"` // the GPU ran out of spare rows
	LastXID         int      `json:"last_xid,omitempty"`
	XIDCount        uint64   `json:"xid_count"`
	XIDs            []int    `json:"xids,omitempty"`     // the newest XIDs, oldest first (MaxRecentXIDs): with XIDCount, every XID since the last sample
	Throttle        []string `json:"throttle,omitempty"` // e.g. "hw_slowdown", "sw_thermal", "power_cap"
	PCIeReplays     uint64   `json:"pcie_replays"`
}

// MaxRecentXIDs bounds GPUSample.XIDs, so one XID does not hide another
// that came in the same second.
const MaxRecentXIDs = 8

// Throttle reasons, named after NVML's clocks-event reasons.
const (
	ThrottleGPUIdle       = "gpu_idle"
	ThrottleAppClocks     = "app_clocks"
	ThrottlePowerCap      = "power_cap"
	ThrottleHWSlowdown    = "hw_slowdown"
	ThrottleSyncBoost     = "sync_boost"
	ThrottleSWThermal     = "sw_thermal"
	ThrottleHWThermal     = "hw_thermal"
	ThrottleHWPowerBrake  = "hw_power_brake"
	ThrottleDisplayClocks = "display_clocks"
)

// Inventory is a host's identity and firmware and that of each of its GPUs,
// sent at start, on every change and periodically.
type Inventory struct {
	Host HostInfo      `json:"host"`
	GPUs []GPUIdentity `json:"gpus"`
}

// HostInfo identifies a host (a server or a gateway) and its firmware.
type HostInfo struct {
	Asset       string `json:"asset"`
	Hostname    string `json:"hostname,omitempty"`
	Serial      string `json:"serial,omitempty"`
	BoardPart   string `json:"board_part,omitempty"`
	RFIDTag     string `json:"rfid_tag,omitempty"` // EPC of the tag fixed to the chassis
	Rack        string `json:"rack,omitempty"`
	BIOSVersion string `json:"bios,omitempty"`
	BMCVersion  string `json:"bmc,omitempty"`
}

// GPUIdentity is one GPU's identity fingerprint and firmware.
type GPUIdentity struct {
	Asset           string `json:"asset"`
	Index           int    `json:"index"`
	Name            string `json:"name,omitempty"` // product name, e.g. "NVIDIA H100 80GB HBM3"
	UUID            string `json:"uuid"`
	Serial          string `json:"serial"`
	PCIBusID        string `json:"pci_bus_id"`
	BoardPartNumber string `json:"board_part"`
	VBIOS           string `json:"vbios"`
	Driver          string `json:"driver"`
	InfoROM         string `json:"inforom"` // the InfoROM image version
}

// RFID is a batch of merged tag reads from one gateway's readers.
type RFID struct {
	Reads []RFIDRead `json:"reads"`
}

// RFIDRead is one tag seen at one read point, merged over a window.
type RFIDRead struct {
	Reader    string    `json:"reader"`
	ReadPoint string    `json:"read_point"`
	Zone      string    `json:"zone"`
	EPC       string    `json:"epc"` // tag id in upper-case hex (EPC, or EM4100 id)
	RSSI      float64   `json:"rssi,omitempty"`
	Antenna   int       `json:"antenna,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int       `json:"count"`
}

// GPSFix is one position report of the asset a receiver is fixed to.
// FixTime is the receiver's time of fix on the receiver's date; it is zero
// when the receiver has sent no date yet (a GGA-only stream before its
// first ZDA): the agent never dates a fix with its own clock.
type GPSFix struct {
	Asset     string    `json:"asset"`
	Lat       float64   `json:"lat"`
	Lon       float64   `json:"lon"`
	AltM      float64   `json:"alt_m"`
	Quality   int       `json:"quality"` // NMEA GGA fix quality: 1 GPS, 2 DGPS, 4 RTK fixed, ...
	HDOP      float64   `json:"hdop"`
	Sats      int       `json:"sats"`
	SpeedMS   float64   `json:"speed_ms"`
	CourseDeg float64   `json:"course_deg"`
	FixTime   time.Time `json:"fix_time"`
}

// Gateway states carried by Status.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// Status is a gateway's own state. The last will is a Status with State
// "offline" and sequence number 0: it is signed when the agent connects, so
// it cannot take a sequence number that later messages would pass.
type Status struct {
	State        string   `json:"state"`
	AgentVersion string   `json:"agent_version,omitempty"`
	QueueDepth   int      `json:"queue_depth"`
	Dropped      uint64   `json:"dropped"`                // readings dropped from a full queue, ever
	DroppedSeqs  []uint64 `json:"dropped_seqs,omitempty"` // [first, last] of the newest dropped range
	Reason       string   `json:"reason,omitempty"`
}

// Package gpu reads a host's GPUs: identity, firmware, telemetry and XID/ECC
// events. Two sources sit behind one small interface: NVML (when the host has
// an NVIDIA driver) and a simulated source fed by firmware-sim over a file or
// a unix socket. Both produce a Snapshot, the values NVML reports in NVML's
// own units; turning a Snapshot into wire bodies is pure and tested on
// recorded snapshots in testdata/.
package gpu

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"twinchain/internal/wire"
)

// Snapshot is one reading of every GPU on a host, as NVML reports it.
type Snapshot struct {
	Time    time.Time `json:"time"`
	Driver  string    `json:"driver"`
	Devices []Device  `json:"devices"`
	// Events are XID and ECC events, each with an id that increases, so a
	// reader that sees one event twice (in two snapshots) counts it once.
	Events []Event `json:"events,omitempty"`
}

// Device is one GPU's NVML readings. Units are NVML's: milliwatts, degrees C,
// percent, MHz. Unsupported lists the readings NVML answered
// ERROR_NOT_SUPPORTED for (N/A in nvidia-smi); they are left zero.
type Device struct {
	Index              int      `json:"index"`
	Name               string   `json:"name"`
	UUID               string   `json:"uuid"`
	Serial             string   `json:"serial"`
	PCIBusID           string   `json:"pci_bus_id"`
	BoardPart          string   `json:"board_part"`
	VBIOS              string   `json:"vbios"`
	InfoROM            string   `json:"inforom"` // InfoROM image version
	TempC              uint32   `json:"temp_c"`
	MemTempC           uint32   `json:"mem_temp_c"`
	PowerMW            uint32   `json:"power_mw"`
	PowerLimitMW       uint32   `json:"power_limit_mw"`
	UtilGPU            uint32   `json:"util_gpu"`
	UtilMem            uint32   `json:"util_mem"`
	SMClockMHz         uint32   `json:"sm_clock_mhz"`
	MemClockMHz        uint32   `json:"mem_clock_mhz"`
	ECCVolatileSBE     uint64   `json:"ecc_volatile_sbe"` // corrected, since the driver loaded
	ECCVolatileDBE     uint64   `json:"ecc_volatile_dbe"` // uncorrected, since the driver loaded
	RetiredPagesSBE    int      `json:"retired_pages_sbe"`
	RetiredPagesDBE    int      `json:"retired_pages_dbe"`
	RemapCorrectable   int      `json:"remap_correctable"`
	RemapUncorrectable int      `json:"remap_uncorrectable"`
	RemapFailure       bool     `json:"remap_failure"`
	ClocksEventReasons uint64   `json:"clocks_event_reasons"` // NVML bitmask
	PCIeReplays        uint32   `json:"pcie_replays"`
	Unsupported        []string `json:"unsupported,omitempty"`
	// Processes are NVML's running compute processes on the GPU.
	Processes []Process `json:"processes,omitempty"`
}

// Process is one compute process on a GPU, as NVML reports it.
type Process struct {
	PID      uint32 `json:"pid"`
	Name     string `json:"name,omitempty"` // NVML's process name; the agent reads /proc/PID/comm when empty
	MemBytes uint64 `json:"mem_bytes"`      // GPU memory used
}

// Event types.
const (
	EventXID    = "xid"     // Data is the XID number
	EventECCSBE = "ecc_sbe" // single-bit ECC error
	EventECCDBE = "ecc_dbe" // double-bit ECC error
)

// Event is one NVML event on one GPU.
type Event struct {
	ID    uint64 `json:"id"`
	Index int    `json:"index"`
	Type  string `json:"type"`
	Data  uint64 `json:"data,omitempty"`
}

// ErrSnapshot wraps every reason a snapshot is refused.
var ErrSnapshot = errors.New("bad gpu snapshot")

// maxDevices bounds a snapshot; NVML hosts have at most a few dozen GPUs.
const maxDevices = 64

// ParseSnapshot decodes and checks one snapshot (one JSON object).
func ParseSnapshot(data []byte) (Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return Snapshot{}, fmt.Errorf("%w: %v", ErrSnapshot, err)
	}
	if err := s.Check(); err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

// Check reports the first implausible value in s.
func (s *Snapshot) Check() error {
	if len(s.Devices) > maxDevices {
		return fmt.Errorf("%w: %d devices, at most %d", ErrSnapshot, len(s.Devices), maxDevices)
	}
	seen := map[int]bool{}
	for _, d := range s.Devices {
		switch {
		case d.Index < 0 || d.Index >= maxDevices || seen[d.Index]:
			return fmt.Errorf("%w: device index %d out of range or repeated", ErrSnapshot, d.Index)
		case len(d.UUID) < 8 || len(d.UUID) > 96:
			return fmt.Errorf("%w: device %d: uuid %q", ErrSnapshot, d.Index, d.UUID)
		case d.TempC > 200 || d.MemTempC > 200:
			return fmt.Errorf("%w: device %d: temperature %d/%d C", ErrSnapshot, d.Index, d.TempC, d.MemTempC)
		case d.UtilGPU > 100 || d.UtilMem > 100:
			return fmt.Errorf("%w: device %d: utilisation %d/%d%%", ErrSnapshot, d.Index, d.UtilGPU, d.UtilMem)
		case d.RetiredPagesSBE < 0 || d.RetiredPagesDBE < 0 || d.RemapCorrectable < 0 || d.RemapUncorrectable < 0:
			return fmt.Errorf("%w: device %d: negative counter", ErrSnapshot, d.Index)
		case len(d.Processes) > wire.MaxGPUProcesses:
			return fmt.Errorf("%w: device %d: %d processes, at most %d", ErrSnapshot, d.Index, len(d.Processes), wire.MaxGPUProcesses)
		}
		for _, p := range d.Processes {
			if p.PID == 0 || len(p.Name) > wire.MaxWorkloadString {
				return fmt.Errorf("%w: device %d: process %d %q", ErrSnapshot, d.Index, p.PID, p.Name)
			}
		}
		seen[d.Index] = true
	}
	for _, e := range s.Events {
		if !seen[e.Index] || (e.Type != EventXID && e.Type != EventECCSBE && e.Type != EventECCDBE) {
			return fmt.Errorf("%w: event %d: type %q on device %d", ErrSnapshot, e.ID, e.Type, e.Index)
		}
	}
	return nil
}

// throttleBits are NVML's clocks-event reason bits and their wire names.
var throttleBits = []struct {
	bit  uint64
	name string
}{
	{0x1, wire.ThrottleGPUIdle},
	{0x2, wire.ThrottleAppClocks},
	{0x4, wire.ThrottlePowerCap},
	{0x8, wire.ThrottleHWSlowdown},
	{0x10, wire.ThrottleSyncBoost},
	{0x20, wire.ThrottleSWThermal},
	{0x40, wire.ThrottleHWThermal},
	{0x80, wire.ThrottleHWPowerBrake},
	{0x100, wire.ThrottleDisplayClocks},
}

// ThrottleReasons names the bits of an NVML clocks-event reasons mask.
func ThrottleReasons(mask uint64) []string {
	var out []string
	for _, b := range throttleBits {
		if mask&b.bit != 0 {
			out = append(out, b.name)
		}
	}
	return out
}

// ThrottleMask is the inverse of ThrottleReasons; unknown names are ignored.
func ThrottleMask(names []string) uint64 {
	var m uint64
	for _, b := range throttleBits {
		if slices.Contains(names, b.name) {
			m |= b.bit
		}
	}
	return m
}

// AssetID names the GPU in slot index of host: "srv-s1-001.gpu3".
func AssetID(host string, index int) string { return host + ".gpu" + strconv.Itoa(index) }

// Events accumulates XID events per GPU across snapshots.
type Events struct {
	lastID uint64
	count  map[string]uint64 // by UUID
	last   map[string]int
	recent map[string][]int // the newest XIDs, oldest first, at most wire.MaxRecentXIDs
}

// Apply counts the events of s not seen before.
func (ev *Events) Apply(s *Snapshot) {
	if ev.count == nil {
		ev.count, ev.last, ev.recent = map[string]uint64{}, map[string]int{}, map[string][]int{}
	}
	uuid := map[int]string{}
	for _, d := range s.Devices {
		uuid[d.Index] = d.UUID
	}
	for _, e := range s.Events {
		if e.ID <= ev.lastID {
			continue
		}
		ev.lastID = e.ID
		if e.Type == EventXID {
			ev.count[uuid[e.Index]]++
			ev.last[uuid[e.Index]] = int(e.Data)
			r := append(ev.recent[uuid[e.Index]], int(e.Data))
			ev.recent[uuid[e.Index]] = r[max(0, len(r)-wire.MaxRecentXIDs):]
		}
	}
}

// Identity turns a snapshot into the identity of host's GPUs.
func Identity(host string, s *Snapshot) []wire.GPUIdentity {
	out := make([]wire.GPUIdentity, 0, len(s.Devices))
	for _, d := range s.Devices {
		out = append(out, wire.GPUIdentity{Asset: AssetID(host, d.Index), Index: d.Index, Name: d.Name, UUID: d.UUID,
			Serial: d.Serial, PCIBusID: d.PCIBusID, BoardPartNumber: d.BoardPart, VBIOS: d.VBIOS, Driver: s.Driver, InfoROM: d.InfoROM})
	}
	slices.SortFunc(out, func(a, b wire.GPUIdentity) int { return a.Index - b.Index })
	return out
}

// Telemetry turns a snapshot into one telemetry body, in wire units.
func Telemetry(host string, s *Snapshot, ev *Events) wire.Telemetry {
	t := wire.Telemetry{Host: host, GPUs: make([]wire.GPUSample, 0, len(s.Devices))}
	for _, d := range s.Devices {
		g := wire.GPUSample{
			Asset: AssetID(host, d.Index), Index: d.Index, UUID: d.UUID,
			TempC: float64(d.TempC), MemTempC: float64(d.MemTempC),
			PowerW: float64(d.PowerMW) / 1000, PowerLimitW: float64(d.PowerLimitMW) / 1000,
			UtilPct: float64(d.UtilGPU), MemUtilPct: float64(d.UtilMem),
			SMClockMHz: int(d.SMClockMHz), MemClockMHz: int(d.MemClockMHz),
			ECCSingleBit: d.ECCVolatileSBE, ECCDoubleBit: d.ECCVolatileDBE,
			RetiredPages: d.RetiredPagesSBE + d.RetiredPagesDBE,
			RemappedRows: d.RemapCorrectable + d.RemapUncorrectable, RowRemapFailure: d.RemapFailure,
			Throttle: ThrottleReasons(d.ClocksEventReasons), PCIeReplays: uint64(d.PCIeReplays),
		}
		if ev != nil {
			g.XIDCount, g.LastXID, g.XIDs = ev.count[d.UUID], ev.last[d.UUID], slices.Clone(ev.recent[d.UUID])
		}
		t.GPUs = append(t.GPUs, g)
	}
	slices.SortFunc(t.GPUs, func(a, b wire.GPUSample) int { return a.Index - b.Index })
	return t
}

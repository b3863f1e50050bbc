// Package twin is the digital twin of one asset and the pure fold that moves
// it: next := Apply(prev, event). It does no I/O.
//
// A twin has two kinds of data. Tracked fields (identity, firmware, location,
// health counters and state, custody) change only through events: each change
// is an Event with the next revision, and the twin is the fold of its events.
// Observations (the latest telemetry sample, the latest GPS fix, last seen,
// sample counts) are refreshed by every message without a new revision; they
// are the twin's view of "now", and the telemetry store keeps their history.
package twin

import (
	"time"

	"twinchain/internal/wire"
)

// Kind is what sort of hardware an asset is.
type Kind string

// Asset kinds.
const (
	KindGPU     Kind = "gpu"
	KindServer  Kind = "server"
	KindGateway Kind = "gateway"
	KindRack    Kind = "rack"
	KindTag     Kind = "tag" // a tagged item known only by its RFID tag
)

// Status is an asset's custody status.
type Status string

// Custody statuses.
const (
	StatusInService   Status = "in_service"
	StatusInTransit   Status = "in_transit"
	StatusMaintenance Status = "maintenance"
	StatusQuarantined Status = "quarantined"
	StatusRetired     Status = "retired"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusInService, StatusInTransit, StatusMaintenance, StatusQuarantined, StatusRetired:
		return true
	}
	return false
}

// Health states.
const (
	HealthUnknown  = "unknown"
	HealthOK       = "ok"
	HealthWarning  = "warning"
	HealthCritical = "critical"
)

// Asset is the twin of one piece of hardware.
type Asset struct {
	ID       string   `json:"id"`
	Kind     Kind     `json:"kind"`
	Site     string   `json:"site,omitempty"`
	Parent   string   `json:"parent,omitempty"`  // the asset this one sits in: GPU -> server
	Gateway  string   `json:"gateway,omitempty"` // the gateway that reports it
	Identity Identity `json:"identity"`
	Firmware Firmware `json:"firmware"`
	Location Location `json:"location"`
	Health   Health   `json:"health"`
	Custody  Custody  `json:"custody"`
	// Workload is what ran on a GPU at its newest workloads report (an
	// observation): the processes and the artifacts they serve.
	Workload *Workload `json:"workload,omitempty"`
	Revision uint64    `json:"revision"`
	// Updated is the reading time of the event that made this revision.
	Updated time.Time `json:"updated"`
	// LastSeen is the reading time of the newest message about the asset.
	LastSeen time.Time `json:"last_seen"`
}

// Identity is the fingerprint that tells one physical part from another.
type Identity struct {
	Name      string `json:"name,omitempty"`
	Serial    string `json:"serial,omitempty"`
	UUID      string `json:"uuid,omitempty"`
	PCIBusID  string `json:"pci_bus_id,omitempty"`
	BoardPart string `json:"board_part,omitempty"`
	RFIDTag   string `json:"rfid_tag,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	Rack      string `json:"rack,omitempty"`
}

// Firmware is what runs below the operating system.
type Firmware struct {
	VBIOS   string `json:"vbios,omitempty"`
	Driver  string `json:"driver,omitempty"`
	InfoROM string `json:"inforom,omitempty"`
	BIOS    string `json:"bios,omitempty"`
	BMC     string `json:"bmc,omitempty"`
}

// Location is where the asset was last placed. Zone and read point come from
// RFID reads; Lat/Lon are the last position recorded as an event (a move
// beyond the ingest's threshold); GPS is the latest fix, an observation.
type Location struct {
	Zone      string       `json:"zone,omitempty"`
	ReadPoint string       `json:"read_point,omitempty"`
	Lat       float64      `json:"lat,omitempty"`
	Lon       float64      `json:"lon,omitempty"`
	GPS       *wire.GPSFix `json:"gps,omitempty"` // observation
}

// Health holds the event-tracked counters and state, and the latest sample.
type Health struct {
	State           string          `json:"state"`
	ECCDoubleBit    uint64          `json:"ecc_dbe"`
	XIDCount        uint64          `json:"xid_count"`
	LastXID         int             `json:"last_xid,omitempty"`
	RetiredPages    int             `json:"retired_pages"`
	RemappedRows    int             `json:"remapped_rows"`
	RowRemapFailure bool            `json:"row_remap_failure,omitempty"`
	Samples         uint64          `json:"samples"`          // observation: telemetry samples folded in
	Latest          *wire.GPUSample `json:"latest,omitempty"` // observation
}

// Workload is one GPU's processes as its agent reported them at At, in the
// gateway's signed message Gateway/Seq, stored at message log position Pos
// (0: not known), where the signed bytes can be read back.
type Workload struct {
	At        time.Time      `json:"at"`
	Processes []wire.Process `json:"processes"`
	Gateway   string         `json:"gateway,omitempty"`
	Seq       uint64         `json:"seq,omitempty"`
	Pos       uint64         `json:"pos,omitempty"`
}

// Custody says who holds the asset and in what state.
type Custody struct {
	Owner  string `json:"owner,omitempty"`
	Holder string `json:"holder,omitempty"`
	Status Status `json:"status"`
}

// Package detect holds the detectors: pure units that take what the twin
// service saw (twin events, decoded wire bodies, ingest rejections) and a
// time, and return findings. They do no I/O and read no clock; all state they
// keep (baselines, last positions, hysteresis) lives in the detector value.
//
// A Set runs every detector on one Input. The engine (internal/detect/detectsvc)
// feeds it from the durable logs, decides which findings a work order
// explains, and hands the rest to the alert store.
package detect

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// Severity orders findings and alerts.
type Severity int

// Severities, lowest first.
const (
	Info Severity = iota + 1
	Warning
	Critical
)

var severityNames = map[Severity]string{Info: "info", Warning: "warning", Critical: "critical"}

func (s Severity) String() string {
	if n, ok := severityNames[s]; ok {
		return n
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// ParseSeverity reads "info", "warning" or "critical".
func ParseSeverity(s string) (Severity, error) {
	for k, v := range severityNames {
		if v == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (want info, warning or critical)", s)
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// Type names what a finding is about. One open alert exists per asset and type.
type Type string

// Finding types, grouped by detector.
const (
	// substitution
	TypeSubstitution Type = "substitution"  // a fingerprint field in a slot changed
	TypeUnknownAsset Type = "unknown_asset" // an asset no gateway registered appeared
	TypeAssetMissing Type = "asset_missing" // a GPU a host reported is gone from its inventory
	// firmware
	TypeFirmwareUnauthorised Type = "firmware_unauthorised" // a change no approved work order covers
	TypeFirmwareNotAllowed   Type = "firmware_not_allowed"  // a version off the allow-list
	// movement
	TypeGeofenceExit     Type = "geofence_exit"
	TypeZoneViolation    Type = "zone_violation"
	TypeMovedInService   Type = "moved_in_service"
	TypeImpossibleTravel Type = "impossible_travel"
	// clone
	TypeClone Type = "clone_suspected"
	// offline and tamper
	TypeGatewayOffline   Type = "gateway_offline"
	TypeHeartbeatMissed  Type = "heartbeat_missed"
	TypeSequenceGap      Type = "sequence_gap"
	TypeBadSignatures    Type = "bad_signatures"
	TypeReplayedMessages Type = "replayed_messages"
	TypeUnknownGateway   Type = "unknown_gateway"
	TypeUnboundAssets    Type = "unbound_assets" // messages naming assets not bound to their gateway
	TypeUnknownTags      Type = "unknown_tags"   // RFID reads of tags the gateway may not report
	TypeClockSkew        Type = "clock_skew"
	// drift
	TypeSensorDrift Type = "sensor_drift"
	// hardware
	TypeXID             Type = "gpu_xid"
	TypeECCDoubleBit    Type = "ecc_double_bit"
	TypeRowRemapFailure Type = "row_remap_failure"
	TypeRetiredPages    Type = "retired_pages"
	TypeThermalSlowdown Type = "thermal_slowdown"
	TypeOverheating     Type = "overheating"
	TypePowerExcursion  Type = "power_excursion"
	TypePCIeReplays     Type = "pcie_replays"
	// run time (what runs on a GPU against the ledger's deployments)
	TypeUnapprovedModel  Type = "unapproved_model"  // a model artifact no deployment in force approves on the GPU
	TypeEnvironmentDrift Type = "environment_drift" // a GPU's VBIOS or driver is not what its deployment approved
)

// Evidence is what a finding rests on: the events, messages and values.
type Evidence struct {
	Events   []twin.Event      `json:"events,omitempty"`
	Messages []MessageRef      `json:"messages,omitempty"`
	Values   map[string]string `json:"values,omitempty"`
}

// MessageRef names one gateway message.
type MessageRef struct {
	Gateway string    `json:"gateway"`
	Seq     uint64    `json:"seq"`
	Pos     uint64    `json:"pos,omitempty"` // position in the message log, 0 if not stored
	Time    time.Time `json:"time"`
}

// Finding is one thing a detector saw.
type Finding struct {
	Type     Type      `json:"type"`
	Asset    string    `json:"asset"`
	Site     string    `json:"site,omitempty"`
	Host     string    `json:"host,omitempty"` // the server the asset is (in), from the view
	Rack     string    `json:"rack,omitempty"` // that server's rack
	Severity Severity  `json:"severity"`
	Time     time.Time `json:"time"` // reading time of what triggered it
	Summary  string    `json:"summary"`
	Evidence Evidence  `json:"evidence"`
	// Changes are the tracked-field changes behind the finding. When
	// Coverable is set, an approved work order that covers every one of them
	// explains the finding and no alert is raised.
	Changes   []twin.Change `json:"changes,omitempty"`
	Coverable bool          `json:"coverable,omitempty"`
}

// Rejection is one message ingest refused, as its ring of recent rejections
// reports it.
type Rejection struct {
	Time    time.Time // when ingest refused it (service clock)
	Gateway string    // the gateway the message claimed to be from
	Seq     uint64
	Reason  string // RejectBadSignature, RejectReplay, RejectUnknownGateway, ...
	// Where it came from as the ingest saw it: Source identifies the
	// sender (client id and remote host), SourceClient is its MQTT client
	// id (bound to its credential by the embedded broker), From says it
	// for people.
	Source       string
	SourceClient string
	From         string
}

// Rejection reasons the tamper detector counts. They match ingest's counter labels.
const (
	RejectBadSignature   = "bad_signature"
	RejectReplay         = "replay"
	RejectUnknownGateway = "unknown_gateway"
	RejectDuplicate      = "duplicate" // a replay when far below the newest sequence number
	RejectUnboundAsset   = "unbound_asset"
	RejectUnknownTags    = "unknown_tags" // not a rejection: an accepted RFID message's ignored reads
)

// Message is one accepted gateway message with its decoded body: exactly one
// of the body fields is set, matching Kind.
type Message struct {
	Ref       MessageRef
	Kind      wire.Kind
	Recorded  time.Time // when the service stored it (service clock)
	Telemetry *wire.Telemetry
	Inventory *wire.Inventory
	RFID      *wire.RFID
	GPS       *wire.GPSFix
	Status    *wire.Status
	Workloads *wire.Workloads
}

// Input is one thing for the detectors to look at: a twin event, a message
// or a rejection. Exactly one is set.
type Input struct {
	Event     *twin.Event
	Message   *Message
	Rejection *Rejection
}

func ref(m *Message) []MessageRef { return []MessageRef{m.Ref} }

func values(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// UnmarshalYAML reads a severity's name, saying the line of a bad one.
func (s *Severity) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSeverity(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}

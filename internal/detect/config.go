package detect

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config holds every detector's rules and thresholds. It is one section of
// the detection configuration file; Defaults fills what the file leaves out.
type Config struct {
	Sites    map[string]SiteConfig `yaml:"sites"`
	Geofence GeofenceConfig        `yaml:"geofence"`
	Movement MovementConfig        `yaml:"movement"`
	Clone    CloneConfig           `yaml:"clone"`
	Gateways GatewayConfig         `yaml:"gateways"`
	Tamper   TamperConfig          `yaml:"tamper"`
	Drift    DriftConfig           `yaml:"drift"`
	Hardware HardwareConfig        `yaml:"hardware"`
	Firmware FirmwareConfig        `yaml:"firmware"`
}

// SiteConfig is one site: its geofence polygon, [lat, lon] vertices in order.
type SiteConfig struct {
	Geofence [][]float64 `yaml:"geofence"`
}

// GeofenceConfig tunes the geofence check. A fix counts as outside only when
// it is more than MarginM metres outside the polygon (and inside again only
// when more than MarginM inside), and an exit is reported only after the
// asset stayed outside for EntryDelay: GPS jitter near the fence does not flap.
type GeofenceConfig struct {
	MarginM    float64       `yaml:"margin_m"`
	EntryDelay time.Duration `yaml:"entry_delay"`
	MaxHDOP    float64       `yaml:"max_hdop"` // fixes with a worse HDOP are ignored
}

// MovementConfig tunes the movement checks.
type MovementConfig struct {
	// HomeZones maps an asset id (or path.Match pattern) to the zone it
	// belongs in. An asset with none learns its zone from its first read.
	HomeZones map[string]string `yaml:"home_zones"`
	// InServiceRadiusM: an in-service asset whose GPS fix moves further
	// than this from where it settled is moving while in service.
	InServiceRadiusM float64 `yaml:"in_service_radius_m"`
	// MaxSpeedMS is the fastest believable travel between two fixes.
	MaxSpeedMS float64 `yaml:"max_speed_ms"`
}

// CloneConfig tunes the ghost/clone check: the same asset seen by two
// gateways within Window, at different sites or more than MaxDistanceM apart.
type CloneConfig struct {
	Window       time.Duration `yaml:"window"`
	MaxDistanceM float64       `yaml:"max_distance_m"`
}

// GatewayConfig holds the heartbeat classes and the clock-skew bound.
type GatewayConfig struct {
	// Heartbeat classes, first match wins; Match is a path.Match pattern on
	// the gateway id.
	Heartbeat []HeartbeatClass `yaml:"heartbeat"`
	// MaxClockSkew bounds how far a gateway's reading times may stray from
	// the fleet's: (reading time - stored time) against the fleet median.
	// 0 turns the check off.
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
}

// HeartbeatClass is the longest silence allowed for gateways matching Match.
type HeartbeatClass struct {
	Match      string        `yaml:"match"`
	MaxSilence time.Duration `yaml:"max_silence"`
}

// TamperConfig holds the burst thresholds for rejected messages.
type TamperConfig struct {
	BadSignatures Burst `yaml:"bad_signatures"`
	Replays       Burst `yaml:"replays"`
	Unknown       Burst `yaml:"unknown_gateway"`
	Unbound       Burst `yaml:"unbound_assets"`
	UnknownTags   Burst `yaml:"unknown_tags"`
	// ReplayMinSeqAge: a duplicate of a message at least this many
	// sequence numbers below the gateway's newest counts as a replay (a
	// redelivery is close to the newest). 0 counts no duplicates.
	ReplayMinSeqAge uint64 `yaml:"replay_min_seq_age"`
}

// Burst is Count events within Window.
type Burst struct {
	Count  int           `yaml:"count"`
	Window time.Duration `yaml:"window"`
}

// DriftConfig tunes the sensor-drift check on GPU temperature: a CUSUM on
// the reading's residual (against the board's memory sensor, the median of
// its peers in the same server, or its own EWMA baseline) around the
// residual's learned baseline.
type DriftConfig struct {
	Warmup   int     `yaml:"warmup"`    // samples before the baseline is trusted
	Alpha    float64 `yaml:"alpha"`     // EWMA weight of a new sample in the baseline
	K        float64 `yaml:"k"`         // CUSUM slack, degrees
	H        float64 `yaml:"h"`         // CUSUM threshold, degree-samples
	MinPeers int     `yaml:"min_peers"` // peers needed for the peer comparison
	// A slow drift (a fraction of a degree a minute) hides inside the
	// CUSUM's adapting baseline; it is found by comparing the smoothed
	// residual (over Smooth) with a baseline that adapts only over hours:
	// against the board's memory sensor (itself) and against the median
	// of its peers of the same model under the same load (within
	// PeerLoadPct points of lagged utilisation) in its server, or in its
	// rack when the server has too few. OffsetC off is a drift; 0 turns
	// the slow check off.
	OffsetC     float64       `yaml:"offset_c"`
	Smooth      time.Duration `yaml:"smooth"`
	PeerLoadPct float64       `yaml:"peer_load_pct"`
}

// HardwareConfig holds the reliability thresholds.
type HardwareConfig struct {
	// XIDs maps an XID to its severity; XIDs not listed are ignored
	// (most are application faults). Defaults cover the critical ones.
	XIDs              map[int]string `yaml:"xids"`
	RetiredPagesMax   int            `yaml:"retired_pages_max"`
	TempMaxC          float64        `yaml:"temp_max_c"`
	TempFor           time.Duration  `yaml:"temp_for"`
	ThrottleFor       time.Duration  `yaml:"throttle_for"`
	PowerOverPct      float64        `yaml:"power_over_pct"` // over the power limit
	PowerFor          time.Duration  `yaml:"power_for"`
	PCIeReplaysPerMin float64        `yaml:"pcie_replays_per_min"`
}

// FirmwareConfig holds the allow-lists, one per asset class.
type FirmwareConfig struct {
	Allow []AllowList `yaml:"allow"`
}

// AllowList lists the firmware versions allowed for one asset class: assets
// of Kind whose identity name matches Name (a path.Match pattern; empty
// matches all). An empty version list allows any version of that part.
type AllowList struct {
	Kind    string   `yaml:"kind"`
	Name    string   `yaml:"name"`
	VBIOS   []string `yaml:"vbios"`
	Driver  []string `yaml:"driver"`
	InfoROM []string `yaml:"inforom"`
	BIOS    []string `yaml:"bios"`
	BMC     []string `yaml:"bmc"`
}

// versions returns the list for a firmware field name such as "firmware.vbios".
func (l *AllowList) versions(field string) []string {
	switch field {
	case "firmware.vbios":
		return l.VBIOS
	case "firmware.driver":
		return l.Driver
	case "firmware.inforom":
		return l.InfoROM
	case "firmware.bios":
		return l.BIOS
	case "firmware.bmc":
		return l.BMC
	}
	return nil
}

// criticalXIDs are the XIDs that mean the hardware, not the application, is
// in trouble, with their meaning (NVIDIA's XID catalogue).
var xidMeaning = map[int]string{
	13:  "graphics engine exception",
	31:  "GPU memory page fault",
	43:  "GPU stopped processing",
	45:  "preemptive cleanup after a previous error",
	48:  "double-bit ECC error (DBE)",
	61:  "internal micro-controller breakpoint/warning",
	62:  "internal micro-controller halt",
	63:  "ECC page retirement or row remapping recorded",
	64:  "ECC page retirement or row remapping recording failure",
	68:  "video processor exception",
	74:  "NVLink error",
	79:  "GPU has fallen off the bus",
	92:  "high single-bit ECC error rate",
	94:  "contained ECC error",
	95:  "uncontained ECC error",
	119: "GSP RPC timeout",
	120: "GSP error",
	121: "C2C link corrected error",
	140: "unrecovered ECC error",
	154: "GPU recovery action changed (reset or reboot required)",
}

// XIDMeaning says what an XID means, or "" for one not in the catalogue.
func XIDMeaning(xid int) string { return xidMeaning[xid] }

// Defaults returns the configuration used for anything a file leaves out.
func Defaults() Config {
	return Config{
		Geofence: GeofenceConfig{MarginM: 25, EntryDelay: 30 * time.Second, MaxHDOP: 5},
		Movement: MovementConfig{InServiceRadiusM: 150, MaxSpeedMS: 70},
		Clone:    CloneConfig{Window: time.Minute, MaxDistanceM: 2000},
		Gateways: GatewayConfig{
			Heartbeat:    []HeartbeatClass{{Match: "*", MaxSilence: 2 * time.Minute}},
			MaxClockSkew: 2 * time.Minute,
		},
		Tamper: TamperConfig{
			BadSignatures:   Burst{Count: 3, Window: time.Minute},
			Replays:         Burst{Count: 3, Window: time.Minute},
			Unknown:         Burst{Count: 3, Window: time.Minute},
			Unbound:         Burst{Count: 3, Window: time.Minute},
			UnknownTags:     Burst{Count: 1, Window: 10 * time.Minute},
			ReplayMinSeqAge: 300,
		},
		Drift: DriftConfig{Warmup: 60, Alpha: 0.01, K: 1.5, H: 30, MinPeers: 3, OffsetC: 3, Smooth: 2 * time.Minute, PeerLoadPct: 5},
		Hardware: HardwareConfig{
			XIDs: map[int]string{
				48: "critical", 62: "critical", 63: "warning", 64: "critical", 74: "critical",
				79: "critical", 92: "warning", 94: "warning", 95: "critical", 119: "critical",
				120: "critical", 140: "critical", 154: "critical",
			},
			RetiredPagesMax:   60,
			TempMaxC:          92,
			TempFor:           30 * time.Second,
			ThrottleFor:       30 * time.Second,
			PowerOverPct:      10,
			PowerFor:          30 * time.Second,
			PCIeReplaysPerMin: 100,
		},
	}
}

// FieldError is a configuration error at a path of keys ("sites", "s1",
// "geofence", "2"). The loader turns the path into a line number.
type FieldError struct {
	Path []string
	Msg  string
}

func (e *FieldError) Error() string { return strings.Join(e.Path, ".") + ": " + e.Msg }

// Errs collects FieldErrors under a path prefix.
type Errs struct {
	Prefix []string
	List   []error
}

// Add records an error at prefix + path.
func (es *Errs) Add(msg string, p ...string) {
	es.List = append(es.List, &FieldError{Path: append(slices.Clone(es.Prefix), p...), Msg: msg})
}

// Err joins what was recorded, or nil.
func (es *Errs) Err() error { return errors.Join(es.List...) }

// Validate checks the configuration; each error is a *FieldError.
func (c *Config) Validate() error {
	es := Errs{Prefix: []string{"detect"}}
	for name, s := range c.Sites {
		if len(s.Geofence) == 0 {
			continue
		}
		if len(s.Geofence) < 3 {
			es.Add(fmt.Sprintf("a geofence needs at least 3 vertices, got %d", len(s.Geofence)), "sites", name, "geofence")
		}
		for i, p := range s.Geofence {
			switch {
			case len(p) != 2:
				es.Add(fmt.Sprintf("a vertex is [lat, lon], got %d numbers", len(p)), "sites", name, "geofence", strconv.Itoa(i))
			case p[0] < -90 || p[0] > 90 || p[1] < -180 || p[1] > 180:
				es.Add(fmt.Sprintf("vertex [%g, %g] is not a latitude and longitude", p[0], p[1]), "sites", name, "geofence", strconv.Itoa(i))
			}
		}
	}
	nonNeg := func(v float64, p ...string) {
		if v < 0 {
			es.Add("must not be negative", p...)
		}
	}
	nonNeg(c.Geofence.MarginM, "geofence", "margin_m")
	nonNeg(float64(c.Geofence.EntryDelay), "geofence", "entry_delay")
	nonNeg(c.Movement.MaxSpeedMS, "movement", "max_speed_ms")
	nonNeg(c.Movement.InServiceRadiusM, "movement", "in_service_radius_m")
	for k := range c.Movement.HomeZones {
		if _, err := path.Match(k, ""); err != nil {
			es.Add(fmt.Sprintf("bad pattern: %v", err), "movement", "home_zones", k)
		}
	}
	for i, h := range c.Gateways.Heartbeat {
		if _, err := path.Match(h.Match, ""); err != nil || h.Match == "" {
			es.Add(fmt.Sprintf("match %q is not a pattern", h.Match), "gateways", "heartbeat", strconv.Itoa(i), "match")
		}
		if h.MaxSilence <= 0 {
			es.Add("max_silence must be positive", "gateways", "heartbeat", strconv.Itoa(i), "max_silence")
		}
	}
	for name, b := range map[string]Burst{"bad_signatures": c.Tamper.BadSignatures, "replays": c.Tamper.Replays, "unknown_gateway": c.Tamper.Unknown,
		"unbound_assets": c.Tamper.Unbound, "unknown_tags": c.Tamper.UnknownTags} {
		if b.Count < 1 || b.Window <= 0 {
			es.Add("count must be at least 1 and window positive", "tamper", name)
		}
	}
	if c.Drift.Alpha <= 0 || c.Drift.Alpha >= 1 {
		es.Add("alpha must be between 0 and 1", "drift", "alpha")
	}
	if c.Drift.OffsetC < 0 || c.Drift.Smooth < 0 || c.Drift.PeerLoadPct < 0 {
		es.Add("offset_c, smooth and peer_load_pct must not be negative", "drift")
	}
	if c.Drift.H <= 0 {
		es.Add("h must be positive", "drift", "h")
	}
	for xid, sev := range c.Hardware.XIDs {
		if _, err := ParseSeverity(sev); err != nil {
			es.Add(err.Error(), "hardware", "xids", strconv.Itoa(xid))
		}
	}
	for i, l := range c.Firmware.Allow {
		if l.Kind == "" {
			es.Add("kind is required (gpu, server, gateway)", "firmware", "allow", strconv.Itoa(i))
		}
		if _, err := path.Match(l.Name, ""); err != nil {
			es.Add(fmt.Sprintf("bad pattern: %v", err), "firmware", "allow", strconv.Itoa(i), "name")
		}
	}
	return es.Err()
}

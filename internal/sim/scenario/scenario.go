// Package scenario plays scripted incidents over a normal simulated fleet
// (internal/sim/fleet), as edge agents would over MQTT: a GPU swap or an
// exchange between servers, a firmware flash or downgrade with or without a
// work order, a theft, a rack moved past RFID read points, a drifting
// sensor or a warming rack, XIDs, overheating, a gateway dropping off or
// its clock jumping, forged, unknown and replayed messages; an analyst
// resolving an alert. A scenario file states the alerts
// it expects; simulated time may run faster than real time (readings carry
// simulated time, detectors use reading time).
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"twinchain/internal/detect"
	"twinchain/internal/detect/workorder"
	"twinchain/internal/sim/fleet"
)

// File is one scenario.
type File struct {
	Name        string        `yaml:"name"`
	Description string        `yaml:"description"`
	Fleet       FleetSpec     `yaml:"fleet"`
	Duration    time.Duration `yaml:"duration"` // simulated
	Speed       float64       `yaml:"speed"`    // simulated seconds per real second
	Rate        float64       `yaml:"rate"`     // samples per simulated second per host
	// GPSJitterM is extra noise on every GPS fix, metres (1 sigma).
	GPSJitterM float64         `yaml:"gps_jitter_m"`
	WorkOrders []WorkOrderSpec `yaml:"work_orders"`
	Steps      []Step          `yaml:"steps"`
	// Expect lists the alerts that must open; Allow the ones that may also
	// open as a side effect. Any other alert is a false alert.
	Expect []Expectation `yaml:"expect"`
	Allow  []Expectation `yaml:"allow"`
	// Quarantined lists assets the quarantine policy must have moved to
	// custody status quarantined by the end.
	Quarantined []string `yaml:"quarantined"`
	// Incidents, when set, is how many incidents the alerts must form.
	Incidents *int `yaml:"incidents"`
}

// FleetSpec sizes the fleet.
type FleetSpec struct {
	Sites        int   `yaml:"sites"`
	Servers      int   `yaml:"servers"`
	GPUs         int   `yaml:"gpus"`
	Seed         int64 `yaml:"seed"`
	SiteGateways *bool `yaml:"site_gateways"`
}

// WorkOrderSpec is a work order the runner files (and has approved by a
// second person) through twin-service's API before the fleet starts. From
// and To are offsets from the simulated start.
type WorkOrderSpec struct {
	Asset    string               `yaml:"asset"`
	Reason   string               `yaml:"reason"`
	Changes  []workorder.Expected `yaml:"changes"`
	From     time.Duration        `yaml:"from"`
	To       time.Duration        `yaml:"to"`
	Approved *bool                `yaml:"approved"` // default true
}

// Step is one scripted incident at a simulated offset. Which fields matter
// depends on Action.
type Step struct {
	At      time.Duration `yaml:"at"`
	Action  string        `yaml:"action"`
	Target  string        `yaml:"target"`
	Part    string        `yaml:"part"`    // flash_firmware: vbios, driver, inforom, bios, bmc
	Version string        `yaml:"version"` // flash_firmware
	XID     int           `yaml:"xid"`
	TempC   float64       `yaml:"temp_c"`   // overheat
	Rate    float64       `yaml:"rate"`     // drift: °C per simulated minute
	SpeedMS float64       `yaml:"speed_ms"` // theft
	Heading float64       `yaml:"heading"`  // theft, degrees
	Count   int           `yaml:"count"`    // forge, unknown_gateway, replay
	Every   time.Duration `yaml:"every"`    // move_rack: time between read points
	Path    []ReadPoint   `yaml:"path"`     // move_rack
	Site    string        `yaml:"site"`     // clone_tag: the other site
	With    string        `yaml:"with"`     // exchange_gpu: the other GPU
	Offset  time.Duration `yaml:"offset"`   // clock_jump: added to the gateway's reading times from now on
	XIDs    []int         `yaml:"xids"`     // xid: several in the same sample, in order
	Type    string        `yaml:"type"`     // resolve: the open alert type on Target to resolve
}

// ReadPoint is one RFID read point on a rack's way.
type ReadPoint = fleet.ReadPoint

// Expectation is one alert: type and asset, and its severity when given.
// An expectation listed twice needs two alerts.
type Expectation struct {
	Type     string `yaml:"type"`
	Asset    string `yaml:"asset"`
	Severity string `yaml:"severity,omitempty"`
}

func (e Expectation) String() string { return e.Type + " " + e.Asset }

// Actions a step may take.
var Actions = []string{
	"swap_gpu", "flash_firmware", "theft", "move_rack", "drift", "xid", "overheat",
	"offline", "silence", "forge", "unknown_gateway", "replay", "clone_tag",
	"exchange_gpu", "clock_jump", "warm", "resolve",
}

// Load reads and checks a scenario file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse reads a scenario, fills defaults and checks it.
func Parse(name string, data []byte) (*File, error) {
	f := &File{Speed: 60, Rate: 1, Duration: 10 * time.Minute, Fleet: FleetSpec{Sites: 1, Servers: 4, GPUs: 8, Seed: 1}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

// Validate checks the scenario.
func (f *File) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if f.Name == "" {
		add("name is required")
	}
	if f.Duration <= 0 || f.Speed <= 0 || f.Rate <= 0 || f.Rate > 100 {
		add("duration and speed must be positive, rate in (0, 100]")
	}
	for i, s := range f.Steps {
		if !slices.Contains(Actions, s.Action) {
			add("steps[%d]: action %q is not one of %s", i, s.Action, strings.Join(Actions, ", "))
		}
		if s.Target == "" {
			add("steps[%d]: target is required", i)
		}
		if s.At < 0 || s.At > f.Duration {
			add("steps[%d]: at %s is outside the run (0..%s)", i, s.At, f.Duration)
		}
		switch s.Action {
		case "flash_firmware":
			if !slices.Contains(fleet.FirmwareParts, s.Part) || s.Version == "" {
				add("steps[%d]: flash_firmware needs part (%s) and version", i, strings.Join(fleet.FirmwareParts, ", "))
			}
		case "xid":
			if s.XID <= 0 && len(s.XIDs) == 0 {
				add("steps[%d]: xid needs xid or xids", i)
			}
		case "exchange_gpu":
			if s.With == "" {
				add("steps[%d]: exchange_gpu needs with (the other GPU)", i)
			}
		case "clock_jump":
			if s.Offset == 0 {
				add("steps[%d]: clock_jump needs offset", i)
			}
		case "warm":
			if s.Rate == 0 {
				add("steps[%d]: warm needs rate (°C a minute)", i)
			}
		case "resolve":
			if s.Type == "" {
				add("steps[%d]: resolve needs type", i)
			}
		case "move_rack":
			if len(s.Path) == 0 {
				add("steps[%d]: move_rack needs a path of read points", i)
			}
		case "clone_tag":
			if s.Site == "" {
				add("steps[%d]: clone_tag needs the other site", i)
			}
		}
	}
	for i, w := range f.WorkOrders {
		if w.Asset == "" || len(w.Changes) == 0 || w.To <= w.From {
			add("work_orders[%d]: asset, changes and from < to are required", i)
		}
	}
	for i, e := range append(slices.Clone(f.Expect), f.Allow...) {
		if e.Type == "" || e.Asset == "" {
			add("expect/allow[%d]: type and asset are required", i)
		}
		if e.Severity != "" {
			if _, err := detect.ParseSeverity(e.Severity); err != nil {
				add("expect/allow[%d]: %v", i, err)
			}
		}
	}
	return errors.Join(errs...)
}

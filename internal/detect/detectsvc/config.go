package detectsvc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/detect/workorder"
)

// Config is the detection configuration file: rules, thresholds,
// geofences, allow-lists, work-order roles and alert routes, in one YAML file.
type Config struct {
	Detect     detect.Config    `yaml:"detect"`
	Alerts     alert.Config     `yaml:"alerts"`
	WorkOrders workorder.Policy `yaml:"work_orders"`
	Engine     EngineConfig     `yaml:"engine"`
}

// EngineConfig tunes how the engine reads the logs.
type EngineConfig struct {
	Batch int `yaml:"batch"` // messages or events read per step
	// Poll is how often the engine looks at the logs without a wake-up
	// (and runs the time-driven checks).
	Poll time.Duration `yaml:"poll"`
	// CursorEvery is how often, at most, the cursors of a step that
	// raised nothing are stored (a step that raises stores its alerts and
	// cursors together, and Run stores them at its end); 0: after every
	// step. After a crash the engine reads again from the stored cursors:
	// at most CursorEvery of messages that raised nothing before.
	// Storing them after every step was a synced transaction of its own
	// per ingest commit, a third as many fsyncs as the ingest's.
	CursorEvery time.Duration `yaml:"cursor_every"`
}

// Defaults is the configuration when no file is given.
func Defaults() Config {
	return Config{
		Detect:     detect.Defaults(),
		Alerts:     alert.DefaultConfig(),
		WorkOrders: workorder.DefaultPolicy(),
		Engine:     EngineConfig{Batch: 512, Poll: time.Second, CursorEvery: time.Second},
	}
}

// Validate checks every section; each error names its key path.
func (c *Config) Validate() error {
	var errs []error
	for _, err := range []error{c.Detect.Validate(), c.Alerts.Validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.WorkOrders.Validate(); err != nil {
		errs = append(errs, &detect.FieldError{Path: []string{"work_orders"}, Msg: err.Error()})
	}
	if c.Engine.Batch < 1 || c.Engine.Poll <= 0 || c.Engine.CursorEvery < 0 {
		errs = append(errs, &detect.FieldError{Path: []string{"engine"}, Msg: "batch and poll must be positive, cursor_every not negative"})
	}
	return errors.Join(errs...)
}

// LoadFile reads and checks the configuration file at path.
func LoadFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("detection config: %w", err)
	}
	return Parse(path, data)
}

// Parse reads a configuration over the defaults and validates it. Errors
// name the file and line: "detect.yaml:12: alerts.routes.0.sinks.0: no sink named ...".
func Parse(name string, data []byte) (Config, error) {
	cfg := Defaults()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := cfg.Validate(); err != nil {
		var lines []string
		for _, e := range flatten(err) {
			var fe *detect.FieldError
			if errors.As(e, &fe) {
				lines = append(lines, fmt.Sprintf("%s:%d: %s", name, lineOf(&root, fe.Path), fe.Error()))
			} else {
				lines = append(lines, fmt.Sprintf("%s: %v", name, e))
			}
		}
		return Config{}, errors.New(strings.Join(lines, "\n"))
	}
	return cfg, nil
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// lineOf is the line of the deepest node along path that the file has
// (the key's line for a mapping entry), or 1.
func lineOf(root *yaml.Node, path []string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 1
	if n.Line > 0 {
		line = n.Line
	}
	for _, p := range path {
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line, next = n.Content[i].Line, n.Content[i+1]
					break
				}
			}
			if next == nil {
				return line
			}
			n = next
		case yaml.SequenceNode:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		default:
			return line
		}
	}
	return line
}

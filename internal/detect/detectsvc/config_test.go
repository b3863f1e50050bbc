package detectsvc

import (
	"os"
	"strings"
	"testing"
	"time"

	"twinchain/internal/detect"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadFile("../../../twin-service/detect.example.yaml")
	if err != nil {
		t.Fatalf("LoadFile(example) = %v", err)
	}
	if got := cfg.Detect.Gateways.Heartbeat[0].MaxSilence; got != 90*time.Second {
		t.Errorf("heartbeat[0].max_silence = %s, want 90s", got)
	}
	if got := cfg.Detect.Hardware.XIDs[79]; got != "critical" {
		t.Errorf("default XID 79 severity = %q after merging the file, want critical", got)
	}
	if got := cfg.Alerts.Quarantine.MinSeverity; got != detect.Critical {
		t.Errorf("quarantine.min_severity = %v, want critical", got)
	}
	if len(cfg.Detect.Sites["s1"].Geofence) != 4 {
		t.Errorf("s1 geofence = %v, want 4 vertices", cfg.Detect.Sites["s1"].Geofence)
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"empty file is the defaults", "", nil},
		{"unknown key", "detect:\n  geofnce:\n    margin_m: 3\n", []string{"line 2", "geofnce"}},
		{"bad duration", "detect:\n  clone:\n    window: soon\n", []string{"line 3"}},
		{"bad severity", "alerts:\n  quarantine:\n    min_severity: dire\n", []string{"line 3", "dire"}},
		{"semantic errors", strings.Join([]string{
			"detect:",
			"  sites:",
			"    s1:",
			"      geofence: [[1, 2], [3, 4]]",
			"alerts:",
			"  sinks:",
			"    hook:",
			"      kind: webhook",
			"      url: ftp://nowhere",
			"      secret: x",
			"  routes:",
			"    - name: r",
			"      sinks: [hook, pager]",
		}, "\n"), []string{"t.yaml:4: detect.sites.s1.geofence", "t.yaml:9: alerts.sinks.hook.url", "t.yaml:13: alerts.routes.0.sinks.1: no sink named \"pager\""}},
	}
	for _, tt := range tests {
		_, err := Parse("t.yaml", []byte(tt.yaml))
		if tt.want == nil {
			if err != nil {
				t.Errorf("%s: Parse = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Parse = nil, want an error", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Parse = %q, want it to contain %q", tt.name, err, w)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../../../twin-service/detect.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte("detect:\n  sites:\n    s1:\n      geofence: [[1,2],[3]]\n"))
	f.Add([]byte("alerts: [1, 2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Errorf("Parse accepted a config that fails Validate: %v", verr)
			}
		}
	})
}

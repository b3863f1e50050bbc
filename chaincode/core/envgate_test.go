package core

import (
	"errors"
	"testing"
)

// TestGateEnvironment: a policy can require hardware classes and a driver
// range; the deployment record keeps each target's environment as the twin
// saw it, and the gate refuses a class outside the list and a target whose
// driver is unknown or outside the range, naming it.
func TestGateEnvironment(t *testing.T) {
	env := func(d0, d1 string) []AssetEnvironment {
		return []AssetEnvironment{
			{Asset: gpu0, GPUModel: "NVIDIA H100 80GB HBM3", UUID: "GPU-0", Serial: "s0", VBIOS: "96.00.74.00.0D", Driver: d0},
			{Asset: gpu1, GPUModel: "NVIDIA H100 80GB HBM3", UUID: "GPU-1", Serial: "s1", VBIOS: "96.00.74.00.0D", Driver: d1},
		}
	}
	tests := []struct {
		name   string
		class  string
		assets []AssetEnvironment
		want   string
	}{
		{"in range", "h100-sxm-80g", env("550.54.15", "550.90.07"), ""},
		{"bounds inclusive", "h100-sxm-80g", env("550.54", "555.42.2"), ""},
		{"driver too old", "h100-sxm-80g", env("535.161.08", "550.54.15"), "driver_range"},
		{"driver too new and unknown", "h100-sxm-80g", env("560.28.03", ""), "driver_range,driver_range"},
		{"no environment", "h100-sxm-80g", nil, "driver_range,driver_range"},
		{"class", "a100-sxm-40g", env("550.54.15", "550.54.15"), "hardware_class"},
	}
	for i, tt := range tests {
		l := mlWorld(t)
		l.approveAll("m1")
		must(l, RoleCompliance, func(tx *Tx) (Policy, error) {
			return SetPolicy(tx, PolicyInput{ID: "prod", RequiredRoles: []Role{RoleMLLead},
				HardwareClasses: []string{"h100-sxm-80g", "h200-sxm-141g"}, DriverMin: "550.54", DriverMax: "555.42.2"})
		})
		in := deployment("d1", "m1", gpu0, gpu1)
		in.Environment.HardwareClass, in.Environment.Assets = tt.class, tt.assets
		d, err := requestDeployment(l, in)
		if err != nil {
			t.Fatalf("%d %s: %v", i, tt.name, err)
		}
		if got := reasonCodes(d.Reasons); got != tt.want || d.Allowed != (tt.want == "") {
			t.Errorf("%s: allowed %v reasons %+v, want %q", tt.name, d.Allowed, d.Reasons, tt.want)
		}
		stored := must(l, RoleAuditor, func(tx *Tx) (Deployment, error) { return GetDeployment(tx, "d1") })
		if len(stored.Environment.Assets) != len(tt.assets) || len(tt.assets) > 0 && stored.Environment.Assets[1] != tt.assets[1] {
			t.Errorf("%s: stored environment %+v, want %+v", tt.name, stored.Environment.Assets, tt.assets)
		}
	}

	l := mlWorld(t)
	for name, in := range map[string]PolicyInput{
		"bad driver bound": {ID: "p", RequiredRoles: []Role{RoleMLLead}, DriverMin: "r550"},
		"min above max":    {ID: "p", RequiredRoles: []Role{RoleMLLead}, DriverMin: "555", DriverMax: "550.1"},
		"class twice":      {ID: "p", RequiredRoles: []Role{RoleMLLead}, HardwareClasses: []string{"a", "a"}},
	} {
		if _, err := do(l, RoleCompliance, func(tx *Tx) (Policy, error) { return SetPolicy(tx, in) }); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetPolicy(%s) = %v, want ErrInvalid", name, err)
		}
	}
	in := deployment("d2", "m1", gpu0)
	in.Environment.Assets = []AssetEnvironment{{Asset: gpu1}}
	if _, err := requestDeployment(l, in); !errors.Is(err, ErrInvalid) {
		t.Errorf("environment of an asset that is no target: %v, want ErrInvalid", err)
	}
}

package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
)

// TestLoadBare offers a small load to the bare broker and checks that every
// message was sent and acknowledged, and that the registry it writes names
// every gateway with its host and GPUs.
func TestLoadBare(t *testing.T) {
	reg := filepath.Join(t.TempDir(), "registry.json")
	out := &testsvc.Buffer{}
	args := []string{"load", "-bare", "-broker", testsvc.Addr(testsvc.FreePort(t)), "-gateways", "7", "-gpus", "4",
		"-rate", "70", "-duration", "1s", "-warmup", "0s", "-every", "500ms", "-registry", reg}
	if err := run(context.Background(), args, out); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`RESULT target=bare gateways=7 samples=1 offered=70 .* sent=(\d+) acked=(\d+) `).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no RESULT line in\n%s", out)
	}
	// 1 s at 10 Hz per gateway: 11 messages each (t = 0 .. 1 s).
	if m[1] != "77" || m[2] != "77" {
		t.Errorf("sent %s, acked %s, want 77 and 77\n%s", m[1], m[2], out)
	}
	f, err := registry.LoadFile(reg)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Gateways) != 7 || len(f.Gateways[0].Assets) != 5 || !strings.HasPrefix(f.Gateways[0].ID, "gw-srv-s1-") {
		t.Errorf("registry = %d gateways, first %+v; want 7 GPU hosts with 1+4 assets", len(f.Gateways), f.Gateways[0])
	}
}

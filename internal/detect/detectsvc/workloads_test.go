package detectsvc

import (
	"crypto/ed25519"
	"log/slog"
	"strings"
	"testing"
	"time"

	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// TestDecodeStoredWorkloads: a stored workloads message (one the ingest's
// decoded ring no longer holds, or after a restart) decodes for the
// detectors like every other kind, not as a decode error.
func TestDecodeStoredWorkloads(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	wl := wire.Workloads{Host: "srv", GPUs: []wire.GPUWorkload{{Asset: "srv.gpu0", Processes: []wire.Process{
		{PID: 7, Name: "vllm", Model: "m", Artifact: "sha256:" + strings.Repeat("ab", 32)}}}}}
	tm := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	raw, err := wire.Seal(key, "gw-a", 1, tm, wire.KindWorkloads, wl)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{log: slog.New(slog.DiscardHandler)}
	dm, err := e.decode(&twinstore.Message{Pos: 1, Gateway: "gw-a", Seq: 1, Kind: wire.KindWorkloads, Time: tm, Raw: raw})
	if err != nil || dm.Workloads == nil || dm.Workloads.GPUs[0].Processes[0].Artifact != wl.GPUs[0].Processes[0].Artifact {
		t.Fatalf("decode(stored workloads) = %+v, %v; want the workloads body", dm, err)
	}
}

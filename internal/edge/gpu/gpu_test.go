package gpu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func golden(t *testing.T, path string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		os.WriteFile(path, got, 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot  %s\nwant %s", path, got, want)
	}
}

// TestRecordedSnapshots turns recorded snapshots into wire bodies and
// compares them with the golden files.
func TestRecordedSnapshots(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.snapshot.json")
	if len(files) < 2 {
		t.Fatalf("found %d snapshots in testdata, want at least 2", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".snapshot.json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := ParseSnapshot(data)
			if err != nil {
				t.Fatalf("ParseSnapshot(%s) = %v", f, err)
			}
			var ev Events
			ev.Apply(&snap)
			ev.Apply(&snap) // the same events again are not counted twice
			golden(t, filepath.Join("testdata", name+".identity.golden.json"), Identity("srv-s1-001", &snap))
			golden(t, filepath.Join("testdata", name+".telemetry.golden.json"), Telemetry("srv-s1-001", &snap, &ev))
		})
	}
}

func TestA100Values(t *testing.T) {
	data, _ := os.ReadFile("testdata/a100-sxm4-mig.snapshot.json")
	snap, err := ParseSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	tel := Telemetry("srv-1", &snap, nil)
	g := tel.GPUs[0]
	if g.Asset != "srv-1.gpu0" || g.PowerW != 67.03 || g.PowerLimitW != 500 || g.TempC != 27 || g.MemTempC != 44 || g.SMClockMHz != 1275 {
		t.Errorf("Telemetry(a100) = %+v, want srv-1.gpu0 at 67.03 W of 500, 27/44 C, 1275 MHz", g)
	}
	id := Identity("srv-1", &snap)[0]
	if id.UUID != "GPU-513536b6-7d19-9063-b049-1e69664bb298" || id.Driver != "535.54.03" || id.InfoROM != "G506.0212.00.01" || id.VBIOS != "92.00.36.00.02" {
		t.Errorf("Identity(a100) = %+v", id)
	}
}

func TestSimXIDAndECC(t *testing.T) {
	data, _ := os.ReadFile("testdata/sim-8gpu-xid.snapshot.json")
	snap, err := ParseSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	var ev Events
	ev.Apply(&snap)
	tel := Telemetry("h", &snap, &ev)
	if len(tel.GPUs) != 8 {
		t.Fatalf("%d GPUs, want 8", len(tel.GPUs))
	}
	if g := tel.GPUs[3]; g.LastXID != 79 || g.XIDCount != 1 || !contains(g.Throttle, wire.ThrottleHWSlowdown) {
		t.Errorf("gpu3 = xid %d count %d throttle %v, want xid 79 once and hw_slowdown", g.LastXID, g.XIDCount, g.Throttle)
	}
	if g := tel.GPUs[6]; g.ECCDoubleBit != 8 || !g.RowRemapFailure || g.RemappedRows != 8 {
		t.Errorf("gpu6 = dbe %d remapped %d failure %v, want 8, 8, true", g.ECCDoubleBit, g.RemappedRows, g.RowRemapFailure)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestThrottleReasons(t *testing.T) {
	cases := []struct {
		mask uint64
		want string
	}{
		{0, ""},
		{0x1, "gpu_idle"},
		{0x4 | 0x40, "power_cap,hw_thermal"},
		{0x1ff, "gpu_idle,app_clocks,power_cap,hw_slowdown,sync_boost,sw_thermal,hw_thermal,hw_power_brake,display_clocks"},
		{0x8000000000000000, ""}, // unknown bits are ignored
	}
	for _, tc := range cases {
		got := ThrottleReasons(tc.mask)
		if strings.Join(got, ",") != tc.want {
			t.Errorf("ThrottleReasons(%#x) = %v, want %s", tc.mask, got, tc.want)
		}
		if tc.mask <= 0x1ff && ThrottleMask(got) != tc.mask {
			t.Errorf("ThrottleMask(%v) = %#x, want %#x", got, ThrottleMask(got), tc.mask)
		}
	}
}

func TestParseSnapshotRejects(t *testing.T) {
	cases := []string{
		`not json`,
		`{"devices":[{"index":0,"uuid":"GPU-1234567"},{"index":0,"uuid":"GPU-7654321"}]}`,
		`{"devices":[{"index":-1,"uuid":"GPU-1234567"}]}`,
		`{"devices":[{"index":0,"uuid":""}]}`,
		`{"devices":[{"index":0,"uuid":"GPU-1234567","temp_c":900}]}`,
		`{"devices":[{"index":0,"uuid":"GPU-1234567","util_gpu":101}]}`,
		`{"devices":[{"index":0,"uuid":"GPU-1234567"}],"events":[{"id":1,"index":4,"type":"xid"}]}`,
		`{"devices":[{"index":0,"uuid":"GPU-1234567"}],"events":[{"id":1,"index":0,"type":"boom"}]}`,
	}
	for _, in := range cases {
		if _, err := ParseSnapshot([]byte(in)); !errors.Is(err, ErrSnapshot) {
			t.Errorf("ParseSnapshot(%s) = %v, want ErrSnapshot", in, err)
		}
	}
}

// TestOpenWithoutDriver checks the fallback on a host without an NVIDIA
// driver (like CI): auto picks the simulated source; nvml fails clearly.
func TestOpenWithoutDriver(t *testing.T) {
	if src, err := OpenNVML(discard()); err == nil {
		src.Close()
		t.Skip("this host has an NVIDIA driver")
	}
	src, err := Open(Config{Source: "auto", Sim: "file:/nonexistent"}, discard())
	if err != nil || src == nil || !strings.HasPrefix(src.String(), "simulated") {
		t.Errorf("Open(auto, no driver) = %v, %v, want the simulated source", src, err)
	}
	if _, err := Open(Config{Source: "nvml"}, discard()); err == nil {
		t.Errorf("Open(nvml, no driver) = nil error, want an error")
	}
	if src, err := Open(Config{Source: "auto"}, discard()); err != nil || src != nil {
		t.Errorf("Open(auto, no driver, no sim) = %v, %v, want no source and no error", src, err)
	}
}

func TestSimSourceFileAndSocket(t *testing.T) {
	dir := t.TempDir()
	data, _ := os.ReadFile("testdata/sim-8gpu-xid.snapshot.json")
	file := filepath.Join(dir, "gpus.json")
	os.WriteFile(file, data, 0o644)
	fs, err := NewSimSource("file:"+file, discard())
	if err != nil {
		t.Fatal(err)
	}
	if snap, err := fs.Snapshot(context.Background()); err != nil || len(snap.Devices) != 8 {
		t.Errorf("file Snapshot = %d devices, %v, want 8", len(snap.Devices), err)
	}
	os.WriteFile(file, []byte(`{"devices":[{"index":0,"uuid":"x"}]}`), 0o644)
	if _, err := fs.Snapshot(context.Background()); err == nil || fs.Bad != 1 {
		t.Errorf("file Snapshot(bad) = %v, Bad %d, want an error counted", err, fs.Bad)
	}

	sock := filepath.Join(dir, "gpu.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	release := make(chan struct{}) // closed when the test has read: the peer keeps the connection until then
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		compact := new(bytes.Buffer)
		json.Compact(compact, data)
		c.Write([]byte("garbage line\n"))
		c.Write(append(compact.Bytes(), '\n'))
		<-release
	}()
	us, err := NewSimSource("unix:"+sock, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- us.Run(ctx) }()
	var snap Snapshot
	testsvc.Eventually(t, 10*time.Second, "a snapshot over the socket", func() bool {
		snap, err = us.Snapshot(ctx)
		return err == nil
	})
	if len(snap.Devices) != 8 {
		t.Errorf("socket Snapshot = %d devices, want 8", len(snap.Devices))
	}
	us.mu.Lock()
	bad := us.Bad
	us.mu.Unlock()
	if bad != 1 {
		t.Errorf("Bad = %d, want 1 (the garbage line)", bad)
	}
	close(release)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	wg.Wait()
}

func TestCollector(t *testing.T) {
	dir := t.TempDir()
	data, _ := os.ReadFile("testdata/sim-8gpu-xid.snapshot.json")
	file := filepath.Join(dir, "gpus.json")
	os.WriteFile(file, data, 0o644)
	src, _ := NewSimSource("file:"+file, discard())
	var mu sync.Mutex
	var tels []wire.Telemetry
	var invs []wire.Inventory
	cfg := Config{Source: "sim", Sim: "file:" + file, Interval: 20 * time.Millisecond}
	cfg.SetDefaults()
	c := NewCollector(cfg, src, wire.HostInfo{Asset: "srv-s1-001"}, time.Now, discard(),
		func(_ time.Time, t wire.Telemetry) { mu.Lock(); tels = append(tels, t); mu.Unlock() },
		func(_ time.Time, i wire.Inventory) { mu.Lock(); invs = append(invs, i); mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	wait := func(what string, cond func() bool) {
		t.Helper()
		testsvc.Eventually(t, 10*time.Second, what, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return cond()
		})
	}
	wait("three telemetry samples", func() bool { return len(tels) >= 3 })
	// A substituted GPU: the inventory goes out again.
	snap, _ := ParseSnapshot(data)
	snap.Devices[2].UUID = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	b, _ := json.Marshal(snap)
	os.WriteFile(file+".tmp", b, 0o644)
	os.Rename(file+".tmp", file)
	wait("the second inventory", func() bool { return len(invs) >= 2 })
	cancel()
	<-done
	if len(invs) != 2 || invs[1].GPUs[2].UUID != "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" || invs[0].Host.Asset != "srv-s1-001" {
		t.Errorf("inventories = %d (second gpu2 %q), want 2 with the new UUID", len(invs), invs[len(invs)-1].GPUs[2].UUID)
	}
	if tels[0].GPUs[3].XIDCount != 1 || tels[len(tels)-1].GPUs[3].XIDCount != 1 {
		t.Errorf("xid count over snapshots = %d..%d, want 1 throughout", tels[0].GPUs[3].XIDCount, tels[len(tels)-1].GPUs[3].XIDCount)
	}
}

func FuzzGPUSnapshot(f *testing.F) {
	for _, p := range []string{"testdata/a100-sxm4-mig.snapshot.json", "testdata/sim-8gpu-xid.snapshot.json"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"devices":[{"index":63,"uuid":"GPU-12345678"}],"events":[{"id":1,"index":63,"type":"xid","data":79}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := ParseSnapshot(data)
		if err != nil {
			return
		}
		var ev Events
		ev.Apply(&snap)
		tel := Telemetry("h", &snap, &ev)
		id := Identity("h", &snap)
		if len(tel.GPUs) != len(snap.Devices) || len(id) != len(snap.Devices) {
			t.Fatalf("%d devices gave %d samples and %d identities", len(snap.Devices), len(tel.GPUs), len(id))
		}
		for i := 1; i < len(tel.GPUs); i++ {
			if tel.GPUs[i].Index <= tel.GPUs[i-1].Index {
				t.Fatalf("samples not ordered by index")
			}
		}
	})
}

// TestCollectorPublishInterval: with a publish interval of five sampling
// intervals the collector sends every sample it takes in messages that
// each cover the publish interval (five samples unless ticks were
// dropped), in time order, each at its newest sample's time; a stop sends
// what it gathered.
func TestCollectorPublishInterval(t *testing.T) {
	dir := t.TempDir()
	data, _ := os.ReadFile("testdata/sim-8gpu-xid.snapshot.json")
	file := filepath.Join(dir, "gpus.json")
	os.WriteFile(file, data, 0o644)
	src, _ := NewSimSource("file:"+file, discard())
	type sent struct {
		at  time.Time
		tel wire.Telemetry
	}
	var mu sync.Mutex
	var msgs []sent
	const interval, publish = 50 * time.Millisecond, 250 * time.Millisecond
	cfg := Config{Source: "sim", Sim: "file:" + file, Interval: interval, PublishInterval: publish}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	c := NewCollector(cfg, src, wire.HostInfo{Asset: "srv-s1-001"}, time.Now, discard(),
		func(at time.Time, tel wire.Telemetry) { mu.Lock(); msgs = append(msgs, sent{at, tel}); mu.Unlock() },
		func(time.Time, wire.Inventory) {})
	var snapshots atomic.Int64
	c.OnSnapshot = func(*Snapshot) { snapshots.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	testsvc.Eventually(t, 20*time.Second, "three telemetry messages and two more samples", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(msgs) >= 3 && snapshots.Load()%5 == 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	total, fives := 0, 0
	for i, m := range msgs {
		if m.tel.GPUs != nil && m.tel.Samples == nil { // one sample goes in the one-sample form
			m.tel.Samples = []wire.TelemetrySample{{TS: m.at, GPUs: m.tel.GPUs}}
			m.tel.GPUs = nil
		}
		n := len(m.tel.Samples)
		total += n
		if n == 5 {
			fives++
		}
		if n < 1 || n > 5 || m.tel.Host != "srv-s1-001" || m.tel.GPUs != nil {
			t.Errorf("message %d = %d samples (gpus %d, host %q), want 1 to 5 of srv-s1-001, one form only", i, n, len(m.tel.GPUs), m.tel.Host)
			continue
		}
		for j, s := range m.tel.Samples {
			if len(s.GPUs) != 8 || j > 0 && !s.TS.After(m.tel.Samples[j-1].TS) {
				t.Errorf("message %d sample %d: %d GPUs at %s, want 8, after the previous sample", i, j, len(s.GPUs), s.TS)
			}
		}
		if newest := m.tel.Samples[n-1].TS; !m.at.Equal(newest) {
			t.Errorf("message %d sent at %s, want its newest sample's time %s", i, m.at, newest)
		}
		if span := m.tel.Samples[n-1].TS.Sub(m.tel.Samples[0].TS); i < len(msgs)-1 && n < 5 && span+interval+interval/2 < publish {
			t.Errorf("message %d: %d samples over %s, sent before its publish interval (%s) was covered", i, n, span, publish)
		}
	}
	if int64(total) != snapshots.Load() || fives == 0 {
		t.Errorf("messages carry %d samples (%d messages of 5), want every one of the %d snapshots, most in messages of 5", total, fives, snapshots.Load())
	}
	bad := Config{Source: "none", Interval: time.Second, PublishInterval: 61 * time.Second}
	if err := bad.Validate(); err == nil {
		t.Errorf("Validate(publish_interval 61s at 1s) = nil, want an error (over %d samples)", wire.MaxSamples)
	}
	bad.PublishInterval = 500 * time.Millisecond
	if err := bad.Validate(); err == nil {
		t.Errorf("Validate(publish_interval below interval) = nil, want an error")
	}
}

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"twinchain/internal/testsvc"
)

// TestMemProfile: with -mem-profile the service writes a heap profile at
// stop (and at its peak, FILE.peak) and logs the runtime's memory figures
// once.
func TestMemProfile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mem.pprof")
	httpAddr, mqttAddr := testsvc.Addr(testsvc.FreePort(t)), testsvc.Addr(testsvc.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stderr := &testsvc.Buffer{}
	go func() {
		done <- run(ctx, []string{"-config", testConfig(t, dir), "-data", filepath.Join(dir, "data"), "-http", httpAddr, "-mqtt-addr", mqttAddr, "-log-level", "warn", "-mem-profile", path}, func(string) string { return "" }, stderr)
	}()
	if err := testsvc.WaitHTTP("http://"+httpAddr+"/readyz", 30*time.Second); err != nil {
		cancel()
		t.Fatalf("twin-service: %v (run: %v)\n%s", err, <-done, stderr)
	}
	testsvc.Eventually(t, 10*time.Second, "the peak heap profile", func() bool { _, err := os.Stat(path + ".peak"); return err == nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("twin-service: %v\n%s", err, stderr)
	}
	for _, p := range []string{path, path + ".peak"} {
		types, samples := readProfile(t, p)
		if !slices.Contains(types, "inuse_space/bytes") || samples == 0 {
			t.Errorf("%s: sample types %q, %d samples; want inuse_space/bytes among them and samples", p, types, samples)
		}
	}
	log := stderr.String()
	for _, want := range []string{"memory at stop (-mem-profile)", "/gc/heap/live_mib=", "/memory/classes/heap/stacks_mib=", "/memory/classes/os-stacks_mib=", "/sched/goroutines=", "memory at its peak (-mem-profile)"} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "memory at stop"); n != 1 {
		t.Errorf("log has %d lines of memory at stop, want 1:\n%s", n, log)
	}
}

// readProfile parses the pprof profile at path (gzipped protocol buffer,
// github.com/google/pprof/proto/profile.proto): its sample types
// ("type/unit") and its number of samples.
func readProfile(t *testing.T, path string) (types []string, samples int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var strs []string
	var typeIdx [][2]uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("%s: %v", path, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				t.Fatalf("%s: field %d: %v", path, num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			t.Fatalf("%s: field %d: %v", path, num, protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case 1: // sample_type: ValueType{type = 1, unit = 2}, string table indexes
			var tu [2]uint64
			for len(v) > 0 {
				fn, ft, m := protowire.ConsumeTag(v)
				if m < 0 || ft != protowire.VarintType {
					t.Fatalf("%s: bad sample type", path)
				}
				x, k := protowire.ConsumeVarint(v[m:])
				if k < 0 || fn < 1 || fn > 2 {
					t.Fatalf("%s: bad sample type", path)
				}
				tu[fn-1] = x
				v = v[m+k:]
			}
			typeIdx = append(typeIdx, tu)
		case 2: // sample
			samples++
		case 6: // string_table
			strs = append(strs, string(bytes.Clone(v)))
		}
	}
	for _, tu := range typeIdx {
		if tu[0] >= uint64(len(strs)) || tu[1] >= uint64(len(strs)) {
			t.Fatalf("%s: sample type %v outside the string table (%d)", path, tu, len(strs))
		}
		types = append(types, strs[tu[0]]+"/"+strs[tu[1]])
	}
	return types, samples
}

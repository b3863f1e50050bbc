package workload

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/internal/edge/gpu"
	"twinchain/internal/wire"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDigest: a directory's digest is the SHA-256 of its sha256sum-style
// manifest; a second scan reads no byte again; a changed file changes the
// digest; a file changed behind an unchanged size and mtime is caught once
// its hash is older than MaxAge.
func TestDigest(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "config.json"), `{"layers":2}`)
	write(t, filepath.Join(dir, "weights", "model.safetensors"), "weights-v1")
	if err := os.Symlink("config.json", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	h := NewHasher()
	got, err := h.Digest(dir)
	if err != nil {
		t.Fatal(err)
	}
	manifest := fmt.Sprintf("%x  config.json\n%x  weights/model.safetensors\n", sha256.Sum256([]byte(`{"layers":2}`)), sha256.Sum256([]byte("weights-v1")))
	if want := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(manifest))); got != want {
		t.Fatalf("Digest = %s, want %s (the manifest's hash)", got, want)
	}
	if file, _ := h.Digest(filepath.Join(dir, "config.json")); file != fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(`{"layers":2}`))) {
		t.Errorf("file digest %s, want sha256sum's", file)
	}
	read := h.Read
	if again, _ := h.Digest(dir); again != got || h.Read != read {
		t.Fatalf("second scan: %s after reading %d more bytes, want the same digest and none read", again, h.Read-read)
	}
	weights := filepath.Join(dir, "weights", "model.safetensors")
	fi, _ := os.Stat(weights)
	write(t, weights, "weights-v2") // tampered: same size
	if err := os.Chtimes(weights, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if same, _ := h.Digest(dir); same != got {
		t.Fatalf("size and mtime kept: digest %s, want the cached %s (MaxAge unset)", same, got)
	}
	clock := time.Now().Add(time.Hour)
	h.MaxAge, h.now = time.Minute, func() time.Time { return clock }
	if tampered, _ := h.Digest(dir); tampered == got {
		t.Fatalf("tampered weights past MaxAge: digest unchanged %s", got)
	}
	write(t, filepath.Join(dir, "extra.bin"), "x")
	h2 := NewHasher()
	if d, _ := h2.Digest(dir); d == got {
		t.Errorf("an added file left the digest %s", d)
	}
	if _, err := h2.Digest(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("missing model path: no error")
	}
}

// fakeRuntime serves the Docker Engine API's container and image inspect
// (GET /containers/ID/json, GET /images/ID/json, answered as dockerd
// answers them) from a real HTTP server on a real unix socket. It stands in
// for dockerd: no Docker engine runs where the tests run. images maps
// container ids to image ids, repoDigests image ids to their RepoDigests
// (an image not in it is unknown to the runtime).
func fakeRuntime(t *testing.T, images map[string]string, repoDigests map[string][]string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := strings.CutPrefix(r.URL.Path, "/images/"); ok {
			id = strings.TrimSuffix(id, "/json")
			rd, ok := repoDigests[id]
			if !ok {
				http.Error(w, `{"message":"No such image: `+id+`"}`, http.StatusNotFound)
				return
			}
			b, _ := json.Marshal(map[string]any{"Id": id, "RepoTags": []string{}, "RepoDigests": rd, "Os": "linux"})
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
			return
		}
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/containers/"), "/json")
		img, ok := images[id]
		if !ok {
			http.Error(w, `{"message":"No such container"}`, http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, `{"Id":%q,"Image":%q,"State":{"Status":"running"}}`, id, img)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sock
}

// TestReporter: processes on two GPUs resolve to their model artifacts (by
// name and by command line) and container images (cgroup v1 and v2, a real
// runtime socket); each missing piece is a counted skip reason; the body
// passes the ingest's bounds.
func TestReporter(t *testing.T) {
	root := t.TempDir()
	proc, models := filepath.Join(root, "proc"), filepath.Join(root, "models")
	write(t, filepath.Join(models, "llama", "w.bin"), "llama weights")
	write(t, filepath.Join(models, "bert.onnx"), "bert")
	idA, idB := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	img := "sha256:" + strings.Repeat("c3", 32)
	// 100: vllm in a docker container (cgroup v2); 200: python serving bert by path, cgroup v1 containerd;
	// 300: a process no model matches, on the host; 400: gone from /proc.
	write(t, filepath.Join(proc, "100", "cgroup"), "0::/system.slice/docker-"+idA+".scope\n")
	write(t, filepath.Join(proc, "100", "comm"), "vllm\n")
	write(t, filepath.Join(proc, "200", "cgroup"), "12:memory:/kubepods/burstable/pod1/"+idB+"\n")
	write(t, filepath.Join(proc, "200", "cmdline"), "python3\x00serve.py\x00--model="+filepath.Join(models, "bert.onnx")+"\x00")
	write(t, filepath.Join(proc, "300", "cgroup"), "0::/user.slice/user-1000.slice/session-2.scope\n")
	repo := "sha256:" + strings.Repeat("d4", 32)
	sock := fakeRuntime(t, map[string]string{idA: img}, map[string][]string{img: {"registry.example/ml/vllm@" + repo}})

	cfg := Config{Proc: proc, RuntimeSocket: sock, Models: []Model{
		{Name: "llama-7b", Path: filepath.Join(models, "llama"), Process: "vllm"},
		{Name: "bert", Path: filepath.Join(models, "bert.onnx")},
	}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var sent []wire.Workloads
	r := NewReporter(cfg, "srv-1", time.Now, slog.New(slog.DiscardHandler), func(w wire.Workloads) { sent = append(sent, w) })
	snap := gpu.Snapshot{Devices: []gpu.Device{
		{Index: 0, UUID: "GPU-0000", Processes: []gpu.Process{{PID: 100, MemBytes: 70 << 30}, {PID: 300, Name: "nvtop", MemBytes: 1}}},
		{Index: 1, UUID: "GPU-0001", Processes: []gpu.Process{{PID: 200, Name: "python3", MemBytes: 8 << 30}, {PID: 400, Name: "gone"}}},
	}}
	w := r.Build(context.Background(), &snap)
	if err := w.Check(); err != nil {
		t.Fatalf("built body fails the ingest's check: %v", err)
	}
	h := NewHasher()
	llama, _ := h.Digest(filepath.Join(models, "llama"))
	bert, _ := h.Digest(filepath.Join(models, "bert.onnx"))
	want := [][]wire.Process{
		{{PID: 100, Name: "vllm", MemBytes: 70 << 30, Model: "llama-7b", Artifact: llama, Image: img, RepoDigest: repo},
			{PID: 300, Name: "nvtop", MemBytes: 1, Skip: wire.SkipNoModel}},
		{{PID: 200, Name: "python3", MemBytes: 8 << 30, Model: "bert", Artifact: bert, Skip: wire.SkipImageUnknown},
			{PID: 400, Name: "gone", Skip: wire.SkipNoModel}},
	}
	for i, g := range w.GPUs {
		if g.Asset != gpu.AssetID("srv-1", i) || fmt.Sprint(g.Processes) != fmt.Sprint(want[i]) {
			t.Errorf("gpu %d: %s %+v\nwant %+v", i, g.Asset, g.Processes, want[i])
		}
	}
	skips := r.Skips()
	if skips[wire.SkipNoModel] != 2 || skips[wire.SkipNoContainer] != 1 || skips[wire.SkipNoProc] != 1 || skips[wire.SkipImageUnknown] != 1 {
		t.Errorf("skips = %v, want no_model 2, no_container 1, no_proc 1, image_unknown 1", skips)
	}

	// No runtime socket answering: counted as such.
	cfg.RuntimeSocket = filepath.Join(root, "none.sock")
	r2 := NewReporter(cfg, "srv-1", time.Now, slog.New(slog.DiscardHandler), func(wire.Workloads) {})
	if p := r2.Build(context.Background(), &snap).GPUs[0].Processes[0]; p.Image != "" || p.Skip != wire.SkipNoRuntime {
		t.Errorf("no runtime: %+v, want skip no_runtime", p)
	}

	// Run: the first snapshot is reported at once, an unchanged one not again.
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan wire.Workloads, 8)
	cfg.Interval, cfg.RuntimeSocket = 10*time.Millisecond, sock
	r3 := NewReporter(cfg, "srv-1", time.Now, slog.New(slog.DiscardHandler), func(w wire.Workloads) { got <- w })
	done := make(chan error, 1)
	go func() { done <- r3.Run(ctx) }()
	r3.Offer(&snap)
	first := <-got
	snap.Devices[0].Processes = snap.Devices[0].Processes[:1] // nvtop exits
	r3.Offer(&snap)
	second := <-got
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(first.GPUs[0].Processes) != 2 || len(second.GPUs[0].Processes) != 1 {
		t.Errorf("reports: %d then %d processes on gpu0, want 2 then 1", len(first.GPUs[0].Processes), len(second.GPUs[0].Processes))
	}
}

// TestContainerImage asks a Docker Engine API on a unix socket (fakeRuntime,
// standing in for dockerd) for containers' images: a pulled image gives its
// id and registry digest (the first well-formed of its RepoDigests), a
// locally built one its id alone, an image the runtime lost and an unknown
// container are image_unknown.
func TestContainerImage(t *testing.T) {
	pulled, local, lost := "sha256:"+strings.Repeat("1a", 32), "sha256:"+strings.Repeat("2b", 32), "sha256:"+strings.Repeat("3c", 32)
	repo := "sha256:" + strings.Repeat("4d", 32)
	sock := fakeRuntime(t, map[string]string{"c-pulled": pulled, "c-local": local, "c-lost": lost}, map[string][]string{
		pulled: {"not-a-digest", "registry.example/ml/triton@" + repo, "mirror.example/triton@sha256:" + strings.Repeat("5e", 32)},
		local:  {},
	})
	c := NewContainers(t.TempDir(), sock)
	ctx := context.Background()
	for _, tc := range []struct {
		id, skip string
		want     Image
	}{
		{"c-pulled", "", Image{ID: pulled, RepoDigest: repo}},
		{"c-local", "", Image{ID: local}},
		{"c-lost", wire.SkipImageUnknown, Image{}},
		{"c-none", wire.SkipImageUnknown, Image{}},
	} {
		if got, skip := c.Image(ctx, tc.id); got != tc.want || skip != tc.skip {
			t.Errorf("Image(%s) = %+v, %q; want %+v, %q", tc.id, got, skip, tc.want, tc.skip)
		}
	}
	for in, want := range map[string]string{"": "", "x@sha256:short": "", "r/x@" + repo: repo} {
		if got := RepoDigest([]string{in}); got != want {
			t.Errorf("RepoDigest([%q]) = %q, want %q", in, got, want)
		}
	}
}

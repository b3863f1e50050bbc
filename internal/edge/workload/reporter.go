package workload

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"twinchain/internal/edge/gpu"
	"twinchain/internal/wire"
)

// Config is the workloads part of the agent's configuration.
type Config struct {
	// Models are the model artifacts deployed on this host.
	Models []Model `yaml:"models"`
	// RuntimeSocket is a Docker Engine API socket (dockerd, or Podman's
	// service) to read container image digests from; "" reads none.
	RuntimeSocket string `yaml:"runtime_socket"`
	// Proc is the proc file system ("/proc").
	Proc string `yaml:"proc"`
	// Interval is how often the processes are checked (5s); a changed
	// report is sent then, an unchanged one every Resend (10m).
	Interval time.Duration `yaml:"interval"`
	Resend   time.Duration `yaml:"resend"`
	// Rehash re-reads a model file hashed longer ago than this even when
	// its size and modification time are unchanged (24h; a negative
	// value never does).
	Rehash time.Duration `yaml:"rehash"`
}

// Model is one deployed model: a process serves it when its name is
// Process, or when its command line names Path.
type Model struct {
	Name    string `yaml:"name"`    // the name the ledger registers the model under
	Path    string `yaml:"path"`    // model directory or file
	Process string `yaml:"process"` // process name (/proc/PID/comm, at most 15 bytes); "" matches by command line only
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Proc == "" {
		c.Proc = "/proc"
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Resend == 0 {
		c.Resend = 10 * time.Minute
	}
	if c.Rehash == 0 {
		c.Rehash = 24 * time.Hour
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	for i, m := range c.Models {
		if m.Name == "" || len(m.Name) > wire.MaxWorkloadString || m.Path == "" {
			return fmt.Errorf("workloads.models[%d]: want a name (at most %d bytes) and a path", i, wire.MaxWorkloadString)
		}
	}
	if c.Interval < 10*time.Millisecond {
		return fmt.Errorf("workloads.interval %s: want at least 10ms", c.Interval)
	}
	return nil
}

// Reporter turns the processes of the newest GPU snapshot into workloads
// messages, in its own goroutine: hashing never holds up telemetry.
type Reporter struct {
	cfg        Config
	host       string
	hasher     *Hasher
	containers *Containers
	publish    func(wire.Workloads)
	log        *slog.Logger
	now        func() time.Time

	latest chan *gpu.Snapshot // one slot: the newest snapshot wins

	mu     sync.Mutex
	skips  map[string]uint64
	logged map[string]bool
}

// NewReporter returns a Reporter for host's GPUs.
func NewReporter(cfg Config, host string, now func() time.Time, log *slog.Logger, publish func(wire.Workloads)) *Reporter {
	h := NewHasher()
	if cfg.Rehash > 0 {
		h.MaxAge, h.now = cfg.Rehash, now
	}
	return &Reporter{cfg: cfg, host: host, hasher: h, containers: NewContainers(cfg.Proc, cfg.RuntimeSocket),
		publish: publish, log: log, now: now, latest: make(chan *gpu.Snapshot, 1), skips: map[string]uint64{}}
}

// Offer hands the reporter a snapshot; it never blocks (an older snapshot
// not yet taken is replaced). The collector calls it for every snapshot.
func (r *Reporter) Offer(s *gpu.Snapshot) {
	snap := *s
	snap.Devices = append([]gpu.Device(nil), s.Devices...) // the collector reuses nothing, but the reporter owns its copy
	for {
		select {
		case r.latest <- &snap:
			return
		default:
		}
		select {
		case <-r.latest:
		default:
		}
	}
}

// Skips returns how many times each skip reason was reported.
func (r *Reporter) Skips() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.skips))
	for k, v := range r.skips {
		out[k] = v
	}
	return out
}

// Run reports until ctx ends: every Interval, from the newest snapshot, a
// message when what runs changed, and every Resend anyway.
func (r *Reporter) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	var snap *gpu.Snapshot
	var last *wire.Workloads
	var lastSent time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-r.latest:
			snap = s
			if last != nil {
				continue // the next tick reports it
			}
		case <-t.C:
		}
		if snap == nil {
			continue
		}
		w := r.Build(ctx, snap)
		if now := r.now(); last == nil || !reflect.DeepEqual(w, *last) || now.Sub(lastSent) >= r.cfg.Resend {
			r.publish(w)
			last, lastSent = &w, now
		}
	}
}

// Build resolves every process of s to its model artifact and container
// image.
func (r *Reporter) Build(ctx context.Context, s *gpu.Snapshot) wire.Workloads {
	w := wire.Workloads{Host: r.host, GPUs: make([]wire.GPUWorkload, 0, len(s.Devices))}
	for _, d := range s.Devices {
		g := wire.GPUWorkload{Asset: gpu.AssetID(r.host, d.Index), UUID: d.UUID, Processes: make([]wire.Process, 0, len(d.Processes))}
		for _, p := range d.Processes {
			g.Processes = append(g.Processes, r.process(ctx, p))
		}
		w.GPUs = append(w.GPUs, g)
	}
	return w
}

func (r *Reporter) process(ctx context.Context, p gpu.Process) wire.Process {
	out := wire.Process{PID: p.PID, Name: p.Name, MemBytes: p.MemBytes}
	if out.Name == "" {
		out.Name = r.comm(p.PID)
	}
	var skips []string
	if m, ok := r.match(p.PID, out.Name); !ok {
		skips = append(skips, wire.SkipNoModel)
	} else {
		out.Model = m.Name
		d, err := r.hasher.Digest(m.Path)
		if err != nil {
			r.logOnce("model "+m.Name, "model artifact unreadable (logged once per model)", "model", m.Name, "path", m.Path, "err", err)
			skips = append(skips, wire.SkipModelUnread)
		}
		out.Artifact = d
	}
	if id, skip := r.containers.ContainerID(p.PID); skip != "" {
		skips = append(skips, skip)
	} else if img, skip := r.containers.Image(ctx, id); skip != "" {
		skips = append(skips, skip)
	} else {
		out.Image, out.RepoDigest = img.ID, img.RepoDigest
	}
	if len(skips) > 0 {
		out.Skip = skips[0] // the first reason; each is counted
		r.mu.Lock()
		for _, s := range skips {
			r.skips[s]++
		}
		r.mu.Unlock()
	}
	return out
}

// match finds the configured model process pid serves: by its name, else
// by its command line naming the model's path.
func (r *Reporter) match(pid uint32, name string) (Model, bool) {
	for _, m := range r.cfg.Models {
		if m.Process != "" && m.Process == name {
			return m, true
		}
	}
	cmd, err := os.ReadFile(filepath.Join(r.cfg.Proc, strconv.FormatUint(uint64(pid), 10), "cmdline"))
	if err != nil || len(cmd) == 0 {
		return Model{}, false
	}
	for _, arg := range strings.Split(string(cmd), "\x00") {
		for _, m := range r.cfg.Models {
			if arg == m.Path || strings.HasSuffix(arg, "="+m.Path) {
				return m, true
			}
		}
	}
	return Model{}, false
}

func (r *Reporter) comm(pid uint32) string {
	b, err := os.ReadFile(filepath.Join(r.cfg.Proc, strconv.FormatUint(uint64(pid), 10), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b[:min(len(b), wire.MaxWorkloadString)]))
}

func (r *Reporter) logOnce(key, msg string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logged == nil {
		r.logged = map[string]bool{}
	}
	if !r.logged[key] {
		r.logged[key] = true
		r.log.Warn(msg, args...)
	}
}

package workload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"twinchain/internal/wire"
)

// Containers finds the container a process runs in (from /proc/PID/cgroup)
// and that container's image digest (from a Docker Engine API socket:
// dockerd, or Podman's compatible service). Image digests are cached by
// container id: a container's image does not change.
type Containers struct {
	proc   string // the proc file system, "/proc"
	client *http.Client

	mu     sync.Mutex
	images map[string]string // container id -> image digest
}

// NewContainers reads processes under proc ("/proc") and asks the runtime
// at socket (a unix socket path; "" asks none).
func NewContainers(proc, socket string) *Containers {
	c := &Containers{proc: proc, images: map[string]string{}}
	if socket != "" {
		c.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}}
	}
	return c
}

// ContainerID returns the id of the container pid runs in, read from its
// cgroup path (Docker "/docker/ID" or "docker-ID.scope", containerd and
// CRI-O "cri-containerd-ID.scope", "crio-ID.scope", Podman "libpod-ID.scope"):
// "" and wire.SkipNoContainer when it runs in none, wire.SkipNoProc when its
// cgroup is not readable.
func (c *Containers) ContainerID(pid uint32) (string, string) {
	f, err := os.Open(filepath.Join(c.proc, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return "", wire.SkipNoProc
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		_, path, _ := strings.Cut(sc.Text(), "::") // cgroup v2: "0::/path"; v1: "N:ctrl:/path"
		if path == "" {
			if i := strings.LastIndexByte(sc.Text(), ':'); i >= 0 {
				path = sc.Text()[i+1:]
			}
		}
		for _, part := range strings.Split(path, "/") {
			part = strings.TrimSuffix(part, ".scope")
			if i := strings.LastIndexByte(part, '-'); i >= 0 {
				part = part[i+1:]
			}
			if isHex64(part) {
				return part, ""
			}
		}
	}
	return "", wire.SkipNoContainer
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Image returns the image digest of container id, or "" and the reason
// (wire.SkipNoRuntime: no socket or it does not answer;
// wire.SkipImageUnknown: the runtime does not know the container).
func (c *Containers) Image(ctx context.Context, id string) (string, string) {
	c.mu.Lock()
	img, ok := c.images[id]
	c.mu.Unlock()
	if ok {
		return img, ""
	}
	if c.client == nil {
		return "", wire.SkipNoRuntime
	}
	img, err := c.inspect(ctx, id)
	if errors.Is(err, errRuntime) {
		return "", wire.SkipNoRuntime
	}
	if err != nil || !wire.ValidDigest(img) {
		return "", wire.SkipImageUnknown
	}
	c.mu.Lock()
	if len(c.images) >= 4096 { // bounded: containers come and go
		clear(c.images)
	}
	c.images[id] = img
	c.mu.Unlock()
	return img, ""
}

var errRuntime = errors.New("container runtime unreachable")

// inspect asks the Docker Engine API for the container's image ("Image" of
// GET /containers/ID/json is the image's content digest, sha256:HEX).
func (c *Containers) inspect(ctx context.Context, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://runtime/containers/"+id+"/json", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errRuntime, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("inspect %s: %s", id, resp.Status)
	}
	var v struct {
		Image string `json:"Image"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return "", err
	}
	return v.Image, nil
}

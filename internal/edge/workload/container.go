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
// and that container's image digests (from a Docker Engine API socket:
// dockerd, or Podman's compatible service): the image id (the digest of its
// config) and its registry digest (RepoDigests, what a pipeline records as
// a deployment's container hash). They are cached by container id: a
// container's image does not change.
type Containers struct {
	proc   string // the proc file system, "/proc"
	client *http.Client

	mu     sync.Mutex
	images map[string]Image // container id -> its image
}

// Image is a container's image: ID is the image id ("sha256:HEX", Docker's
// content digest of the image config), RepoDigest the registry (manifest)
// digest of the first of its RepoDigests, or "" for an image with none
// (built locally, never pushed or pulled by digest).
type Image struct {
	ID, RepoDigest string
}

// NewContainers reads processes under proc ("/proc") and asks the runtime
// at socket (a unix socket path; "" asks none).
func NewContainers(proc, socket string) *Containers {
	c := &Containers{proc: proc, images: map[string]Image{}}
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

// Image returns the image of container id, or the reason there is none
// (wire.SkipNoRuntime: no socket or it does not answer;
// wire.SkipImageUnknown: the runtime does not know the container or its
// image).
func (c *Containers) Image(ctx context.Context, id string) (Image, string) {
	c.mu.Lock()
	img, ok := c.images[id]
	c.mu.Unlock()
	if ok {
		return img, ""
	}
	if c.client == nil {
		return Image{}, wire.SkipNoRuntime
	}
	var ctr struct {
		Image string `json:"Image"`
	}
	err := c.get(ctx, "/containers/"+id+"/json", &ctr)
	var im struct {
		RepoDigests []string `json:"RepoDigests"`
	}
	if err == nil && wire.ValidDigest(ctr.Image) {
		err = c.get(ctx, "/images/"+ctr.Image+"/json", &im)
	}
	switch {
	case errors.Is(err, errRuntime):
		return Image{}, wire.SkipNoRuntime
	case err != nil || !wire.ValidDigest(ctr.Image):
		return Image{}, wire.SkipImageUnknown
	}
	img = Image{ID: ctr.Image, RepoDigest: RepoDigest(im.RepoDigests)}
	c.mu.Lock()
	if len(c.images) >= 4096 { // bounded: containers come and go
		clear(c.images)
	}
	c.images[id] = img
	c.mu.Unlock()
	return img, ""
}

// RepoDigest is the digest part ("sha256:HEX") of the first well-formed
// entry of an image's RepoDigests ("registry/repo@sha256:HEX"), or "".
func RepoDigest(repoDigests []string) string {
	for _, rd := range repoDigests {
		if i := strings.LastIndexByte(rd, '@'); i >= 0 && wire.ValidDigest(rd[i+1:]) {
			return rd[i+1:]
		}
	}
	return ""
}

var errRuntime = errors.New("container runtime unreachable")

// get asks the Docker Engine API for path and decodes its JSON answer into v
// (GET /containers/ID/json: "Image" is the image id; GET /images/ID/json:
// "RepoDigests" its registry digests).
func (c *Containers) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://runtime"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errRuntime, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

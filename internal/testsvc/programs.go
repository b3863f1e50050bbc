package testsvc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	programsMu sync.Mutex
	programs   = map[string]string{} // names -> directory holding the built binaries
)

// Programs builds the module's programs (e.g. "twin-service",
// "firmware-sim") into a temporary directory, once per test binary for the
// same list, and returns the directory; each binary has the program's name.
func Programs(t testing.TB, names ...string) string {
	t.Helper()
	key := strings.Join(names, " ")
	programsMu.Lock()
	defer programsMu.Unlock()
	if dir, ok := programs[key]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", "twinchain-bin-")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "twinchain/"+n)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", key, err, out)
	}
	programs[key] = dir
	return dir
}

// Buffer is a bytes.Buffer safe for a process's writes and a test's reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// RemovePrograms deletes what Programs built; call it from TestMain after m.Run.
func RemovePrograms() {
	programsMu.Lock()
	defer programsMu.Unlock()
	for key, dir := range programs {
		os.RemoveAll(dir)
		delete(programs, key)
	}
}

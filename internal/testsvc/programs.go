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
	programsMu  sync.Mutex
	programsDir string          // one directory per test binary
	built       map[string]bool // the programs already in programsDir
)

// Programs builds the module's programs (e.g. "twin-service",
// "firmware-sim") into a temporary directory, each once per test binary,
// and returns the directory; each binary has the program's name.
func Programs(t testing.TB, names ...string) string {
	t.Helper()
	programsMu.Lock()
	defer programsMu.Unlock()
	if programsDir == "" {
		dir, err := os.MkdirTemp("", "twinchain-bin-")
		if err != nil {
			t.Fatal(err)
		}
		programsDir, built = dir, map[string]bool{}
	}
	var missing []string
	for _, n := range names {
		if !built[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return programsDir
	}
	args := []string{"build", "-o", programsDir + string(filepath.Separator)}
	for _, n := range missing {
		args = append(args, "twinchain/"+n)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(missing, " "), err, out)
	}
	for _, n := range missing {
		built[n] = true
	}
	return programsDir
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
	if programsDir != "" {
		os.RemoveAll(programsDir)
	}
	programsDir, built = "", nil
}

package agentkey

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "agent.key")
	k1, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate(new) = %v, created %v, want a new key", err, created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", st.Mode().Perm())
	}
	k2, created, err := LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("LoadOrCreate(existing) = %v, created %v", err, created)
	}
	if !k1.Equal(k2) {
		t.Errorf("reloaded key differs from the created one")
	}
	msg := []byte("x")
	if !ed25519.Verify(k2.Public().(ed25519.PublicKey), msg, ed25519.Sign(k1, msg)) {
		t.Errorf("reloaded key does not verify the original's signature")
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreate(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadOrCreate(mode 0644) = %v, want a refusal", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, _, err := LoadOrCreate(bad); err == nil {
		t.Errorf("LoadOrCreate(garbage) = nil error, want an error")
	}
}

func TestSequenceNeverGoesBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seq")
	var last uint64
	for restart := 0; restart < 4; restart++ {
		s, err := OpenSequence(path, 10)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 7+restart*5; i++ { // cross block ends on some runs
			n, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			if n <= last {
				t.Fatalf("restart %d: Next() = %d after %d, want larger", restart, n, last)
			}
			last = n
		}
	}
	data, _ := os.ReadFile(path)
	if got := strings.TrimSpace(string(data)); got == "" {
		t.Errorf("sequence file empty")
	}
}

// TestSequenceCleanStopNoGap: after Close the next start continues with the
// next number; after a crash (no Close) it continues after the reserved block.
func TestSequenceCleanStopNoGap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seq")
	s, err := OpenSequence(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s.Next()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); err == nil {
		t.Errorf("Next after Close = nil error, want an error")
	}
	s, _ = OpenSequence(path, 100)
	if got := s.Peek(); got != 4 {
		t.Errorf("after a clean stop at 3, Peek() = %d, want 4", got)
	}
	s.Next() // 4; the block 4..103 is reserved; now "crash" without Close
	s, _ = OpenSequence(path, 100)
	if got := s.Peek(); got != 104 {
		t.Errorf("after a crash within block 4..103, Peek() = %d, want 104", got)
	}
}

func BenchmarkSequenceNext(b *testing.B) {
	s, err := OpenSequence(filepath.Join(b.TempDir(), "seq"), 10000)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

package influxstore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestSpoolTornLineAndAck: a crash mid-append leaves a partial last line,
// which reopening cuts; the ack survives a reopen; fully written segments
// are deleted.
func TestSpoolTornLineAndAck(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"a v=1 1\n", "a v=2 2\n", "a v=3 3\n"} {
		if _, err := s.append([]byte(l), 1); err != nil {
			t.Fatal(err)
		}
	}
	batch, n, next, err := s.peek(nil, 2, 1<<20)
	if err != nil || n != 2 || string(batch) != "a v=1 1\na v=2 2\n" {
		t.Fatalf("peek = %q, %d, %v, want the first two lines", batch, n, err)
	}
	if err := s.ack(next, n); err != nil {
		t.Fatal(err)
	}
	// Simulate a torn write at the end of the head segment.
	head := filepath.Join(dir, segName(s.segs[len(s.segs)-1].id))
	s.close()
	f, err := os.OpenFile(head, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("a v=4 4") // no newline: torn
	f.Close()

	s, err = openSpool(dir, 1<<20, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if lines, _ := s.pending(); lines != 1 {
		t.Errorf("pending after reopen = %d lines, want 1", lines)
	}
	var got string
	for {
		batch, n, next, err := s.peek(nil, 10, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		got += string(batch)
		if err := s.ack(next, n); err != nil {
			t.Fatal(err)
		}
	}
	if got != "a v=3 3\n" {
		t.Errorf("replayed %q, want only the unacked whole line", got)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if len(segs) != 1 {
		t.Errorf("segment files left = %v, want only the head", segs)
	}
}

// TestSpoolFailedSync: lines whose fsync failed are reported as not
// written, never sent and never replayed after a restart; the spool goes on
// in a new segment file; its files are private.
func TestSpoolFailedSync(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.append([]byte("a v=1 1\n"), 1); err != nil {
		t.Fatal(err)
	}
	failing := errors.New("input/output error")
	s.sync = func(*os.File) error { return failing }
	if _, err := s.append([]byte("a v=2 2\na v=3 3\n"), 2); !errors.Is(err, failing) {
		t.Fatalf("append with a failing fsync = %v, want the fsync error", err)
	}
	if lines, size := s.pending(); lines != 1 || size != 8 {
		t.Errorf("pending after the failed append = %d lines, %d bytes; want the 1 line (8 bytes) before it", lines, size)
	}
	s.sync = (*os.File).Sync
	if _, err := s.append([]byte("a v=4 4\n"), 1); err != nil {
		t.Fatalf("append after the failure: %v", err)
	}
	if n := len(s.segs); n != 2 {
		t.Errorf("%d segments after a failed fsync, want 2: the lines go on in a new file", n)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s, err = openSpool(dir, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var got string
	for {
		batch, n, next, err := s.peek(nil, 10, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		got += string(batch)
		if err := s.ack(next, n); err != nil {
			t.Fatal(err)
		}
	}
	if got != "a v=1 1\na v=4 4\n" {
		t.Errorf("after a restart the spool sends %q, want only the lines whose append succeeded", got)
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		info, _ := f.Info()
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or other access", f.Name(), info.Mode().Perm())
		}
	}
}

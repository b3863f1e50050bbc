package twinstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"twinchain/internal/wire"
)

// fill stores n messages of 300 bytes.
func fill(t *testing.T, s *Store, n int) {
	t.Helper()
	for i := 0; i < n; i += 50 {
		err := s.Update(func(tx *Tx) error {
			for j := i; j < min(i+50, n); j++ {
				m := Message{Gateway: "gw", Seq: uint64(j + 1), Kind: wire.KindStatus, Time: t0, Recorded: t0.Add(time.Duration(j) * time.Millisecond), Raw: make([]byte, 300)}
				if err := tx.AppendMessage(&m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestDamagedFileRefused: a store file cut short, or without a valid
// header, is refused with an error naming the file and what to do, before
// bbolt maps it (which killed the process).
func TestDamagedFileRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		harm func(path string, size int64) error
		want string
	}{
		{"cut in half", func(path string, size int64) error { return os.Truncate(path, size/2) }, "is cut short"},
		{"cut to one page", func(path string, size int64) error { return os.Truncate(path, 4096) }, "is cut short"},
		{"pages in the middle overwritten", func(path string, size int64) error {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(make([]byte, 16*4096), size/2/4096*4096)
			return err
		}, "is damaged"},
		{"headers overwritten", func(path string, size int64) error {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(make([]byte, 2*65536), 0)
			return err
		}, "no valid bbolt header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "twins.db")
			s := open(t, path)
			fill(t, s, 10000)
			s.Close()
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.harm(path, st.Size()); err != nil {
				t.Fatal(err)
			}
			s, err = Open(path, Options{})
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "backup") {
				t.Errorf("Open(damaged) = %v, want ErrDamaged naming %s, saying %q and what to do", err, path, tc.want)
			}
		})
	}
}

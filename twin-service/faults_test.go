package main

import (
	"io/fs"
	"path/filepath"
	"testing"
)

// checkPrivate fails for every file under dir that its group or others may
// read (files must be 0600 at most, directories 0700), except the named
// files the test wrote itself.
func checkPrivate(t *testing.T, dir string, own ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, o := range own {
		skip[filepath.Join(dir, o)] = true
	}
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || skip[path] {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if info.Mode().Perm()&0o077 != 0 {
			rel, _ := filepath.Rel(dir, path)
			t.Errorf("%s has mode %v, want no group or other access", rel, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("only %d files and directories under %s: the service made less than expected", n, dir)
	}
}

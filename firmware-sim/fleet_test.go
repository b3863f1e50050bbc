package main

import (
	"path/filepath"
	"reflect"
	"testing"
)

// TestSeqStateResumesOnlyAfterACleanStop: a clean stop resumes each
// gateway's sequence; a run that never saved (a crash) resumes nothing, so
// the time-based base keeps numbers from repeating.
func TestSeqStateResumesOnlyAfterACleanStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	got, err := loadSeqState(path)
	if err != nil || got != nil {
		t.Fatalf("first run: loadSeqState = %v, %v; want nothing", got, err)
	}
	want := map[string]uint64{"gw-a": 41, "gw-b": 7}
	if err := saveSeqState(path, true, want); err != nil {
		t.Fatal(err)
	}
	if got, err = loadSeqState(path); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after a clean stop: loadSeqState = %v, %v; want %v", got, err, want)
	}
	// This run "crashes": it never saves. The next one must not resume.
	if got, err = loadSeqState(path); err != nil || got != nil {
		t.Errorf("after a crash: loadSeqState = %v, %v; want nothing", got, err)
	}
}

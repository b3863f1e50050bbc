package twin

import (
	"testing"
	"time"

	"twinchain/internal/wire"
)

func TestFixAheadAndOlder(t *testing.T) {
	recv := time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *wire.GPSFix { return &wire.GPSFix{Lat: 52.5, Lon: 13.4, FixTime: recv.Add(d)} }
	ahead := []struct {
		name       string
		fix        *wire.GPSFix
		read, recv time.Time
		want       bool
	}{
		{"a second old", at(-time.Second), recv, recv, false},
		{"a minute ahead: clocks differ that much", at(time.Minute), recv, recv, false},
		{"six hours ahead of message and arrival", at(6 * time.Hour), recv, recv, true},
		{"a simulated fleet an hour ahead", at(time.Hour), recv.Add(time.Hour), recv, false},
		{"an agent clock six hours behind, the fix right", at(0), recv.Add(-6 * time.Hour), recv, false},
		{"no date", &wire.GPSFix{Lat: 52.5}, recv, recv, false},
	}
	for _, tc := range ahead {
		if got := FixAhead(tc.fix, tc.read, tc.recv); got != tc.want {
			t.Errorf("FixAhead(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
	older := []struct {
		name      string
		fix, kept *wire.GPSFix
		want      bool
	}{
		{"older than the kept fix", at(-2 * time.Second), at(-time.Second), true},
		{"newer", at(-time.Second), at(-2 * time.Second), false},
		{"nothing kept", at(-time.Second), nil, false},
		{"no date: arrival order", &wire.GPSFix{Lat: 52.5}, at(-time.Second), false},
		{"the kept fix has no date", at(-time.Hour), &wire.GPSFix{Lat: 52.5}, false},
		{"the kept fix is six hours ahead (kept before it was checked)", at(-time.Second), at(6 * time.Hour), false},
	}
	for _, tc := range older {
		if got := FixOlder(tc.fix, tc.kept, recv, recv); got != tc.want {
			t.Errorf("FixOlder(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

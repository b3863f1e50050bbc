package nmea

import (
	"bytes"
	"os"
	"testing"
	"time"

	gonmea "github.com/adrianmo/go-nmea"
)

func captureLines(b *testing.B) [][]byte {
	data, err := os.ReadFile("testdata/hemi.log")
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 && l[0] == '$' {
			out = append(out, l)
		}
	}
	return out
}

// BenchmarkTrackerFeed replays a real capture (hemi.log) through a Tracker,
// per line. BenchmarkParseOnly is the baseline in the same run: go-nmea's
// parser alone on the same lines; the ratio is the tracker's own cost.
func BenchmarkTrackerFeed(b *testing.B) {
	lines := captureLines(b)
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr := NewTracker("gw", time.Time{})
		for _, l := range lines {
			tr.Feed(l, at)
		}
		tr.End()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lines)), "ns/line")
}

func BenchmarkParseOnly(b *testing.B) {
	lines := captureLines(b)
	var p gonmea.SentenceParser
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, l := range lines {
			_, _ = p.Parse(string(l))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lines)), "ns/line")
}

// Package nmea turns the NMEA 0183 sentences of a GNSS receiver into position
// fixes. Sentences are parsed with github.com/adrianmo/go-nmea; GGA, RMC, GSA
// and VTG from GPS, GLONASS, Galileo, BeiDou and combined (GN) talkers are
// used. Bad checksums, partial lines, noise, invalid fixes and fixes that go
// back in time are dropped and counted.
package nmea

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	gonmea "github.com/adrianmo/go-nmea"

	"twinchain/internal/wire"
)

// Stats counts the sentences a Tracker saw, by outcome.
type Stats struct {
	Used       uint64 // GGA, RMC, GSA or VTG sentences that fed a fix
	Ignored    uint64 // well-formed sentences of other types or talkers (GSV, GLL, ZDA, proprietary)
	Checksum   uint64 // bad or missing checksum
	Malformed  uint64 // partial lines, noise, fields the parser rejects
	InvalidFix uint64 // the receiver says it has no valid fix (GGA quality 0/6/7/8, RMC V, GSA 1, mode N)
	Backwards  uint64 // a fix older than one already reported
	Fixes      uint64 // fixes (epochs) produced
}

// Dropped is the number of lines dropped as bad input or bad fixes.
func (s Stats) Dropped() uint64 { return s.Checksum + s.Malformed + s.InvalidFix + s.Backwards }

// talkers are the talker ids whose sentences are used: GPS, GLONASS, Galileo,
// BeiDou (both ids) and multi-constellation.
var talkers = map[string]bool{"GP": true, "GL": true, "GA": true, "GB": true, "BD": true, "GN": true}

const knot = 1852.0 / 3600.0 // metres per second

// Tracker assembles fixes from sentences. Sentences of one epoch (the same
// time of day) are merged into one fix. A Tracker is not safe for
// concurrent use.
type Tracker struct {
	asset  string
	now    func() time.Time
	parser gonmea.SentenceParser
	Stats  Stats

	date     time.Time // UTC midnight of the latest RMC date; zero until one is seen
	fix      wire.GPSFix
	have     bool // fix holds a valid position
	guessed  bool // fix's date came from the clock, not the receiver
	taken    time.Time
	hdopSeen bool // the epoch's HDOP came from GGA
}

// NewTracker returns a Tracker whose fixes name asset. now gives the date
// while the receiver has sent no RMC (GGA carries only the time of day).
func NewTracker(asset string, now func() time.Time) *Tracker {
	return &Tracker{asset: asset, now: now}
}

// Feed takes one line (without its line end). It reports whether the line
// changed the current fix and returns that fix.
func (t *Tracker) Feed(line []byte) (wire.GPSFix, bool) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return wire.GPSFix{}, false
	}
	i := bytes.LastIndexByte(line, '$')
	if i < 0 {
		t.Stats.Malformed++ // a torn line, or noise
		return wire.GPSFix{}, false
	}
	line = line[i:]
	star := bytes.LastIndexByte(line, '*')
	if star < 0 || len(line)-star != 3 || !checksumOK(line[1:star], line[star+1:]) {
		t.Stats.Checksum++
		return wire.GPSFix{}, false
	}
	fields := strings.Split(string(line[1:star]), ",")
	addr := fields[0]
	if len(addr) != 5 || !talkers[addr[:2]] {
		t.Stats.Ignored++
		return wire.GPSFix{}, false
	}
	switch typ := addr[2:]; typ {
	case "GGA":
		if len(fields) < 10 {
			t.Stats.Malformed++
			return wire.GPSFix{}, false
		}
		if q := fields[6]; q < "1" || q > "5" || len(q) != 1 {
			t.Stats.InvalidFix++
			return wire.GPSFix{}, false
		}
	case "RMC":
		if len(fields) < 10 {
			t.Stats.Malformed++
			return wire.GPSFix{}, false
		}
		if fields[2] != "A" || len(fields) > 12 && (fields[12] == "N" || fields[12] == "E" || fields[12] == "S") {
			t.Stats.InvalidFix++
			return wire.GPSFix{}, false
		}
	case "GSA", "VTG":
	default:
		t.Stats.Ignored++
		return wire.GPSFix{}, false
	}
	s, err := t.parser.Parse(string(line))
	if err != nil {
		t.Stats.Malformed++
		return wire.GPSFix{}, false
	}
	switch s := s.(type) {
	case gonmea.GGA:
		q, _ := strconv.Atoi(s.FixQuality)
		return t.position(s.Time, time.Time{}, s.Latitude, s.Longitude, func(f *wire.GPSFix) {
			f.AltM, f.Quality, f.HDOP, f.Sats = s.Altitude, q, s.HDOP, int(s.NumSatellites)
			t.hdopSeen = true
		})
	case gonmea.RMC:
		if !s.Date.Valid {
			t.Stats.Malformed++
			return wire.GPSFix{}, false
		}
		date := time.Date(2000+s.Date.YY, time.Month(s.Date.MM), s.Date.DD, 0, 0, 0, 0, time.UTC)
		if s.Date.YY >= 80 {
			date = date.AddDate(-100, 0, 0)
		}
		return t.position(s.Time, date, s.Latitude, s.Longitude, func(f *wire.GPSFix) {
			f.SpeedMS, f.CourseDeg = s.Speed*knot, s.Course
			if f.Quality == 0 {
				f.Quality = qualityOfMode(s.FFAMode)
			}
		})
	case gonmea.GSA:
		if s.FixType == gonmea.FixNone {
			t.Stats.InvalidFix++
			return wire.GPSFix{}, false
		}
		t.Stats.Used++
		if t.have && !t.hdopSeen && s.HDOP > 0 {
			t.fix.HDOP = s.HDOP
			return t.fix, true
		}
	case gonmea.VTG:
		if s.FFAMode == "N" {
			t.Stats.InvalidFix++
			return wire.GPSFix{}, false
		}
		t.Stats.Used++
		if t.have {
			t.fix.SpeedMS, t.fix.CourseDeg = s.GroundSpeedKPH/3.6, s.TrueTrack
			return t.fix, true
		}
	}
	return wire.GPSFix{}, false
}

// position applies a GGA or RMC position with time of day tod, on date when
// the sentence carries one.
func (t *Tracker) position(tod gonmea.Time, date time.Time, lat, lon float64, fill func(*wire.GPSFix)) (wire.GPSFix, bool) {
	if !tod.Valid || lat < -90 || lat > 90 || lon < -180 || lon > 180 || lat == 0 && lon == 0 {
		t.Stats.Malformed++
		return wire.GPSFix{}, false
	}
	if !date.IsZero() {
		t.date = date
		if t.guessed {
			// The receiver's own date replaces the clock's guess.
			t.have, t.guessed, t.taken = false, false, time.Time{}
		}
	}
	at := t.fixTime(tod)
	switch {
	case t.have && at.Before(t.fix.FixTime):
		t.Stats.Backwards++
		return wire.GPSFix{}, false
	case !t.have || at.After(t.fix.FixTime):
		t.fix = wire.GPSFix{Asset: t.asset, FixTime: at}
		t.have, t.hdopSeen, t.guessed = true, false, t.date.IsZero()
		t.Stats.Fixes++
	}
	t.Stats.Used++
	t.fix.Lat, t.fix.Lon = lat, lon
	fill(&t.fix)
	return t.fix, true
}

// fixTime puts a time of day on the latest known date. Without one it uses
// now's date, taking the day before or after when that puts the fix nearer now.
func (t *Tracker) fixTime(tod gonmea.Time) time.Time {
	day := t.date
	fromClock := day.IsZero()
	if fromClock {
		n := t.now().UTC()
		day = time.Date(n.Year(), n.Month(), n.Day(), 0, 0, 0, 0, time.UTC)
	}
	at := day.Add(time.Duration(tod.Hour)*time.Hour + time.Duration(tod.Minute)*time.Minute +
		time.Duration(tod.Second)*time.Second + time.Duration(tod.Millisecond)*time.Millisecond)
	ref := t.now().UTC()
	if !fromClock {
		if !t.have {
			return at
		}
		ref = t.fix.FixTime
	}
	// A GGA after midnight arrives before the RMC that brings the new date.
	if d := at.Sub(ref); d < -12*time.Hour {
		at = at.Add(24 * time.Hour)
	} else if d > 12*time.Hour {
		at = at.Add(-24 * time.Hour)
	}
	return at
}

// Take returns the current fix if it is newer than the one Take returned last.
func (t *Tracker) Take() (wire.GPSFix, bool) {
	if !t.have || !t.fix.FixTime.After(t.taken) {
		return wire.GPSFix{}, false
	}
	t.taken = t.fix.FixTime
	return t.fix, true
}

func qualityOfMode(mode string) int {
	switch mode {
	case "D":
		return 2
	case "R":
		return 4
	case "F":
		return 5
	}
	return 1
}

func checksumOK(body, sum []byte) bool {
	var x byte
	for _, c := range body {
		x ^= c
	}
	want, err := strconv.ParseUint(string(sum), 16, 8)
	return err == nil && byte(want) == x
}

// Sentence returns "$body*HH\r\n": body with its checksum. firmware-sim uses
// it to play a receiver.
func Sentence(body string) string {
	var x byte
	for i := 0; i < len(body); i++ {
		x ^= body[i]
	}
	const digits = "0123456789ABCDEF"
	return "$" + body + "*" + string([]byte{digits[x>>4], digits[x&15]}) + "\r\n"
}

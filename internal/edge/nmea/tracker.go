// Package nmea turns the NMEA 0183 sentences of a GNSS receiver into position
// fixes, one per epoch. Sentences are parsed with github.com/adrianmo/go-nmea;
// GGA, RMC, GNS, GLL, GSA, VTG and ZDA from GPS, GLONASS, Galileo, BeiDou
// and combined (GN) talkers are used.
//
// An epoch is the receiver's output for one instant: the sentences from the
// first one carrying a new time of fix (GGA, RMC, GNS, GLL, ZDA) up to the next
// such sentence, or up to a quiet line (Tracker.End). A fix is made when its
// epoch ends, so it holds everything the epoch said (position, altitude,
// satellites, HDOP, speed, course), and only when no sentence of the epoch
// said the receiver has no fix.
//
// Dates are the receiver's: an epoch's own RMC or ZDA, else the last one
// carried over the time of day. A fix from a receiver that has sent no date
// has none (a zero FixTime): the agent's clock never stands in for it. A
// date before the floor is a GPS week-number rollover and moves forward by
// 1024 weeks. Bad checksums, partial lines, noise, invalid fixes and fixes
// that go back in time are dropped and counted.
package nmea

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	gonmea "github.com/adrianmo/go-nmea"

	"twinchain/internal/wire"
)

// Stats counts the sentences and epochs a Tracker saw, by outcome.
type Stats struct {
	Used       uint64 // GGA, RMC, GNS, GLL, GSA, VTG or ZDA sentences that fed an epoch
	Ignored    uint64 // well-formed sentences of other types or talkers (GSV, TXT, proprietary)
	Checksum   uint64 // bad or missing checksum
	Malformed  uint64 // partial lines, noise, fields the parser rejects
	InvalidFix uint64 // sentences saying the receiver has no fix (GGA quality 0/6/7/8 or 0 satellites, RMC or GLL V, GSA 1, mode N)
	Backwards  uint64 // epochs at or before one already reported, and sentences of an epoch already closed
	Epochs     uint64 // epochs closed
	Fixes      uint64 // fixes made (epochs with a valid position)
	Undated    uint64 // fixes without a date: the receiver had sent none
	Rollovers  uint64 // fixes whose receiver date was moved forward by 1024 weeks
}

// Dropped is the number of lines and epochs dropped as bad input or bad fixes.
func (s Stats) Dropped() uint64 { return s.Checksum + s.Malformed + s.InvalidFix + s.Backwards }

// talkers are the talker ids whose sentences are used: GPS, GLONASS, Galileo,
// BeiDou (both ids) and multi-constellation.
var talkers = map[string]bool{"GP": true, "GL": true, "GA": true, "GB": true, "BD": true, "GN": true}

const knot = 1852.0 / 3600.0 // metres per second

// Fix is one epoch's fix: the wire body and how its time is known.
type Fix struct {
	wire.GPSFix
	TimeOfDay time.Duration // the receiver's UTC time of fix since midnight
	Date      DateSource    // where FixTime's date came from; DateNone: FixTime is zero
	Rollover  bool          // the receiver's date was 1024 weeks (or a multiple) behind and was moved forward
	// Which optional parts the epoch's sentences carried.
	HasAlt, HasSpeed, HasCourse bool
}

// sentenceKind is a bit for each sentence type that carries a time of fix.
type sentenceKind uint8

const (
	kindGGA sentenceKind = 1 << iota
	kindRMC
	kindGLL
	kindZDA
	kindGNS
)

// epoch collects the sentences of one instant.
type epoch struct {
	tod   time.Duration // the receiver's time of day
	timed bool          // tod is known (a GGA, RMC, GNS, GLL or ZDA came)
	kinds sentenceKind  // the timed sentence types seen
	at    time.Time     // agent clock at the first sentence

	// noFix: a sentence said the receiver has no fix. weakNoFix: a GGA
	// or GNS said no satellites were used, or a GSA had no fix; affirmed:
	// an RMC or GLL with status A, a GNS with a fix or a GSA with a
	// 2D/3D fix says otherwise (gpsd takes the last word; the order of
	// sentences in an epoch is the receiver's whim, so here any will do).
	noFix, weakNoFix, affirmed bool

	pos      bool // lat/lon: the last GGA, RMC, GNS or GLL position (as gpsd)
	lat, lon float64
	alt      float64
	hasAlt   bool
	qual     int
	hdop     float64 // from GGA or GNS
	gsaDOP   float64 // from GSA, when GGA has none
	sats     int     // from GGA or GNS
	gsaSats  int     // satellites the epoch's GSAs list
	speed    float64
	course   float64
	hasSpd   bool
	hasCrs   bool
	rmcSpd   bool // speed and course came from RMC (VTG fills only what RMC left)
	vtg      bool // a VTG came: a second one belongs to the next epoch
	vtgLine  string
	rmcDay   time.Time
	zdaDay   time.Time
}

// Tracker assembles fixes from sentences. A Tracker is not safe for
// concurrent use.
type Tracker struct {
	asset  string
	floor  time.Time
	parser gonmea.SentenceParser
	Stats  Stats

	cur     epoch
	open    bool
	closed  time.Duration // time of day of the last closed epoch
	hasShut bool          // closed is set
	ref     dateRef
	hasRef  bool
	last    time.Time // the newest dated fix made
}

// NewTracker returns a Tracker whose fixes name asset. Receiver dates before
// floor are moved forward by whole GPS week-number periods; a zero floor
// takes every date as sent.
func NewTracker(asset string, floor time.Time) *Tracker {
	return &Tracker{asset: asset, floor: floor}
}

// Feed takes one line (without its line end) that arrived at at, by the
// agent's clock (which measures time between sentences only; zero when not
// known). When the line begins a new epoch and the one before it held a
// valid fix, Feed returns that fix.
func (t *Tracker) Feed(line []byte, at time.Time) (Fix, bool) {
	sn, ok := t.parse(line)
	if !ok {
		return Fix{}, false
	}
	out, done := t.place(&sn, at)
	if sn.drop {
		return out, done
	}
	t.cur.kinds |= sn.kind
	if sn.vtg {
		t.cur.vtg, t.cur.vtgLine = true, sn.line
	}
	switch {
	case sn.noFix:
		t.Stats.InvalidFix++
		t.cur.noFix = true
	case !t.apply(sn.s, sn.fields):
		t.Stats.Malformed++
	default:
		t.Stats.Used++
		if sn.weak {
			t.Stats.InvalidFix++
			t.cur.weakNoFix = true
		}
	}
	return out, done
}

// sentence is one parsed line and what it says about the epoch.
type sentence struct {
	s      gonmea.Sentence
	line   string
	fields []string
	kind   sentenceKind // for the sentences that carry a time of fix
	tod    gonmea.Time
	vtg    bool
	noFix  bool // the receiver says it has no fix
	weak   bool // says "no fix" unless another sentence of the epoch says otherwise
	drop   bool // set by place: the sentence belongs to no open epoch
}

// The sentence types used: the fewest fields each needs, and the field
// holding the time of fix of those that carry one and can say "no fix".
var (
	minFields = map[string]int{"GGA": 10, "RMC": 10, "GLL": 7, "GNS": 10, "ZDA": 5, "GSA": 3, "VTG": 8}
	noFixTime = map[string]sentenceKind{"GGA": kindGGA, "RMC": kindRMC, "GLL": kindGLL, "GNS": kindGNS}
	timeField = map[string]int{"GGA": 1, "RMC": 1, "GLL": 5, "GNS": 1}
)

// noFixSaid reports whether a GGA, RMC, GLL or GNS says the receiver has no
// fix: GGA quality other than 1-5 (0 none, 6 estimated, 7 manual, 8
// simulated), RMC or GLL status V or mode N/E/S, GNS modes without A, D, P, R
// or F (one per constellation).
func noFixSaid(typ string, f []string) bool {
	switch typ {
	case "GGA":
		q := f[6]
		return len(q) != 1 || q < "1" || q > "5"
	case "RMC":
		return f[2] != "A" || len(f) > 12 && (f[12] == "N" || f[12] == "E" || f[12] == "S")
	case "GLL":
		return f[6] != "A" || len(f) > 7 && (f[7] == "N" || f[7] == "E" || f[7] == "S")
	case "GNS":
		return !strings.ContainsAny(f[6], "ADPRF")
	}
	return false
}

// parse checks and parses one line, counting what it drops.
func (t *Tracker) parse(line []byte) (sentence, bool) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return sentence{}, false
	}
	i := bytes.LastIndexByte(line, '$')
	if i < 0 {
		t.Stats.Malformed++ // a torn line, or noise
		return sentence{}, false
	}
	line = line[i:]
	star := bytes.LastIndexByte(line, '*')
	if star < 0 || len(line)-star != 3 || !checksumOK(line[1:star], line[star+1:]) {
		t.Stats.Checksum++
		return sentence{}, false
	}
	sn := sentence{line: string(line)}
	sn.fields = strings.Split(sn.line[1:star], ",")
	f := sn.fields
	addr := f[0]
	if len(addr) != 5 || !talkers[addr[:2]] {
		t.Stats.Ignored++
		return sentence{}, false
	}
	need := minFields[addr[2:]]
	switch {
	case need == 0:
		t.Stats.Ignored++
		return sentence{}, false
	case len(f) < need:
		t.Stats.Malformed++
		return sentence{}, false
	case addr[2:] == "ZDA" && f[1] == "":
		t.Stats.Ignored++ // no time yet: says nothing
		return sentence{}, false
	}
	if k, ok := noFixTime[addr[2:]]; ok && noFixSaid(addr[2:], f) {
		// "No fix": only the time counts, and the other fields are
		// often garbage (a cold-started receiver's).
		sn.kind, sn.noFix = k, true
		sn.tod, _ = gonmea.ParseTime(f[timeField[addr[2:]]])
		return sn, true
	}
	s, err := t.parser.Parse(sn.line)
	if err != nil {
		t.Stats.Malformed++
		return sentence{}, false
	}
	sn.s = s
	switch s := s.(type) {
	case gonmea.GGA:
		sn.tod, sn.kind = s.Time, kindGGA
		sn.weak = isZero(f[7]) // gpsd: no satellites used, no fix
	case gonmea.RMC:
		sn.tod, sn.kind = s.Time, kindRMC
	case gonmea.GLL:
		sn.tod, sn.kind = s.Time, kindGLL
	case gonmea.GNS:
		sn.tod, sn.kind = s.Time, kindGNS
		sn.weak = isZero(f[7])
	case gonmea.ZDA:
		sn.tod, sn.kind = s.Time, kindZDA
	case gonmea.GSA:
		// One GSA per constellation: one without a fix does not undo
		// another's.
		sn.weak = s.FixType == gonmea.FixNone
	case gonmea.VTG:
		sn.vtg = true
		sn.noFix = s.FFAMode == "N"
	}
	if sn.kind != 0 && !sn.tod.Valid && !sn.noFix {
		t.Stats.Malformed++ // a fix needs its time
		return sentence{}, false
	}
	return sn, true
}

// place puts a sentence into the open epoch, first closing that epoch when
// the sentence begins another; it returns the closed epoch's fix.
func (t *Tracker) place(sn *sentence, at time.Time) (Fix, bool) {
	var out Fix
	var done bool
	switch {
	case sn.kind != 0 && sn.tod.Valid:
		d := timeOfDay(sn.tod)
		// An epoch that has no time yet takes this one unless it has a
		// sentence of this type already, or it began with "no fix" and
		// this sentence has one (that was the end of the last epoch).
		pending := t.open && !t.cur.timed && t.cur.kinds&sn.kind == 0 &&
			!(t.cur.noFix && !sn.noFix && sn.kind != kindZDA)
		if t.open && (t.cur.timed && d != t.cur.tod || !t.cur.timed && !pending) {
			out, done = t.close()
		}
		if t.hasShut && d == t.closed && !(t.open && t.cur.timed) {
			// A sentence of the epoch already closed (by a quiet line):
			// its fix is out; one fix per epoch.
			t.Stats.Backwards++
			t.open, t.cur = false, epoch{}
			sn.drop = true
			return out, done
		}
		if !t.open {
			t.open, t.cur = true, epoch{at: at}
		}
		t.cur.tod, t.cur.timed = d, true
	case sn.kind != 0:
		// No fix and no time ("$GPGGA,,,,,,0,,,,M,,M,,"): the first
		// sentence of an epoch without a fix.
		if t.open && (t.cur.timed || t.cur.kinds&sn.kind != 0) {
			out, done = t.close()
		}
		if !t.open {
			t.open, t.cur = true, epoch{at: at}
		}
	case !t.open:
		t.open, t.cur = true, epoch{at: at}
	case sn.vtg && t.cur.vtg && t.cur.vtgLine == sn.line:
		t.Stats.Used++ // repeated by a multiplexer
		sn.drop = true
	case sn.vtg && t.cur.vtg:
		// A second VTG: the next epoch's, before its timed sentences.
		out, done = t.close()
		t.open, t.cur = true, epoch{at: at}
	}
	return out, done
}

// apply adds a sentence the receiver gave with a fix to the open epoch; it
// reports false for fields out of range.
func (t *Tracker) apply(s gonmea.Sentence, fields []string) bool {
	e := &t.cur
	switch s := s.(type) {
	case gonmea.GGA:
		if !validPos(s.Latitude, s.Longitude) {
			return false
		}
		e.lat, e.lon, e.pos = s.Latitude, s.Longitude, true
		if fields[9] != "" {
			e.alt, e.hasAlt = s.Altitude, true
		}
		e.qual, _ = strconv.Atoi(s.FixQuality)
		if fields[8] != "" {
			e.hdop = s.HDOP
		}
		if fields[7] != "" {
			e.sats = int(s.NumSatellites)
		}
	case gonmea.RMC:
		if !validPos(s.Latitude, s.Longitude) {
			return false
		}
		e.lat, e.lon, e.pos, e.affirmed = s.Latitude, s.Longitude, true, true
		if e.qual == 0 {
			e.qual = qualityOfMode(s.FFAMode)
		}
		if fields[7] != "" {
			e.speed, e.hasSpd, e.rmcSpd = s.Speed*knot, true, true
		}
		if fields[8] != "" {
			e.course, e.hasCrs = s.Course, true
		}
		if d := s.Date; d.Valid {
			if day, ok := civilDate(rmcYear(d.YY), d.MM, d.DD); ok && d.YY >= 0 {
				e.rmcDay = day
			}
		}
	case gonmea.GLL:
		if !validPos(s.Latitude, s.Longitude) {
			return false
		}
		e.lat, e.lon, e.pos, e.affirmed = s.Latitude, s.Longitude, true, true
	case gonmea.GNS:
		if !validPos(s.Latitude, s.Longitude) {
			return false
		}
		e.lat, e.lon, e.pos, e.affirmed = s.Latitude, s.Longitude, true, true
		if fields[9] != "" {
			e.alt, e.hasAlt = s.Altitude, true
		}
		if e.qual == 0 {
			e.qual = qualityOfMode(strings.TrimLeft(fields[6], "N"))
		}
		if fields[8] != "" && e.hdop == 0 {
			e.hdop = s.HDOP
		}
		if fields[7] != "" && e.sats == 0 {
			e.sats = int(s.SVs)
		}
	case gonmea.ZDA:
		if day, ok := civilDate(int(s.Year), int(s.Month), int(s.Day)); ok {
			e.zdaDay = day
		}
	case gonmea.GSA:
		if s.HDOP > 0 {
			e.gsaDOP = s.HDOP
		}
		if s.FixType != gonmea.FixNone {
			e.gsaSats += len(s.SV)
			e.affirmed = true
		}
	case gonmea.VTG:
		if !e.rmcSpd {
			if fields[5] != "" { // knots, as gpsd
				e.speed, e.hasSpd = s.GroundSpeedKnots*knot, true
			} else if fields[7] != "" {
				e.speed, e.hasSpd = s.GroundSpeedKPH/3.6, true
			}
			if fields[1] != "" {
				e.course, e.hasCrs = s.TrueTrack, true
			}
		}
	}
	return true
}

// End closes the open epoch, as when the line has gone quiet, and returns
// its fix if it held a valid one.
func (t *Tracker) End() (Fix, bool) {
	if !t.open {
		return Fix{}, false
	}
	return t.close()
}

// close ends the open epoch.
func (t *Tracker) close() (Fix, bool) {
	e := t.cur
	t.open, t.cur = false, epoch{}
	if !e.timed {
		return Fix{}, false // untimed sentences only: nothing to place
	}
	t.Stats.Epochs++
	t.closed, t.hasShut = e.tod, true
	// The epoch's date: its own RMC (with a fix), its ZDA, or the last
	// receiver date carried over.
	var (
		at     time.Time
		src    = DateNone
		rolled bool
	)
	switch {
	case !e.rmcDay.IsZero():
		at, src = e.rmcDay.Add(e.tod), DateRMC
	case !e.zdaDay.IsZero():
		at, src = e.zdaDay.Add(e.tod), DateZDA
	case t.hasRef:
		at, src, rolled = t.ref.carry(e.tod, e.at), DateCarried, t.ref.rolled
	}
	if src != DateNone {
		if src != DateCarried {
			at, rolled = unroll(at, t.floor)
		}
		t.ref, t.hasRef = dateRef{instant: at, at: e.at, rolled: rolled}, true
	}
	if e.weakNoFix && !e.affirmed {
		e.noFix = true
	}
	if e.noFix || !e.pos {
		return Fix{}, false
	}
	if src != DateNone {
		if !t.last.IsZero() && !at.After(t.last) {
			t.Stats.Backwards++
			return Fix{}, false
		}
		t.last = at
	} else {
		t.Stats.Undated++
	}
	if rolled {
		t.Stats.Rollovers++
	}
	t.Stats.Fixes++
	f := Fix{
		GPSFix: wire.GPSFix{Asset: t.asset, Lat: e.lat, Lon: e.lon, AltM: e.alt, Quality: e.qual, HDOP: e.hdop,
			Sats: e.sats, SpeedMS: e.speed, CourseDeg: e.course, FixTime: at},
		TimeOfDay: e.tod, Date: src, Rollover: rolled,
		HasAlt: e.hasAlt, HasSpeed: e.hasSpd, HasCourse: e.hasCrs,
	}
	if f.HDOP == 0 {
		f.HDOP = e.gsaDOP
	}
	if f.Sats == 0 {
		f.Sats = e.gsaSats
	}
	if f.Quality == 0 {
		f.Quality = 1
	}
	return f, true
}

func timeOfDay(t gonmea.Time) time.Duration {
	return time.Duration(t.Hour)*time.Hour + time.Duration(t.Minute)*time.Minute +
		time.Duration(t.Second)*time.Second + time.Duration(t.Millisecond)*time.Millisecond
}

func validPos(lat, lon float64) bool {
	return lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180 && !(lat == 0 && lon == 0)
}

// isZero reports whether a numeric field is present and zero ("00").
func isZero(f string) bool {
	if f == "" {
		return false
	}
	n, err := strconv.Atoi(f)
	return err == nil && n == 0
}

func qualityOfMode(mode string) int {
	switch mode[:min(len(mode), 1)] {
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

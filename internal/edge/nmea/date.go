package nmea

import "time"

// DateSource says where a fix's date came from. The agent's clock is never
// one: a fix has the receiver's date or none.
type DateSource uint8

// Date sources, from none to the epoch's own sentences.
const (
	DateNone    DateSource = iota // the receiver has sent no date yet: FixTime is zero
	DateCarried                   // an earlier epoch's receiver date, carried over the receiver's time of day
	DateZDA                       // the epoch's own ZDA
	DateRMC                       // the epoch's own RMC
)

var dateSourceNames = [...]string{DateNone: "none", DateCarried: "carried", DateZDA: "zda", DateRMC: "rmc"}

func (d DateSource) String() string {
	if int(d) < len(dateSourceNames) {
		return dateSourceNames[d]
	}
	return "date_source(?)"
}

// Rollover is the GPS week-number period: a receiver that counts weeks in
// 10 bits reports dates this far back once its firmware's period has passed
// (1999-08-22, 2019-04-07, 2038-11-21, ...).
const Rollover = 1024 * 7 * 24 * time.Hour

// DefaultDateFloor is the earliest date the agent accepts from a receiver as
// it is: an earlier date is a week-number rollover and moves forward by 1024
// weeks (as often as needed). Dates from 2025 to late 2044 are taken as sent.
var DefaultDateFloor = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// civilDate returns UTC midnight of y-m-d, or false when the fields are not a
// real date (the receivers' garbage includes day 0, month 13, year -1).
func civilDate(y, m, d int) (time.Time, bool) {
	if y < 1980 || y > 2200 || m < 1 || m > 12 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d { // 31 June
		return time.Time{}, false
	}
	return t, true
}

// rmcYear puts a two-digit RMC year in 1980-2079 (GPS time began in 1980).
func rmcYear(yy int) int {
	if yy >= 80 {
		return 1900 + yy
	}
	return 2000 + yy
}

// unroll moves a receiver's instant forward by whole rollover periods until
// it is not before floor, and reports whether it moved.
func unroll(t, floor time.Time) (time.Time, bool) {
	moved := false
	for i := 0; i < 8 && t.Before(floor); i++ {
		t, moved = t.Add(Rollover), true
	}
	return t, moved
}

// dateRef is the newest receiver date: the instant of a dated epoch, the
// agent's clock when its first sentence arrived (zero when not known), and
// whether the receiver's date was moved over the floor.
type dateRef struct {
	instant, at time.Time
	rolled      bool
}

// carry dates a time of day from the reference: the instant with that time
// of day nearest to where the reference has moved by at. The agent's clock
// only measures the time since the reference; the date is the receiver's.
func (r dateRef) carry(tod time.Duration, at time.Time) time.Time {
	target := r.instant
	if !at.IsZero() && !r.at.IsZero() {
		target = target.Add(at.Sub(r.at))
	}
	t := target.Truncate(day).Add(tod)
	switch d := t.Sub(target); {
	case d > 12*time.Hour:
		t = t.Add(-day)
	case d < -12*time.Hour:
		t = t.Add(day)
	}
	return t
}

package detect

import "time"

// instant is a time.Time without its location and monotonic reading: the
// same instant in 16 bytes and no pointer, so per-GPU state that keeps
// times in instants is noscan (the GC does not mark through it). The zero
// instant is the zero time, so IsZero means what time.Time's does.
type instant struct {
	sec  int64 // seconds since January 1, year 1 UTC, time.Time's own origin
	nsec int32
}

// unixToInternal is the Unix time of January 1, year 1 UTC, negated.
const unixToInternal int64 = (1969*365 + 1969/4 - 1969/100 + 1969/400) * 24 * 60 * 60

func instantOf(t time.Time) instant {
	return instant{sec: t.Unix() + unixToInternal, nsec: int32(t.Nanosecond())}
}

// IsZero reports whether i is the zero time.
func (i instant) IsZero() bool { return i == instant{} }

// Time is i as a time.Time in UTC.
func (i instant) Time() time.Time {
	return time.Unix(i.sec-unixToInternal, int64(i.nsec)).UTC()
}

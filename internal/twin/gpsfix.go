package twin

import (
	"time"

	"twinchain/internal/wire"
)

// MaxFixLead is how far a GPS fix may be dated after the message that
// carries it. A fix is never newer than the message; one that claims to be
// is a clock anomaly (a receiver, or an agent, with a wrong date), not a
// position: kept, it would hide every correct fix after it.
const MaxFixLead = 2 * time.Minute

// FixAhead reports whether fix is dated more than MaxFixLead after both
// read (its message's reading time, the agent's clock) and received (when
// the service received it). Both: a simulated fleet runs its clock ahead of
// the service's and dates its fixes by it, which is no anomaly; an agent
// whose clock is behind carries a correct fix ahead of its message. A fix
// without a date (zero FixTime) is never ahead.
func FixAhead(fix *wire.GPSFix, read, received time.Time) bool {
	return !fix.FixTime.IsZero() && fix.FixTime.Sub(read) > MaxFixLead && fix.FixTime.Sub(received) > MaxFixLead
}

// FixOlder reports whether fix, carried by a message read and received at
// those times, is older than kept, the fix a twin holds, so it must not
// replace it. A fix without a date is taken in arrival order; a kept fix
// dated ahead of this message (kept before FixAhead was applied) never
// holds a newer one back.
func FixOlder(fix, kept *wire.GPSFix, read, received time.Time) bool {
	if kept == nil || fix.FixTime.IsZero() || kept.FixTime.IsZero() || FixAhead(kept, read, received) {
		return false
	}
	return fix.FixTime.Before(kept.FixTime)
}

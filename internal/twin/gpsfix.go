package twin

import (
	"time"

	"twinchain/internal/wire"
)

// MaxFixLead is how far a GPS fix may be dated after the moment the service
// received it. A fix is never newer than its arrival; one that claims to be
// is a clock anomaly (a receiver or an agent with a wrong date), not a
// position: kept, it would hide every correct fix after it.
const MaxFixLead = 2 * time.Minute

// FixAhead reports whether fix is dated more than MaxFixLead after received.
// A fix without a date (zero FixTime) never is.
func FixAhead(fix *wire.GPSFix, received time.Time) bool {
	return !fix.FixTime.IsZero() && fix.FixTime.Sub(received) > MaxFixLead
}

// FixOlder reports whether fix is older than kept, the fix a twin holds, so
// it must not replace it. A fix without a date is taken in arrival order;
// a kept fix dated ahead of received (kept before FixAhead was applied)
// never holds a newer one back.
func FixOlder(fix, kept *wire.GPSFix, received time.Time) bool {
	if kept == nil || fix.FixTime.IsZero() || kept.FixTime.IsZero() || FixAhead(kept, received) {
		return false
	}
	return fix.FixTime.Before(kept.FixTime)
}

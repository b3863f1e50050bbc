package detect

import (
	"fmt"
	"time"

	"twinchain/internal/twin"
)

// TypeGPSClockAnomaly: a GPS fix dated more than twin.MaxFixLead after
// both its message's reading time and its arrival (a receiver, or an
// agent, with a wrong date). Its
// position is used neither by the twin nor by the movement and clone
// detectors: kept, a fix from the future hides every correct one after it.
const TypeGPSClockAnomaly Type = "gps_clock_anomaly"

// gpsClock reports a GPS fix dated ahead of the time the service received
// it. One open alert per asset takes the repeats.
func gpsClock(m *Message) (Finding, bool) {
	f := m.GPS
	if m.Recorded.IsZero() || !twin.FixAhead(f, m.Ref.Time, m.Recorded) {
		return Finding{}, false
	}
	asset := f.Asset
	if asset == "" {
		asset = m.Ref.Gateway
	}
	ahead := f.FixTime.Sub(m.Recorded).Round(time.Second)
	return Finding{
		Type: TypeGPSClockAnomaly, Asset: asset, Severity: Warning, Time: m.Recorded,
		Summary: fmt.Sprintf("%s: gateway %s sent a GPS fix dated %s ahead of its arrival; position not used (a wrong receiver or agent clock)",
			asset, m.Ref.Gateway, ahead),
		Evidence: Evidence{Messages: ref(m), Values: values("fix_time", f.FixTime.Format(time.RFC3339Nano),
			"received", m.Recorded.Format(time.RFC3339Nano), "ahead", ahead.String(), "position", fmtPos(f.Lat, f.Lon))},
	}, true
}

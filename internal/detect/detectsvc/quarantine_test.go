package detectsvc

import (
	"testing"
	"time"
	"twinchain/internal/ingest"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/testsvc"
	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

// TestGatewayQuarantined: the policy lists geofence_exit as a trigger; a
// gateway carried out of its site's fence is quarantined like any asset.
func TestGatewayQuarantined(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 50 * time.Millisecond
	cfg.Detect.Sites = map[string]detect.SiteConfig{"s1": {Geofence: [][]float64{{52.495, 13.392}, {52.495, 13.408}, {52.505, 13.408}, {52.505, 13.392}}}}
	cfg.Alerts.Quarantine = alert.QuarantinePolicy{Enabled: true, MinSeverity: detect.Critical, Types: []detect.Type{detect.TypeGeofenceExit}}
	r := newRig(t, cfg)
	now := time.Now().UTC().Add(-time.Hour)
	for i := range 8 {
		tm := now.Add(time.Duration(i) * 10 * time.Second)
		lon := 13.40
		if i >= 2 {
			lon = 13.42 + float64(i)*0.001 // east, out of the fence, and on
		}
		data, err := wire.Seal(r.key, "gw-a", uint64(i+1), tm, wire.KindGPS, wire.GPSFix{Asset: "gw-a", Lat: 52.5, Lon: lon, Quality: 1, HDOP: 1, Sats: 9, FixTime: tm})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := r.in.Submit(ingest.Source{}, wire.Topic("gw-a", wire.KindGPS), data); err != nil || !out.Accepted() {
			t.Fatalf("submit %d: %v %v", i, out.Err, err)
		}
	}
	items := r.waitAlerts("geofence_exit on gw-a with a response", func(a []alert.Alert) bool {
		for _, x := range a {
			if x.Type == detect.TypeGeofenceExit && x.Response != "" {
				return true
			}
		}
		return false
	})
	for _, a := range items {
		if a.Type == detect.TypeGeofenceExit && (a.Asset != "gw-a" || a.Response != "quarantined") {
			t.Errorf("geofence_exit on %s response %q, want gw-a quarantined", a.Asset, a.Response)
		}
	}
	testsvc.Eventually(t, 10*time.Second, "gw-a's custody quarantined", func() bool {
		tw, err := r.store.Asset("gw-a")
		return err == nil && tw.Custody.Status == twin.StatusQuarantined
	})
}

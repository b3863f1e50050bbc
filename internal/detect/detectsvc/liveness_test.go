package detectsvc

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
	"twinchain/internal/ingest"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alert"
	"twinchain/internal/registry"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// TestLivenessPerGateway: eight gateways report every 10 s; one's clock is
// 10 minutes fast. Liveness is judged per gateway on receive time, so the
// fast clock makes no other gateway look silent; a gateway that does go
// quiet is reported, alone. The service clock is a fake one shared by the
// ingest (receive times) and the engine.
func TestLivenessPerGateway(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.Poll = 20 * time.Millisecond
	cfg.Detect.Gateways.MaxClockSkew = 0 // this test is about liveness only
	var clock atomic.Int64
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	clock.Store(base.UnixNano())
	r := &rig{t: t, dir: t.TempDir(), now: func() time.Time { return time.Unix(0, clock.Load()).UTC() }}
	seed := sha256.Sum256([]byte("gw-a"))
	r.key = ed25519.NewKeyFromSeed(seed[:]) // the same key for every gateway
	var gws []registry.Gateway
	for i := range 8 {
		gws = append(gws, registry.Gateway{ID: fmt.Sprintf("gw-%c", 'a'+i), PublicKey: r.key.Public().(ed25519.PublicKey), Site: "s1"})
	}
	r.reg = registry.New(gws...)
	r.open(cfg)
	t.Cleanup(r.close)
	seq := uint64(0)
	round := func(k int, quiet string) {
		now := base.Add(time.Duration(k) * 10 * time.Second)
		clock.Store(now.UnixNano())
		seq++
		var pos uint64
		for _, g := range gws {
			if g.ID == quiet {
				continue
			}
			at := now
			if g.ID == "gw-h" {
				at = now.Add(10 * time.Minute)
			}
			data, err := wire.Seal(r.key, g.ID, seq, at, wire.KindStatus, wire.Status{State: wire.StateOnline})
			if err != nil {
				t.Fatal(err)
			}
			out, err := r.in.Submit(ingest.Source{}, wire.Topic(g.ID, wire.KindStatus), data)
			if err != nil || !out.Accepted() {
				t.Fatalf("submit %s %d: %v %v", g.ID, seq, out.Err, err)
			}
			pos = out.Pos
		}
		testsvc.Eventually(t, 10*time.Second, "the engine past round "+fmt.Sprint(k), func() bool {
			return r.svc.Engine().Stats.MessagePos.Load() >= pos
		})
	}
	missed := func() []string {
		items, _, err := r.svc.Alerts().List(alert.Filter{Type: detect.TypeHeartbeatMissed}, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range items {
			out = append(out, a.Asset)
		}
		return out
	}
	for k := range 18 { // 3 minutes: longer than the 2 min heartbeat limit
		round(k, "")
	}
	if m := missed(); len(m) != 0 {
		t.Fatalf("a gateway 10 min fast raised heartbeat_missed for %q, want none", m)
	}
	for k := 18; k < 36; k++ {
		round(k, "gw-b")
	}
	var m []string
	testsvc.Eventually(t, 10*time.Second, "heartbeat_missed for gw-b", func() bool { m = missed(); return len(m) > 0 })
	if len(m) != 1 || m[0] != "gw-b" {
		t.Errorf("heartbeat_missed for %q, want only the silent gw-b", m)
	}
}

package fleet

import (
	"context"
	"fmt"
	"net/http"

	"twinchain/internal/edge/enroll"
)

// enrollTTL is the lifetime of each gateway's token: it is redeemed at once.
const enrollTTL = 60 // seconds

// Enroll enrolls every gateway of the fleet with the twin-service at api
// (e.g. http://127.0.0.1:8080), the way a real agent is enrolled: for each,
// bearer (an API token whose role may manage gateways: asset_manager,
// security or admin) asks for a one-time token bound to the gateway, its
// site and its assets (POST /api/v1/enroll/tokens), and the gateway redeems
// it with a request signed by its own key (POST /api/v1/enroll), as
// `edge-agent enroll` does. Enrolling again with the same key is accepted,
// so every start may enroll the whole fleet. The gateways then connect with
// connect passwords signed by those keys.
func (f *Fleet) Enroll(ctx context.Context, hc *http.Client, api, bearer string) error {
	for _, g := range f.Gateways {
		tok, err := enroll.IssueToken(ctx, hc, api, bearer, enroll.TokenRequest{
			Site: g.Site.ID, GatewayID: g.ID, Assets: g.Assets(), TTLSeconds: enrollTTL})
		if err != nil {
			return fmt.Errorf("enroll %s: token: %w", g.ID, err)
		}
		hostname := ""
		if g.Host != nil {
			hostname = g.Host.Info.Hostname
		}
		if _, err := enroll.Enroll(ctx, hc, api, enroll.NewRequest(g.Key, tok.Token, g.ID, hostname)); err != nil {
			return fmt.Errorf("enroll %s: %w", g.ID, err)
		}
	}
	return nil
}

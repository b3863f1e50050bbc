package fleet

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"twinchain/internal/edge/enroll"
)

// enrollTTL is the lifetime of each gateway's token: it is redeemed at once.
const enrollTTL = 60 // seconds

// Enroll enrolls every gateway of the fleet that twin-service at api (e.g.
// http://127.0.0.1:8080) does not already hold with its key, the way a real
// agent is enrolled, once: bearer (an API token whose role may manage
// gateways: asset_manager, security or admin) asks for a one-time token
// bound to the gateway, its site and its assets (POST
// /api/v1/enroll/tokens), and the gateway redeems it with a request signed
// by its own key (POST /api/v1/enroll), as `edge-agent enroll` does. The
// gateways then connect with connect passwords signed by those keys. It
// returns how many it enrolled.
func (f *Fleet) Enroll(ctx context.Context, hc *http.Client, api, bearer string) (int, error) {
	have, err := Registered(ctx, hc, api, bearer)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range f.Gateways {
		if have[g.ID].Equal(g.PublicKey()) {
			continue
		}
		tok, err := enroll.IssueToken(ctx, hc, api, bearer, enroll.TokenRequest{
			Site: g.Site.ID, GatewayID: g.ID, Assets: g.Assets(), TTLSeconds: enrollTTL})
		if err != nil {
			return n, fmt.Errorf("enroll %s: token: %w", g.ID, err)
		}
		hostname := ""
		if g.Host != nil {
			hostname = g.Host.Info.Hostname
		}
		if _, err := enroll.Enroll(ctx, hc, api, enroll.NewRequest(g.Key, tok.Token, g.ID, hostname)); err != nil {
			return n, fmt.Errorf("enroll %s: %w", g.ID, err)
		}
		n++
	}
	return n, nil
}

// Registered is every gateway's key that twin-service at api holds (GET
// /api/v1/gateways, every page), read with the API token bearer.
func Registered(ctx context.Context, hc *http.Client, api, bearer string) (map[string]ed25519.PublicKey, error) {
	out := map[string]ed25519.PublicKey{}
	for cursor := ""; ; {
		u := strings.TrimRight(api, "/") + "/api/v1/gateways?limit=1000&cursor=" + url.QueryEscape(cursor)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("list gateways: %w", err)
		}
		var page struct {
			Items []struct {
				ID        string            `json:"id"`
				PublicKey ed25519.PublicKey `json:"public_key"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			return nil, fmt.Errorf("list gateways: %s %v", resp.Status, err)
		}
		for _, g := range page.Items {
			out[g.ID] = g.PublicKey
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

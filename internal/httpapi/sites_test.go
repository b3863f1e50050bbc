package httpapi

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"twinchain/internal/httpapi/auth"
)

// TestSites: GET /sites lists the configured sites by id with their
// geofences, to any signed-in role and to no one else.
func TestSites(t *testing.T) {
	a, err := auth.New(auth.Config{Tokens: []auth.TokenConfig{
		{Name: "view", Role: auth.Viewer, SHA256: auth.HashToken("tc_view")},
	}}, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fence := [][]float64{{52.516, 13.399}, {52.516, 13.411}, {52.524, 13.411}, {52.524, 13.399}}
	s, err := New(Options{
		Auth:  NewAuth(a, false, slog.New(slog.NewTextHandler(io.Discard, nil))),
		Sites: []Site{{ID: "s2"}, {ID: "s1", Polygon: fence}},
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) (int, []byte) {
		req := httptest.NewRequest("GET", "/api/v1/sites", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := s.App().Test(req, 5000)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := get(""); code != http.StatusUnauthorized {
		t.Errorf("GET /sites signed out = %d %s, want 401", code, body)
	}
	code, body := get("tc_view")
	var got struct {
		Items []Site `json:"items"`
	}
	if err := json.Unmarshal(body, &got); code != http.StatusOK || err != nil {
		t.Fatalf("GET /sites as viewer = %d %s (%v), want 200", code, body, err)
	}
	if len(got.Items) != 2 || got.Items[0].ID != "s1" || got.Items[1].ID != "s2" {
		t.Fatalf("GET /sites = %s, want s1 then s2", body)
	}
	if len(got.Items[0].Polygon) != 4 || got.Items[0].Polygon[2][0] != 52.524 || got.Items[0].Polygon[2][1] != 13.411 {
		t.Errorf("GET /sites s1 polygon = %v, want %v", got.Items[0].Polygon, fence)
	}
	if got.Items[1].Polygon == nil || len(got.Items[1].Polygon) != 0 {
		t.Errorf("GET /sites s2 polygon = %v, want []", got.Items[1].Polygon)
	}
}

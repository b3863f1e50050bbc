package httpapi

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"

	"twinchain/internal/ingest"
	"twinchain/internal/registry"
	"twinchain/internal/wire"
)

// TestGatewayAgentFigures: the agent's status figures appear, by their JSON
// names, per gateway in /stats/ingest and in the stream of /gateways, next
// to the existing stream fields.
func TestGatewayAgentFigures(t *testing.T) {
	e := newEnv(t, Options{})
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	p, err := wire.Seal(gwKey("gw-1"), "gw-1", 7, at, wire.KindStatus,
		wire.Status{State: wire.StateOnline, AgentVersion: "agent 1.2", QueueDepth: 42, Dropped: 3, DroppedSeqs: []uint64{4, 6}})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.in.Submit(ingest.Source{}, wire.Topic("gw-1", wire.KindStatus), p); err != nil || !out.Accepted() {
		t.Fatalf("Submit: %v %v", err, out.Err)
	}
	want := map[string]any{
		"gateway": "gw-1", "last_seq": 7.0, "state": "online", // existing fields stay
		"agent_version": "agent 1.2", "queue_depth": 42.0, "dropped": 3.0, "status_time": at.Format(time.RFC3339Nano),
	}
	checkStream := func(where string, got map[string]any) {
		t.Helper()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v (all %v)", where, k, got[k], v, got)
			}
		}
		seqs, _ := got["dropped_seqs"].([]any)
		if len(seqs) != 2 || seqs[0] != 4.0 || seqs[1] != 6.0 {
			t.Errorf("%s: dropped_seqs = %v, want [4 6]", where, got["dropped_seqs"])
		}
	}

	var stats struct {
		Gateways []map[string]any `json:"gateways"`
	}
	if code := e.call(t, "GET", "/api/v1/stats/ingest", "", &stats); code != 200 || len(stats.Gateways) != 1 {
		t.Fatalf("GET /stats/ingest = %d with %d gateways, want 200 and 1", code, len(stats.Gateways))
	}
	checkStream("/stats/ingest", stats.Gateways[0])

	var list struct {
		Items []struct {
			ID     string         `json:"id"`
			Stream map[string]any `json:"stream"`
		} `json:"items"`
	}
	if code := e.call(t, "GET", "/api/v1/gateways", "", &list); code != 200 || len(list.Items) != 1 || list.Items[0].ID != "gw-1" {
		t.Fatalf("GET /gateways = %d %+v, want 200 with gw-1", code, list.Items)
	}
	checkStream("/gateways", list.Items[0].Stream)
}

// TestGatewaysPaging: /gateways honours limit and cursor like the other
// lists, in id order, each gateway once.
func TestGatewaysPaging(t *testing.T) {
	e := newEnv(t, Options{})
	for i := 2; i <= 5; i++ {
		id := fmt.Sprintf("gw-%d", i)
		if err := e.reg.Put(registry.Gateway{ID: id, PublicKey: gwKey(id).Public().(ed25519.PublicKey), Site: "s1", Assets: []string{}}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	cursor := ""
	for range 5 {
		var page Page[GatewayView]
		if code := e.call(t, "GET", "/api/v1/gateways?limit=2&cursor="+cursor, "", &page); code != 200 || len(page.Items) > 2 {
			t.Fatalf("GET /gateways?limit=2 = %d with %d items, want 200 and at most 2", code, len(page.Items))
		}
		for _, g := range page.Items {
			ids = append(ids, g.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if want := []string{"gw-1", "gw-2", "gw-3", "gw-4", "gw-5"}; !slices.Equal(ids, want) {
		t.Errorf("gateways in pages of 2 = %v, want %v", ids, want)
	}
	if code := e.call(t, "GET", "/api/v1/gateways?cursor=%25%25", "", nil); code != 400 {
		t.Errorf("GET /gateways with a bad cursor = %d, want 400", code)
	}
}

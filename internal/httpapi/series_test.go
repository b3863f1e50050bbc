package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/telemetry/embeddedstore"
	"twinchain/internal/twinstore"
)

// seriesRig is the API over a real embedded telemetry store holding one
// GPU's temp_c, one point every 10 s for an hour: value i%60 at i*10s.
func seriesRig(t testing.TB, assets AssetStore) (*Server, time.Time) {
	t.Helper()
	ts, err := embeddedstore.Open(t.TempDir(), embeddedstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var pts []telemetry.Point
	for i := range 360 {
		pts = append(pts, telemetry.Point{Measurement: "gpu", Asset: "srv-s1-001.gpu0", Fields: []telemetry.Field{{Name: "temp_c", Value: float64(i % 60)}}, Time: base.Add(time.Duration(i) * 10 * time.Second)})
	}
	if err := ts.Write(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	opts := Options{Telemetry: ts, Now: func() time.Time { return base.Add(time.Hour) }}
	if assets != nil {
		opts.Assets = assets
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, base
}

func getBody(t *testing.T, s *Server, target string) (int, []byte) {
	t.Helper()
	resp, err := s.App().Test(httptest.NewRequest("GET", target, nil), -1)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestSeries(t *testing.T) {
	s, base := seriesRig(t, nil)
	v := url.Values{"metric": {"temp_c"}, "from": {base.Format(time.RFC3339)}, "to": {base.Add(time.Hour).Format(time.RFC3339)}, "step": {"10m"}, "agg": {"max"}}
	code, body := getBody(t, s, "/api/v1/assets/srv-s1-001.gpu0/series?"+v.Encode())
	if code != 200 {
		t.Fatalf("GET series = %d %s, want 200", code, body)
	}
	var got Series
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	// Each 10-minute window holds 60 points with values 0..59.
	if len(got.Points) != 6 || got.StepSeconds != 600 || got.Agg != telemetry.AggMax || got.Measurement != "gpu" {
		t.Fatalf("series = %+v, want 6 windows of 600 s, max, gpu", got)
	}
	for i, p := range got.Points {
		if !p.T.Equal(base.Add(time.Duration(i)*10*time.Minute)) || p.V != 59 {
			t.Errorf("window %d = %v %v, want %v 59", i, p.T, p.V, base.Add(time.Duration(i)*10*time.Minute))
		}
	}

	// measurement.field, the default range (the last hour before now) and
	// the default step (about 300 windows: 30 s).
	code, body = getBody(t, s, "/api/v1/assets/srv-s1-001.gpu0/series?metric=gpu.temp_c&agg=mean")
	if err := json.Unmarshal(body, &got); code != 200 || err != nil {
		t.Fatalf("GET series (defaults) = %d %s", code, body)
	}
	// The first 30 s window holds 0, 1, 2.
	if got.StepSeconds != 30 || len(got.Points) != 120 || math.Abs(got.Points[0].V-1) > 1e-9 {
		t.Errorf("defaults: step %v s, %d windows; want 30 s, 120 windows, the first with mean 1", got.StepSeconds, len(got.Points))
	} else if !got.Points[0].T.Equal(base) {
		t.Errorf("defaults: first window at %s, want %s", got.Points[0].T, base)
	}
}

func TestSeriesBadRequests(t *testing.T) {
	s, _ := seriesRig(t, nil)
	for _, q := range []string{
		"",
		"metric=Temp",
		"metric=temp_c&from=yesterday",
		"metric=temp_c&to=12:00",
		"metric=temp_c&step=0.5s",
		"metric=temp_c&step=soon",
		"metric=temp_c&agg=median",
		"metric=temp_c&from=2026-11-25T12:00:00Z&to=2026-11-25T11:00:00Z",
		"metric=temp_c&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&step=1s",
	} {
		code, body := getBody(t, s, "/api/v1/assets/srv-s1-001.gpu0/series?"+q)
		var e ErrorBody
		if json.Unmarshal(body, &e); code != 400 || e.Error.Code != CodeBadRequest {
			t.Errorf("GET series?%s = %d %s, want 400 bad_request", q, code, body)
		}
	}
}

func TestSeriesUnknownAssetAndUnconfigured(t *testing.T) {
	st, err := twinstore.Open(filepath.Join(t.TempDir(), "twins.db"), twinstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, _ := seriesRig(t, st)
	for _, path := range []string{"/api/v1/assets/srv-none/series?metric=temp_c", "/api/v1/assets/srv-none/latest"} {
		if code, body := getBody(t, s, path); code != 404 {
			t.Errorf("GET %s = %d %s, want 404", path, code, body)
		}
	}
	bare, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/assets/x/series?metric=temp_c", "/api/v1/assets/x/latest"} {
		code, body := getBody(t, bare, path)
		var e ErrorBody
		if json.Unmarshal(body, &e); code != 503 || e.Error.Code != CodeUnavailable {
			t.Errorf("GET %s without telemetry = %d %s, want 503 unavailable", path, code, body)
		}
	}
}

func TestLatest(t *testing.T) {
	s, base := seriesRig(t, nil)
	code, body := getBody(t, s, "/api/v1/assets/srv-s1-001.gpu0/latest")
	var page struct {
		Items []struct {
			Measurement, Metric string
			T                   time.Time
			V                   float64
		}
	}
	if err := json.Unmarshal(body, &page); code != 200 || err != nil {
		t.Fatalf("GET latest = %d %s", code, body)
	}
	if len(page.Items) != 1 || page.Items[0].Metric != "temp_c" || page.Items[0].V != 59 || !page.Items[0].T.Equal(base.Add(3590*time.Second)) {
		t.Errorf("latest = %+v, want temp_c 59 at %s", page.Items, base.Add(3590*time.Second))
	}
}

func TestChartStep(t *testing.T) {
	for _, tc := range []struct{ span, want time.Duration }{
		{time.Minute, time.Second},
		{time.Hour, 30 * time.Second},
		{24 * time.Hour, 5 * time.Minute},
		{30 * 24 * time.Hour, 3 * time.Hour},
		{1000 * 24 * time.Hour, 7 * 24 * time.Hour},
	} {
		if got := ChartStep(tc.span); got != tc.want {
			t.Errorf("ChartStep(%s) = %s, want %s", tc.span, got, tc.want)
		}
	}
}

// FuzzSeriesQuery sends arbitrary query strings to the chart route: it must
// answer 200 or 400, never fail, and a 200 holds whole, ordered windows.
func FuzzSeriesQuery(f *testing.F) {
	for _, seed := range []string{
		"metric=temp_c",
		"metric=gpu.temp_c&agg=max&step=10m&from=2026-11-25T12:00:00Z&to=2026-11-25T13:00:00Z",
		"metric=temp_c&step=1s&from=2026-11-25T12:00:00.5Z&to=2026-11-25T12:00:09Z",
		"metric=x.y.z&step=-5m",
		"metric=temp_c&from=2026-11-25T13:00:00Z&to=2026-11-25T12:00:00Z",
		"metric=%00&agg=%ff",
	} {
		f.Add(seed)
	}
	s, _ := seriesRig(f, nil)
	f.Fuzz(func(t *testing.T, rawQuery string) {
		req := httptest.NewRequest("GET", "/api/v1/assets/srv-s1-001.gpu0/series", nil)
		req.URL.RawQuery = rawQuery
		resp, err := s.App().Test(req, -1)
		if err != nil {
			t.Fatalf("GET series?%s: %v", rawQuery, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case 400:
			return
		case 200:
		default:
			t.Fatalf("GET series?%s = %d %s, want 200 or 400", rawQuery, resp.StatusCode, body)
		}
		var got Series
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("GET series?%s: body %s: %v", rawQuery, body, err)
		}
		step := time.Duration(got.StepSeconds * float64(time.Second))
		for i, p := range got.Points {
			if p.T.Before(got.From) || !p.T.Before(got.To) || !p.T.Equal(telemetry.WindowStart(p.T, step)) || i > 0 && !p.T.After(got.Points[i-1].T) {
				t.Fatalf("GET series?%s: window %d at %s outside [%s, %s), unaligned to %s or out of order", rawQuery, i, p.T, got.From, got.To, step)
			}
		}
	})
}

package telemetry

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	influx := Config{Backend: BackendInfluxDB, URL: "http://127.0.0.1:8086", Bucket: "twin/autogen"}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		{"default embedded", Config{}, ""},
		{"embedded with retention", Config{Retention: 720 * time.Hour}, ""},
		{"influx 1.8", influx, ""},
		{"influx 2.x", Config{Backend: BackendInfluxDB, URL: "https://influx:8086", Org: "acme", Bucket: "twin", Token: "t0k"}, ""},
		{"unknown backend", Config{Backend: "prometheus"}, "backend"},
		{"short retention", Config{Retention: time.Minute}, "retention"},
		{"negative retention", Config{Retention: -time.Hour}, "negative"},
		{"no url", Config{Backend: BackendInfluxDB, Bucket: "twin"}, "url"},
		{"bad scheme", Config{Backend: BackendInfluxDB, URL: "tcp://x:1", Bucket: "twin"}, "url"},
		{"no bucket", Config{Backend: BackendInfluxDB, URL: "http://x:1"}, "bucket"},
		{"two slashes", Config{Backend: BackendInfluxDB, URL: "http://x:1", Bucket: "a/b/c"}, "bucket"},
		{"tiny budget", Config{Backend: BackendInfluxDB, URL: "http://x:1", Bucket: "b", ReplayBudgetBytes: 1000}, "replay_budget_bytes"},
		{"huge batch", Config{Backend: BackendInfluxDB, URL: "http://x:1", Bucket: "b", BatchPoints: 1e6}, "batch_points"},
	} {
		err := tc.cfg.WithDefaults().Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Validate() = %v, want an error about %s", tc.name, err, tc.want)
		}
	}
}

func TestWindowStart(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		t    string
		step time.Duration
		want string
	}{
		{"2026-11-25T12:34:56.7Z", time.Minute, "2026-11-25T12:34:00Z"},
		{"2026-11-25T12:34:58Z", 7 * time.Second, "2026-11-25T12:34:56Z"}, // epoch-aligned (Unix seconds divisible by 7)
		{"2026-11-25T12:00:00Z", time.Hour, "2026-11-25T12:00:00Z"},
		{"2026-11-25T23:59:59Z", 24 * time.Hour, "2026-11-25T00:00:00Z"},
	} {
		if got := WindowStart(at(tc.t), tc.step); !got.Equal(at(tc.want)) {
			t.Errorf("WindowStart(%s, %s) = %s, want %s", tc.t, tc.step, got.Format(time.RFC3339Nano), tc.want)
		}
	}
	q := Query{From: at("2026-11-25T12:00:30Z"), To: at("2026-11-25T12:05:00Z"), Step: time.Minute}.Aligned()
	if !q.From.Equal(at("2026-11-25T12:00:00Z")) || !q.To.Equal(at("2026-11-25T12:05:00Z")) {
		t.Errorf("Aligned() = [%s, %s), want [12:00, 12:05)", q.From, q.To)
	}
}

func TestValidNames(t *testing.T) {
	for in, want := range map[string]bool{"temp_c": true, "gpu": true, "a1": true, "": false, "Temp": false, "1a": false, "temp-c": false, "temp c": false, strings.Repeat("a", 65): false} {
		if got := ValidName(in); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[string]bool{"srv-s1-001.gpu3": true, "gw_1:a": true, "": true, "a b": false, "a,b": false, "a=b": false, "a\"": false, "a\n": false, strings.Repeat("a", 129): false} {
		if got := ValidTagValue(in); got != want {
			t.Errorf("ValidTagValue(%q) = %v, want %v", in, got, want)
		}
	}
}

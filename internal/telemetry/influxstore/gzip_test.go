package influxstore

import "testing"

func TestUseGzip(t *testing.T) {
	for in, want := range map[string]bool{
		"http://127.0.0.1:8086":       false,
		"http://127.0.1.2:8086":       false,
		"http://localhost:8086":       false,
		"http://[::1]:8086":           false,
		"https://influx.example:8086": true,
		"http://10.0.0.5:8086":        true,
		"http://[2001:db8::1]:8086":   true,
		"http://localhost.example:80": true,
		"://not a url":                true,
	} {
		if got := useGzip(in); got != want {
			t.Errorf("useGzip(%q) = %v, want %v", in, got, want)
		}
	}
}

package testsvc

import "testing"

// TestInfluxdRestartKeepsData starts a real influxd, writes through the 1.x
// /write endpoint, restarts it on the same port and counts again.
func TestInfluxdRestartKeepsData(t *testing.T) {
	s := StartInfluxd(t, InfluxdOptions{})
	s.CreateDatabase(t, "probe")
	s.WriteLines(t, "probe", "m,asset=a1 v=1 1700000000000000000\nm,asset=a1 v=2 1700000001000000000\n")
	if n := s.Count(t, "probe", "SELECT count(v) FROM m"); n != 2 {
		t.Fatalf("count before restart = %d, want 2", n)
	}
	s.Restart(t)
	if n := s.Count(t, "probe", "SELECT count(v) FROM m"); n != 2 {
		t.Errorf("count after restart = %d, want 2", n)
	}
}

package testsvc

import (
	"testing"
	"time"
)

// Eventually calls cond until it returns true and fails t, naming what it
// waited for, when timeout passes first. It polls quickly at first and then
// every 100ms, so a cheap cond answers at once and a costly one (an API walk,
// a database query) does not load the machine. cond runs on the test's
// goroutine and may call t.Fatal.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

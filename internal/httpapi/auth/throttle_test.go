package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Wrong passwords for a name from one address never lock that name out
// from another address: on main, five of them made even the right password
// answer ErrThrottled, from anywhere, again and again.
func TestNoLockOutFromAnotherAddress(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuth(t, c, 100)
	const attacker, user = "198.51.100.7", "203.0.113.9"
	var throttled int
	for i := 0; i < 200; i++ {
		c.t = c.t.Add(100 * time.Millisecond)
		_, err := a.Login(attacker, "ada", fmt.Sprintf("guess %d", i))
		switch {
		case errors.Is(err, ErrThrottled):
			throttled++
		case !errors.Is(err, ErrBadCredentials):
			t.Fatalf("attempt %d: Login = %v, want ErrBadCredentials or ErrThrottled", i, err)
		}
	}
	if throttled < 150 {
		t.Errorf("attacker throttled %d times of 200, want most", throttled)
	}
	if _, err := a.Login(user, "ada", "correct horse"); err != nil {
		t.Errorf("right password from another address while the attack goes on = %v, want a session", err)
	}
	// The same holds for an IPv6 attacker: its whole /64 is one source.
	for i := 0; i < 10; i++ {
		_, _ = a.Login(fmt.Sprintf("2001:db8:1:2::%x", i+1), "vic", "guess")
	}
	if _, err := a.Login("2001:db8:1:2::ff", "vic", "guess"); !errors.Is(err, ErrThrottled) {
		t.Errorf("11th attempt from one /64 = %v, want ErrThrottled", err)
	}
	if _, err := a.Login("2001:db8:1:3::1", "vic", "viewer pass"); err != nil {
		t.Errorf("right password from another /64 = %v", err)
	}
}

// The wait doubles past the free attempts, is bounded, and the right
// password from the same address passes once the wait is over: never a
// permanent lock-out.
func TestThrottleBacksOffAndForgives(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuth(t, c, 100)
	for i := 0; i < freePerPair; i++ {
		if _, err := a.Login(src, "ada", "guess"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("free attempt %d = %v, want ErrBadCredentials", i+1, err)
		}
	}
	var waits []time.Duration
	for i := 0; i < 12; i++ {
		_, err := a.Login(src, "ada", "correct horse")
		var th *Throttled
		if !errors.As(err, &th) {
			t.Fatalf("attempt %d while waiting = %v, want *Throttled", i, err)
		}
		waits = append(waits, th.RetryAfter)
		c.t = c.t.Add(th.RetryAfter)
		if _, err := a.Login(src, "ada", "guess"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password after waiting %s = %v, want ErrBadCredentials (checked)", th.RetryAfter, err)
		}
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300}
	for i, w := range waits {
		if w != want[i]*time.Second {
			t.Errorf("wait %d = %s, want %s", i, w, want[i]*time.Second)
		}
	}
	c.t = c.t.Add(throttleMax)
	if _, err := a.Login(src, "ada", "correct horse"); err != nil {
		t.Fatalf("right password after the longest wait = %v, want a session", err)
	}
	// Success forgives: the next wrong password is checked, not throttled.
	if _, err := a.Login(src, "ada", "guess"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong password after a success = %v, want ErrBadCredentials", err)
	}
	// Silence forgives too.
	for i := 0; i < 10; i++ {
		_, _ = a.Login(src, "vic", "guess")
	}
	c.t = c.t.Add(throttleForget + time.Second)
	if _, err := a.Login(src, "vic", "viewer pass"); err != nil {
		t.Errorf("right password after %s of silence = %v", throttleForget, err)
	}
}

// Attempts count when they start: a burst of concurrent wrong passwords
// from one address gets at most the free attempts checked.
func TestConcurrentAttemptsCount(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuth(t, c, 100)
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Login(src, "ada", "guess")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ErrBadCredentials):
				got["checked"]++
			case errors.Is(err, ErrThrottled):
				got["throttled"]++
			case errors.Is(err, ErrBusy):
				got["busy"]++
			default:
				t.Errorf("Login = %v", err)
			}
		}()
	}
	wg.Wait()
	if got["checked"] > freePerPair || got["checked"]+got["throttled"]+got["busy"] != 100 {
		t.Errorf("100 concurrent wrong passwords from one address: %v, want at most %d checked", got, freePerPair)
	}
}

// One address is throttled across names, so it cannot try one password
// against every user name unchecked.
func TestSourceThrottledAcrossNames(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuth(t, c, 100)
	var checked int
	for i := 0; i < freePerSource+10; i++ {
		if _, err := a.Login(src, fmt.Sprintf("user%d", i), "password1"); errors.Is(err, ErrBadCredentials) {
			checked++
		}
	}
	if checked != freePerSource {
		t.Errorf("one address, %d names: %d checked, want %d", freePerSource+10, checked, freePerSource)
	}
}

// The gate lets slots checks run at once, queues a few for a bounded
// time, and refuses the rest at once; a known sign-in has a slot of its own.
func TestGateBounded(t *testing.T) {
	g := newGate(2, 20*time.Millisecond)
	var held []func()
	for i := 0; i < 2; i++ {
		rel, err := g.acquire(false)
		if err != nil {
			t.Fatalf("acquire %d of 2 = %v", i+1, err)
		}
		held = append(held, rel)
	}
	if _, err := g.acquire(false); !errors.Is(err, ErrBusy) {
		t.Errorf("third acquire with both slots held = %v, want ErrBusy after the wait", err)
	}
	// Fill the queue (4 per slot): the next is refused without waiting,
	// but a known sign-in takes the known slot.
	for i := 0; i < cap(g.waiting); i++ {
		g.waiting <- struct{}{}
	}
	if _, err := g.acquire(false); !errors.Is(err, ErrBusy) {
		t.Errorf("acquire with a full queue = %v, want ErrBusy", err)
	}
	rel, err := g.acquire(true)
	if err != nil {
		t.Fatalf("known acquire with every slot held and the queue full = %v, want the known slot", err)
	}
	if _, err := g.acquire(true); !errors.Is(err, ErrBusy) {
		t.Errorf("second known acquire with the known slot held = %v, want ErrBusy after the wait", err)
	}
	rel()
	for i := 0; i < cap(g.waiting); i++ {
		<-g.waiting
	}
	done := make(chan error)
	g.wait = time.Minute
	go func() {
		rel, err := g.acquire(false)
		if err == nil {
			rel()
		}
		done <- err
	}()
	held[0]()
	if err := <-done; err != nil {
		t.Errorf("acquire while a slot frees = %v, want nil", err)
	}
}

// A sign-in flood from many addresses (which the per-address throttle lets
// through) runs at most PasswordChecks bcrypt checks at once; the rest are
// refused with ErrBusy, and a right password signs in once it is over.
func TestFloodBounded(t *testing.T) {
	a, err := New(Config{
		Users:          []UserConfig{{Name: "ada", Role: Security, PasswordHash: hash(t, "correct horse")}},
		PasswordChecks: 1,
		PasswordWait:   time.Millisecond,
	}, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var busy, checked int
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Login(fmt.Sprintf("10.0.%d.%d", i/250, i%250), "ada", "guess")
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, ErrBusy) {
				busy++
			} else {
				checked++
			}
		}()
	}
	wg.Wait()
	if busy == 0 {
		t.Errorf("200 concurrent sign-ins with 1 check slot: none refused busy (%d checked)", checked)
	}
	if _, err := a.Login(src, "ada", "correct horse"); err != nil {
		t.Errorf("right password after the flood = %v", err)
	}
	// During a flood that holds every slot, the user who signed in from
	// this address before still gets a check (the known slot).
	release, err := a.gate.acquire(false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := a.Login("198.51.100.99", "ada", "correct horse"); !errors.Is(err, ErrBusy) {
		t.Errorf("sign-in from a new address with every slot held = %v, want ErrBusy", err)
	}
	if _, err := a.Login(src, "ada", "correct horse"); err != nil {
		t.Errorf("sign-in from a known address with every slot held = %v, want a session", err)
	}
}

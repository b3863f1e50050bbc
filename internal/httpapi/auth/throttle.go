package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrThrottled is a sign-in refused unchecked: its source, or its source
// and name, had too many wrong passwords lately. errors.As gives the
// *Throttled with the wait.
var ErrThrottled = errors.New("too many failed sign-ins")

// Throttled is a sign-in refused unchecked, with how long to wait.
type Throttled struct{ RetryAfter time.Duration }

func (t *Throttled) Error() string {
	return fmt.Sprintf("too many failed sign-ins from this address; try again in %s", t.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrThrottled) true.
func (t *Throttled) Is(target error) bool { return target == ErrThrottled }

// ErrBusy is a sign-in refused unchecked because every password check slot
// stayed taken while it waited: too many sign-ins at once.
var ErrBusy = errors.New("too many sign-ins at once; try again in a second")

// Sign-in throttling. Attempts are counted per source address (IPv6 by its
// /64) and per source and name, when they start (so that concurrent
// attempts count too), and forgiven when they succeed or after
// throttleForget without one. Past the free attempts each further one must
// wait twice as long as the one before, from throttleBase up to
// throttleMax. Nothing is keyed by the name alone: wrong passwords from one
// address never lock out the user signing in from another.
const (
	freePerPair    = 5
	freePerSource  = 20
	throttleBase   = time.Second
	throttleMax    = 5 * time.Minute
	throttleForget = 15 * time.Minute
	maxTracked     = 100000 // keys tracked at once; the oldest half is dropped when full
	maxKnown       = 10000  // address and name pairs remembered for the gate's known slot
)

type attempts struct {
	n    int       // attempts not forgiven
	next time.Time // no attempt before this
	last time.Time
}

type throttle struct {
	keys map[string]*attempts
}

func newThrottle() *throttle { return &throttle{keys: map[string]*attempts{}} }

// sourceKey is the throttling key of a client address: the address, or
// its /64 for IPv6 (one host usually holds the whole /64).
func sourceKey(source string) string {
	ip, err := netip.ParseAddr(source)
	if err != nil {
		return source
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// take counts an attempt from source for name at now, or says how long to
// wait when one of its keys must wait. The caller holds the
// Authenticator's lock.
func (t *throttle) take(source, name string, now time.Time) (wait time.Duration) {
	keys := [2]string{"s\x00" + source, "p\x00" + source + "\x00" + name}
	free := [2]int{freePerSource, freePerPair}
	var at [2]*attempts
	for i, k := range keys {
		a := t.keys[k]
		if a != nil && now.Sub(a.last) > throttleForget {
			delete(t.keys, k)
			a = nil
		}
		if a != nil && now.Before(a.next) {
			wait = max(wait, a.next.Sub(now))
		}
		at[i] = a
	}
	if wait > 0 {
		return wait
	}
	if len(t.keys) >= maxTracked-2 {
		t.shrink()
	}
	for i, k := range keys {
		a := at[i]
		if a == nil {
			a = &attempts{}
			t.keys[k] = a
		}
		a.n++
		a.last = now
		if over := a.n - free[i] + 1; over > 0 {
			a.next = now.Add(backoff(over))
		}
	}
	return 0
}

func backoff(over int) time.Duration {
	if over > 20 {
		return throttleMax
	}
	return min(throttleBase<<(over-1), throttleMax)
}

// succeeded forgives source's attempts for name and one of the source's.
func (t *throttle) succeeded(source, name string) {
	delete(t.keys, "p\x00"+source+"\x00"+name)
	if a := t.keys["s\x00"+source]; a != nil && a.n > 0 {
		a.n--
		if a.n <= freePerSource {
			a.next = time.Time{}
		}
	}
}

// shrink drops the keys older than the median last attempt: a full table
// keeps the recent half rather than forgetting everyone.
func (t *throttle) shrink() {
	var newest, oldest time.Time
	for _, a := range t.keys {
		if oldest.IsZero() || a.last.Before(oldest) {
			oldest = a.last
		}
		if a.last.After(newest) {
			newest = a.last
		}
	}
	cut := oldest.Add(newest.Sub(oldest) / 2)
	for k, a := range t.keys {
		if !a.last.After(cut) {
			delete(t.keys, k)
		}
	}
}

// gate bounds the bcrypt checks that run at once: a flood of sign-ins
// (from many addresses, which the throttle lets through) takes at most
// slots CPUs and leaves the others to the API. A sign-in waits at most
// wait for a slot, and only 4 per slot may wait at once; the others get
// ErrBusy at once. One more slot is kept for sign-ins that succeeded
// before from the same address for the same name (known), so that a
// flood of new addresses does not keep the usual users out.
type gate struct {
	slots   chan struct{}
	known   chan struct{}
	waiting chan struct{}
	wait    time.Duration
}

func newGate(slots int, wait time.Duration) *gate {
	return &gate{slots: make(chan struct{}, slots), known: make(chan struct{}, 1), waiting: make(chan struct{}, 4*slots), wait: wait}
}

// acquire takes a check slot and returns the function that gives it back.
func (g *gate) acquire(known bool) (release func(), err error) {
	var lane chan struct{} // nil blocks: only known sign-ins use the known slot
	if known {
		lane = g.known
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case lane <- struct{}{}:
		return func() { <-lane }, nil
	default:
	}
	select {
	case g.waiting <- struct{}{}:
		defer func() { <-g.waiting }()
	default:
		if !known { // a known sign-in waits even when the queue is full
			return nil, ErrBusy
		}
	}
	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case lane <- struct{}{}:
		return func() { <-lane }, nil
	case <-timer.C:
		return nil, ErrBusy
	}
}

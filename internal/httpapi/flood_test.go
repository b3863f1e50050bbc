package httpapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"twinchain/internal/httpapi/auth"
)

// floodServer is the API with sign-in (bcrypt at the default cost, as
// twin-service hashes) and checks password checks at once, on loopback.
func floodServer(tb testing.TB, checks int) (base string, hash string) {
	tb.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.DefaultCost)
	if err != nil {
		tb.Fatal(err)
	}
	a, err := auth.New(auth.Config{
		Users:          []auth.UserConfig{{Name: "ada", Role: auth.Security, PasswordHash: string(h)}},
		Tokens:         []auth.TokenConfig{{Name: "reader", Role: auth.Viewer, SHA256: auth.HashToken("tc_reader")}},
		PasswordChecks: checks,
	}, time.Now, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := New(Options{Auth: NewAuth(a, false, slog.New(slog.DiscardHandler)), Sites: []Site{{ID: "s1"}}})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String(), string(h)
}

// clientFrom is an HTTP client whose connections come from source (any
// 127.0.0.0/8 address on Linux), so that the server sees many addresses.
func clientFrom(source string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func login(c *http.Client, base, pw string) (int, error) {
	resp, err := c.Post(base+"/api/v1/auth/login", "application/json", strings.NewReader(`{"username":"ada","password":"`+pw+`"}`))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// BenchmarkSignInFlood floods sign-ins with wrong passwords from 64
// goroutines, each moving to a fresh loopback address every few attempts
// (so that the per-address throttle lets them reach bcrypt), while one
// reader reads GET /api/v1/sites; then the right password signs in from
// the address it used before the flood, and from a new one. It reports the
// reader's p50 and p99 with the flood over without it, and the known
// address's sign-in time, for bcrypt checks bounded
// (the default, half the CPUs) and effectively unbounded (64 at once, as
// on main):
//
//	go test -run '^$' -bench SignInFlood -benchtime 1x ./internal/httpapi
func BenchmarkSignInFlood(b *testing.B) {
	for _, tc := range []struct {
		name   string
		checks int
	}{{"bounded", max(1, runtime.GOMAXPROCS(0)/2)}, {"unbounded", 64}} {
		b.Run(tc.name, func(b *testing.B) {
			base, _ := floodServer(b, tc.checks)
			reader := &http.Client{Timeout: 30 * time.Second}
			read := func() time.Duration {
				req, _ := http.NewRequest("GET", base+"/api/v1/sites", nil)
				req.Header.Set("Authorization", "Bearer tc_reader")
				t0 := time.Now()
				resp, err := reader.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("GET /sites = %d", resp.StatusCode)
				}
				return time.Since(t0)
			}
			pct := func(d []time.Duration, p float64) time.Duration {
				slices.Sort(d)
				return d[int(p*float64(len(d)-1))]
			}
			for b.Loop() {
				// ada signed in from this address before the flood.
				if code, err := login(clientFrom("127.250.0.1"), base, "correct horse"); err != nil || code != 200 {
					b.Fatalf("sign-in before the flood = %d %v", code, err)
				}
				var quiet []time.Duration
				for range 200 {
					quiet = append(quiet, read())
				}
				var next atomic.Uint32
				next.Store(1 << 16) // 127.1.0.0 on
				stop := make(chan struct{})
				var wg sync.WaitGroup
				var codes sync.Map
				for range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							n := next.Add(1)
							c := clientFrom(fmt.Sprintf("127.%d.%d.%d", n>>16&255, n>>8&255, n&255))
							for range 4 {
								select {
								case <-stop:
									return
								default:
								}
								code, err := login(c, base, "wrong")
								if err == nil {
									v, _ := codes.LoadOrStore(code, new(atomic.Int64))
									v.(*atomic.Int64).Add(1)
								}
							}
						}
					}()
				}
				time.Sleep(time.Second) // the flood takes hold (a benchmark's timing, not an assertion)
				var flooded []time.Duration
				deadline := time.Now().Add(3 * time.Second)
				for time.Now().Before(deadline) {
					flooded = append(flooded, read())
				}
				t0 := time.Now()
				code, err := login(clientFrom("127.250.0.1"), base, "correct horse")
				signin := time.Since(t0)
				t0 = time.Now()
				newCode, _ := login(clientFrom("127.251.0.1"), base, "correct horse")
				newSignin := time.Since(t0)
				close(stop)
				wg.Wait()
				if err != nil {
					b.Fatal(err)
				}
				var summary []string
				codes.Range(func(k, v any) bool {
					summary = append(summary, fmt.Sprintf("%v:%d", k, v.(*atomic.Int64).Load()))
					return true
				})
				slices.Sort(summary)
				b.Logf("%s (%d checks at once): read p50 %v -> %v, p99 %v -> %v under the flood (%d reads); right password from the address it used before: %d in %v, from a new address: %d in %v; flood answers %v",
					tc.name, tc.checks, pct(quiet, .5), pct(flooded, .5), pct(quiet, .99), pct(flooded, .99), len(flooded), code, signin, newCode, newSignin, summary)
				b.ReportMetric(float64(pct(flooded, .5))/float64(pct(quiet, .5)), "read-p50-x")
				b.ReportMetric(float64(pct(flooded, .99))/float64(pct(quiet, .99)), "read-p99-x")
				b.ReportMetric(float64(signin.Milliseconds()), "signin-ms")
			}
		})
	}
}

// TestSignInOverHTTP: wrong passwords from one address get 429 with
// Retry-After and the throttled code, counted in /metrics, while the same
// user signs in from another address.
func TestSignInOverHTTP(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{
		Users:  []auth.UserConfig{{Name: "ada", Role: auth.Security, PasswordHash: string(h)}},
		Tokens: []auth.TokenConfig{{Name: "reader", Role: auth.Viewer, SHA256: auth.HashToken("tc_reader")}},
	}, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Options{Auth: NewAuth(a, false, slog.New(slog.DiscardHandler))})
	e.serve(t)
	base := e.base
	attacker := clientFrom("127.0.0.7")

	for i := 0; i < 8; i++ {
		resp, err := attacker.Post(base+"/api/v1/auth/login", "application/json", strings.NewReader(`{"username":"ada","password":"guess"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()

		if i >= 5 && (resp.StatusCode != 429 || !strings.Contains(string(b), `"throttled"`) || resp.Header.Get("Retry-After") == "") {
			t.Errorf("wrong password %d from one address = %d %s (Retry-After %q), want 429 throttled with Retry-After", i+1, resp.StatusCode, b, resp.Header.Get("Retry-After"))
		}
	}

	if code, err := login(clientFrom("127.0.0.8"), base, "correct horse"); err != nil || code != 200 {
		t.Errorf("right password from another address during the attack = %d %v, want 200", code, err)
	}
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer tc_reader")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`twinchain_auth_refused_total{reason="throttled"} 3`, `twinchain_auth_refused_total{reason="credentials"} 5`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if resp, err := http.Get(base + "/metrics"); err != nil || resp.StatusCode != 401 {
		t.Errorf("GET /metrics without a credential = %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
}

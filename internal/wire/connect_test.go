package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestConnectPassword(t *testing.T) {
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	other := sha256.Sum256([]byte("another key"))
	otherPub := ed25519.NewKeyFromSeed(other[:]).Public().(ed25519.PublicKey)
	now := goldenTime
	pw := ConnectPassword(key, "gw-a", now)
	if len(pw) > MaxConnectPassword {
		t.Errorf("len(ConnectPassword) = %d, want at most MaxConnectPassword %d", len(pw), MaxConnectPassword)
	}
	if !IsConnectPassword([]byte(pw)) {
		t.Errorf("IsConnectPassword(%q) = false", pw)
	}
	ns, err := VerifyConnectPassword(pub, "gw-a", []byte(pw), now.Add(ConnectWindow))
	if err != nil || ns != now.UnixNano() {
		t.Fatalf("VerifyConnectPassword = %d, %v; want %d, nil", ns, err, now.UnixNano())
	}
	sigStart := strings.LastIndexByte(pw, ':') + 1
	flipped := []byte(pw)
	flipped[sigStart] ^= 'A' ^ 'B'
	if flipped[sigStart] == pw[sigStart] {
		flipped[sigStart] = 'A'
	}
	for _, tc := range []struct {
		name    string
		pub     ed25519.PublicKey
		gw, pw  string
		now     time.Time
		wantErr error
	}{
		{"another gateway's name", pub, "gw-b", pw, now, ErrConnectSignature},
		{"another key", otherPub, "gw-a", pw, now, ErrConnectSignature},
		{"too old", pub, "gw-a", pw, now.Add(ConnectWindow + time.Second), ErrConnectExpired},
		{"from the future", pub, "gw-a", pw, now.Add(-ConnectWindow - time.Second), ErrConnectExpired},
		{"time moved", pub, "gw-a", "tc1:" + strconv.FormatInt(now.UnixNano()+1, 10) + pw[strings.LastIndexByte(pw, ':'):], now, ErrConnectSignature},
		{"signature changed", pub, "gw-a", string(flipped), now, ErrConnectSignature},
		{"plain password", pub, "gw-a", "secret", now, ErrConnectMalformed},
		{"leading zero", pub, "gw-a", "tc1:0" + pw[4:], now, ErrConnectMalformed},
		{"no signature", pub, "gw-a", "tc1:" + strconv.FormatInt(now.UnixNano(), 10), now, ErrConnectMalformed},
		{"short signature", pub, "gw-a", pw[:len(pw)-4], now, ErrConnectMalformed},
		{"too long", pub, "gw-a", pw + strings.Repeat("A", 100), now, ErrConnectMalformed},
	} {
		if _, err := VerifyConnectPassword(tc.pub, tc.gw, []byte(tc.pw), tc.now); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: VerifyConnectPassword(%q) = %v, want %v", tc.name, tc.pw, err, tc.wantErr)
		}
	}
}

func TestGatewayURI(t *testing.T) {
	if id, ok := GatewayFromURI(GatewayURI("gw-s1-dock")); !ok || id != "gw-s1-dock" {
		t.Errorf("GatewayFromURI(GatewayURI(gw-s1-dock)) = %q, %v", id, ok)
	}
	for _, uri := range []string{"urn:twinchain:gateway:", "urn:twinchain:gateway:a/b", "urn:other:gw-a", "gw-a"} {
		if id, ok := GatewayFromURI(uri); ok {
			t.Errorf("GatewayFromURI(%q) = %q, true; want false", uri, id)
		}
	}
}

// FuzzConnectPassword: no input panics ParseConnectPassword, and what it
// accepts is the canonical form it would produce.
func FuzzConnectPassword(f *testing.F) {
	key := testKey()
	f.Add([]byte(ConnectPassword(key, "gw-a", goldenTime)))
	f.Add([]byte("tc1:1:"))
	f.Add([]byte("tc1:-5:AAAA"))
	f.Add([]byte("secret"))
	f.Fuzz(func(t *testing.T, pw []byte) {
		ns, sig, err := ParseConnectPassword(pw)
		if err != nil {
			return
		}
		if ns <= 0 || len(sig) != ed25519.SignatureSize {
			t.Fatalf("ParseConnectPassword(%q) = %d, %d-byte signature; want a positive time and a full signature", pw, ns, len(sig))
		}
		if _, err := VerifyConnectPassword(key.Public().(ed25519.PublicKey), "gw-a", pw, time.Unix(0, ns)); err != nil && !errors.Is(err, ErrConnectSignature) {
			t.Fatalf("VerifyConnectPassword(%q) at its own time = %v, want nil or a signature mismatch", pw, err)
		}
	})
}

package registry

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"twinchain/internal/wire"
)

func key(seed string) ed25519.PublicKey {
	s := sha256.Sum256([]byte(seed))
	return ed25519.NewKeyFromSeed(s[:]).Public().(ed25519.PublicKey)
}

func TestParseShape(t *testing.T) {
	pub := key("a")
	in := `{"gateways":[{"id":"gw-srv-s1-001","public_key":"` + base64.StdEncoding.EncodeToString(pub) + `","site":"s1","assets":["srv-s1-001","srv-s1-001.gpu0"]}]}`
	f, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	want := File{Gateways: []Gateway{{ID: "gw-srv-s1-001", PublicKey: pub, Site: "s1", Assets: []string{"srv-s1-001", "srv-s1-001.gpu0"}}}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("Parse = %+v, want %+v", f, want)
	}
}

func TestParseErrors(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(key("a"))
	for _, tc := range []struct{ in, want string }{
		{`{"gateways":[{"id":"bad id","public_key":"` + good + `"}]}`, "gateway id"},
		{`{"gateways":[{"id":"gw1","public_key":"AAAA"}]}`, "public key has 3 bytes"},
		{`{"gateways":[{"id":"gw1","public_key":"` + good + `"},{"id":"gw1","public_key":"` + good + `"}]}`, "duplicate id"},
		{`{"gateways":[`, "parse registry"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.json")
	f := File{Gateways: []Gateway{{ID: "gw-a", PublicKey: key("a"), Site: "s1", Assets: []string{"x"}}, {ID: "gw-b", PublicKey: key("b"), Site: "s2", Assets: []string{}}}}
	if err := WriteFile(path, f); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Errorf("LoadFile(WriteFile(f)) = %+v, want %+v", got, f)
	}
	if err := WriteFile(path, File{Gateways: []Gateway{{ID: "gw-a"}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("WriteFile(gateway without key) = %v, want ErrInvalid", err)
	}
}

func TestRegistry(t *testing.T) {
	r := New(Gateway{ID: "gw-b", PublicKey: key("b"), Site: "s2"})
	if err := r.Put(Gateway{ID: "gw-a", PublicKey: key("a"), Site: "s1", Assets: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Gateway{ID: "gw-c"}); err == nil {
		t.Errorf("Put(gateway without key) = nil, want an error")
	}
	pub, site, ok := r.Lookup("gw-a")
	if !ok || site != "s1" || !pub.Equal(key("a")) {
		t.Errorf("Lookup(gw-a) = %x, %q, %v, want key a, s1, true", pub, site, ok)
	}
	if ids := []string{r.List()[0].ID, r.List()[1].ID}; !reflect.DeepEqual(ids, []string{"gw-a", "gw-b"}) {
		t.Errorf("List ids = %v, want [gw-a gw-b]", ids)
	}
	g, _ := r.Get("gw-a")
	g.Assets[0] = "changed"
	if g2, _ := r.Get("gw-a"); g2.Assets[0] != "x" {
		t.Errorf("Get returned a shared slice: asset = %q after the caller changed its copy", g2.Assets[0])
	}
	first, err1 := r.Delete("gw-a")
	second, err2 := r.Delete("gw-a")
	if !first || second || err1 != nil || err2 != nil || r.Len() != 1 {
		t.Errorf("Delete twice = %v, %v (errors %v, %v), then Len = %d; want true, false, no errors, 1", first, second, err1, err2, r.Len())
	}
}

func TestBinding(t *testing.T) {
	r := New(Gateway{ID: "gw-a", PublicKey: key("a"), Assets: []string{"srv-1", "srv-1.gpu0"}}, Gateway{ID: "gw-b", PublicKey: key("b")})
	check := func(when string, cases []struct {
		gw, asset string
		want      Binding
	}) {
		t.Helper()
		for _, tc := range cases {
			if got := r.Binding(tc.gw, tc.asset); got != tc.want {
				t.Errorf("%s: Binding(%s, %s) = %v, want %v", when, tc.gw, tc.asset, got, tc.want)
			}
		}
	}
	check("start", []struct {
		gw, asset string
		want      Binding
	}{
		{"gw-a", "srv-1.gpu0", Bound},
		{"gw-a", "gw-a", Bound},
		{"gw-a", "srv-2.gpu0", Unbound}, // a list without it
		{"gw-b", "srv-1.gpu0", Unbound}, // no list: another gateway's asset
		{"gw-b", "gw-a", Unbound},       // no list: another gateway itself
		{"gw-b", "srv-9", Unclaimed},    // no list, nobody lists it
		{"gw-x", "srv-9", Unclaimed},    // unknown gateways are the ingest's other check
	})
	if err := r.Put(Gateway{ID: "gw-a", PublicKey: key("a")}); err != nil {
		t.Fatal(err)
	}
	check("after gw-a lost its list", []struct {
		gw, asset string
		want      Binding
	}{
		{"gw-b", "srv-1.gpu0", Unclaimed},
		{"gw-a", "srv-2.gpu0", Unclaimed},
	})
	if err := r.Put(Gateway{ID: "gw-c", PublicKey: key("c"), Assets: []string{"srv-9"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Delete("gw-c"); err != nil {
		t.Fatal(err)
	}
	check("after gw-c was deleted", []struct {
		gw, asset string
		want      Binding
	}{{"gw-b", "srv-9", Unclaimed}})
}

// memStore is a Store in memory, standing for twin-service's across a restart.
type memStore struct{ gws map[string]Gateway }

func (m *memStore) PutGateways(gws ...Gateway) error {
	for _, g := range gws {
		m.gws[g.ID] = g.Clone()
	}
	return nil
}

func (m *memStore) DeleteGateway(id string) error { delete(m.gws, id); return nil }

func (m *memStore) open() *Registry {
	var gws []Gateway
	for _, g := range m.gws {
		gws = append(gws, g)
	}
	r := New(gws...)
	r.Persist(m)
	return r
}

// TestFileImportedOnce: the registry file seeds the registry; a gateway
// revoked or re-keyed over the API stays so across restarts and file
// rewrites, and a new id in the file is still imported.
func TestFileImportedOnce(t *testing.T) {
	dir := t.TempDir()
	path, record := filepath.Join(dir, "registry.json"), filepath.Join(dir, "registry-imported.json")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw := func(id string, seed byte) Gateway {
		return Gateway{ID: id, PublicKey: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)).Public().(ed25519.PublicKey), Site: "s1"}
	}
	a, b := gw("gw-a", 1), gw("gw-b", 2)
	if err := WriteFile(path, File{Gateways: []Gateway{a, b}}); err != nil {
		t.Fatal(err)
	}
	st := &memStore{gws: map[string]Gateway{}}
	reg := st.open()
	if err := NewFileWatcher(path, record, time.Second, reg, log).Check(); err != nil {
		t.Fatal(err)
	}
	if reg.Len() != 2 {
		t.Fatalf("registry has %d gateways after the first import, want 2", reg.Len())
	}
	// Over the API: revoke gw-a, re-key gw-b.
	if _, err := reg.Delete("gw-a"); err != nil {
		t.Fatal(err)
	}
	rekeyed := gw("gw-b", 3)
	if err := reg.Put(rekeyed); err != nil {
		t.Fatal(err)
	}
	// Restart, and the file is rewritten with the old entries and a new one.
	c := gw("gw-c", 4)
	if err := WriteFile(path, File{Gateways: []Gateway{a, b, c}}); err != nil {
		t.Fatal(err)
	}
	reg = st.open()
	if err := NewFileWatcher(path, record, time.Second, reg, log).Check(); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Get("gw-a"); ok {
		t.Errorf("revoked gw-a is back after a restart")
	}
	if got, _ := reg.Get("gw-b"); !got.PublicKey.Equal(rekeyed.PublicKey) {
		t.Errorf("gw-b's key after a restart is the file's old one, want the API's")
	}
	if _, ok := reg.Get("gw-c"); !ok {
		t.Errorf("gw-c, new in the file, was not imported")
	}
}

// TestVersionAndAssetIDs: every change moves the version; AssetIDs lists the
// assets every gateway names, nil when none names any.
func TestVersionAndAssetIDs(t *testing.T) {
	pub := key("a")
	r := New(Gateway{ID: "gw-a", PublicKey: pub})
	if got := r.AssetIDs(); got != nil {
		t.Errorf("AssetIDs() with no lists = %v, want nil", got)
	}
	v := r.Version()
	if err := r.Put(Gateway{ID: "gw-b", PublicKey: pub, Assets: []string{"srv-b", "srv-b.gpu0"}}); err != nil {
		t.Fatal(err)
	}
	got := r.AssetIDs()
	slices.Sort(got)
	if r.Version() == v || !slices.Equal(got, []string{"srv-b", "srv-b.gpu0"}) {
		t.Errorf("after Put: version %d (was %d), AssetIDs() = %v, want a new version and [srv-b srv-b.gpu0]", r.Version(), v, got)
	}
	v = r.Version()
	if ok, err := r.Delete("gw-b"); !ok || err != nil {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if r.Version() == v || r.AssetIDs() != nil {
		t.Errorf("after Delete: version %d (was %d), AssetIDs() = %v, want a new version and nil", r.Version(), v, r.AssetIDs())
	}
}

// TestRetiredKeysPersist: a re-key keeps the old key with its epoch and
// retirement time, through a restart; an edit that keeps the key keeps
// them; KeyFor finds a retired key by epoch only within RetiredKeyWindow,
// and a delete drops them.
func TestRetiredKeysPersist(t *testing.T) {
	st := &memStore{gws: map[string]Gateway{}}
	r := st.open()
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r.Clock(func() time.Time { return at })
	if err := r.Put(Gateway{ID: "gw-a", PublicKey: key("a1"), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Gateway{ID: "gw-a", PublicKey: key("a2"), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Gateway{ID: "gw-a", PublicKey: key("a2"), Site: "s2"}); err != nil { // same key: keeps them
		t.Fatal(err)
	}
	r = st.open()
	g, _ := r.Get("gw-a")
	want := []RetiredKey{{PublicKey: key("a1"), Epoch: wire.KeyEpoch(key("a1")), Retired: at}}
	if !reflect.DeepEqual(g.Retired, want) {
		t.Fatalf("after a restart: retired = %+v, want %+v", g.Retired, want)
	}
	for _, c := range []struct {
		epoch uint64
		now   time.Time
		want  ed25519.PublicKey
	}{
		{wire.KeyEpoch(key("a1")), at.Add(time.Hour), key("a1")},
		{wire.KeyEpoch(key("a1")), at.Add(RetiredKeyWindow), key("a2")},
		{wire.KeyEpoch(key("a2")), at.Add(time.Hour), key("a2")},
		{12345, at, key("a2")},
	} {
		if pub, _, site, ok := r.KeyFor("gw-a", c.epoch, c.now); !ok || site != "s2" || !bytes.Equal(pub, c.want) {
			t.Errorf("KeyFor(epoch %d, %s) = %x %s %v, want %x", c.epoch, c.now, pub, site, ok, c.want)
		}
	}
	if _, err := r.Delete("gw-a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Gateway{ID: "gw-a", PublicKey: key("a3"), Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	if g, _ := r.Get("gw-a"); g.Retired != nil {
		t.Errorf("after delete and re-add: retired = %+v, want none", g.Retired)
	}
}

package rfid

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"twinchain/internal/edge/serialport"
	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

// frame builds an RDM6300 frame around a 12-character body.
func frame(body string) string { return "\x02" + body + "\x03" }

func TestDecodeRDM6300(t *testing.T) {
	cases := []struct {
		body string
		want string
		err  error
	}{
		// 0x01^0x02^0x03^0x04^0x05 = 0x01
		{"010203040501", "0102030405", nil},
		// a real card: 12 00 3F 7A 2C, xor = 0x7B
		{"12003F7A2C7B", "12003F7A2C", nil},
		{"12003f7a2c7b", "12003F7A2C", nil},
		{"12003F7A2C7C", "", ErrChecksum},
		{"12003F7A2C7", "", ErrFrame},
		{"12003F7A2CZZ", "", ErrFrame},
		{"", "", ErrFrame},
	}
	for _, tc := range cases {
		got, err := DecodeRDM6300([]byte(tc.body))
		if got != tc.want || !errors.Is(err, tc.err) && !(err == nil && tc.err == nil) {
			t.Errorf("DecodeRDM6300(%q) = %q, %v, want %q, %v", tc.body, got, err, tc.want, tc.err)
		}
	}
}

func TestEncodeRDM6300RoundTrip(t *testing.T) {
	for _, id := range []string{"0102030405", "12003F7A2C", "ffffffffff", "0000000000"} {
		f, err := EncodeRDM6300(id)
		if err != nil {
			t.Fatalf("EncodeRDM6300(%q) = %v", id, err)
		}
		if len(f) != 14 || f[0] != stx || f[13] != etx {
			t.Fatalf("EncodeRDM6300(%q) = %q, want a 14-byte STX..ETX frame", id, f)
		}
		got, err := DecodeRDM6300(f[1:13])
		if err != nil || got != strings.ToUpper(id) {
			t.Errorf("DecodeRDM6300(EncodeRDM6300(%q)) = %q, %v", id, got, err)
		}
	}
	if _, err := EncodeRDM6300("123"); err == nil {
		t.Errorf("EncodeRDM6300(123) = nil error, want an error")
	}
}

func TestRDM6300Framer(t *testing.T) {
	good := frame("12003F7A2C7B")
	cases := []struct {
		name   string
		chunks []string
		want   []string
		stats  FrameStats
	}{
		{"one frame", []string{good}, []string{"12003F7A2C"}, FrameStats{Frames: 1}},
		{"split at every byte", strings.Split(good, ""), []string{"12003F7A2C"}, FrameStats{Frames: 1}},
		{"two frames back to back", []string{good + good}, []string{"12003F7A2C", "12003F7A2C"}, FrameStats{Frames: 2}},
		{"bad checksum then good", []string{frame("12003F7A2C7C"), good}, []string{"12003F7A2C"}, FrameStats{Frames: 1, BadChecksum: 1}},
		{"torn by new STX", []string{"\x0212003F", good}, []string{"12003F7A2C"}, FrameStats{Frames: 1, Torn: 1}},
		{"early ETX", []string{"\x0212003F\x03", good}, []string{"12003F7A2C"}, FrameStats{Frames: 1, Torn: 1}},
		{"too long", []string{frame("12003F7A2C7B00"), good}, []string{"12003F7A2C"}, FrameStats{Frames: 1, Torn: 1, NoiseBytes: 2}},
		{"binary noise around", []string{"\xff\x00\x80", good, "\xfe"}, []string{"12003F7A2C"}, FrameStats{Frames: 1, NoiseBytes: 4}},
		{"noise inside a frame", []string{"\x0212003F\xf8A2C7B\x03", good}, []string{"12003F7A2C"}, FrameStats{Frames: 1, Torn: 1, NoiseBytes: 6}},
		// A 9600-baud RDM6300 read at 115200 baud: bytes come out as garbage
		// without STX/ETX structure.
		{"wrong baud garbage", []string{"\x80\x00\xf8\x80\x78\x00\x80\xf8\x00\x00\x80\x78\x80\xf8"}, nil, FrameStats{NoiseBytes: 14}},
	}
	for _, tc := range cases {
		var f RDM6300Framer
		var got []string
		for _, c := range tc.chunks {
			f.Feed([]byte(c), func(id string) { got = append(got, id) })
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: framer emitted %q, want %q", tc.name, got, tc.want)
		}
		if f.Stats != tc.stats {
			t.Errorf("%s: framer stats = %+v, want %+v", tc.name, f.Stats, tc.stats)
		}
	}
}

func TestUHFParser(t *testing.T) {
	p, err := NewUHFParser(DefaultUHFPattern)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		line string
		want UHFLine
		ok   bool
	}{
		{"EPC:E2801160600002084D6B1A3F RSSI:-57.5 ANT:2", UHFLine{EPC: "E2801160600002084D6B1A3F", RSSI: -57.5, HasRSSI: true, Antenna: 2}, true},
		{"EPC:e2801160600002084d6b1a3f RSSI:-61 ANT:1 ", UHFLine{EPC: "E2801160600002084D6B1A3F", RSSI: -61, HasRSSI: true, Antenna: 1}, true},
		{"EPC:E280116 RSSI:-57.5 ANT:2", UHFLine{}, false},            // odd length
		{"EPC:E2801160 RSSI:-300 ANT:2", UHFLine{}, false},            // RSSI out of range
		{"EPC:E2801160 RSSI:-50 ANT:999", UHFLine{}, false},           // antenna out of range
		{"EPC: RSSI:-50 ANT:1", UHFLine{}, false},                     // no EPC
		{"\xf8\x80\x00garbage", UHFLine{}, false},                     // noise
		{"EPC:E2801160600002084D6B1A3F RSSI:-57.5", UHFLine{}, false}, // truncated
	}
	for _, tc := range cases {
		got, err := p.Parse([]byte(tc.line))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v, want %+v, ok=%v", tc.line, got, err, tc.want, tc.ok)
		}
	}
	// A site's own format: CSV with antenna first and no RSSI.
	csv, err := NewUHFParser(`^(?P<antenna>\d+),(?P<epc>[0-9A-F]+)$`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := csv.Parse([]byte("3,300833B2DDD9014000000000")); err != nil || got.EPC != "300833B2DDD9014000000000" || got.Antenna != 3 || got.HasRSSI {
		t.Errorf("csv Parse = %+v, %v, want EPC 3008.. on antenna 3 without RSSI", got, err)
	}
	if _, err := NewUHFParser(`^(?P<tag>\w+)$`); err == nil {
		t.Errorf("NewUHFParser(no epc group) = nil error, want an error")
	}
	if _, err := NewUHFParser(`(`); err == nil {
		t.Errorf("NewUHFParser(bad regexp) = nil error, want an error")
	}
}

func TestMerger(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	m := NewMerger(2*time.Second, 3)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	m.Add(TagRead{Reader: "dock", ReadPoint: "door", Zone: "z", EPC: "A1", RSSI: -60, HasRSSI: true, Antenna: 1, Time: at(0)})
	m.Add(TagRead{Reader: "dock", ReadPoint: "door", Zone: "z", EPC: "A1", RSSI: -50, HasRSSI: true, Antenna: 2, Time: at(500)})
	m.Add(TagRead{Reader: "dock", ReadPoint: "door", Zone: "z", EPC: "A1", RSSI: -70, HasRSSI: true, Antenna: 3, Time: at(900)})
	m.Add(TagRead{Reader: "gate", ReadPoint: "gate", Zone: "y", EPC: "A1", Time: at(1000)})
	if got := m.Flush(at(1999), false); len(got) != 0 {
		t.Errorf("Flush before the window = %+v, want nothing", got)
	}
	got := m.Flush(at(2000), false)
	want := wire.RFIDRead{Reader: "dock", ReadPoint: "door", Zone: "z", EPC: "A1", RSSI: -50, Antenna: 2, FirstSeen: at(0), LastSeen: at(900), Count: 3}
	if len(got) != 1 || got[0] != want {
		t.Errorf("Flush(2s) = %+v, want [%+v]", got, want)
	}
	if m.Open() != 1 {
		t.Errorf("Open() = %d, want 1 (the gate read)", m.Open())
	}
	// Past the bound the oldest open read is closed early.
	for i, epc := range []string{"B1", "B2", "B3"} {
		m.Add(TagRead{Reader: "dock", EPC: epc, Time: at(1100 + i)})
	}
	if m.ClosedEarly != 1 {
		t.Errorf("ClosedEarly = %d, want 1", m.ClosedEarly)
	}
	all := m.Flush(at(1200), true)
	if len(all) != 4 || all[0].Reader != "gate" || all[1].EPC != "B1" {
		t.Errorf("Flush(all) = %+v, want gate then B1..B3", all)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := ReaderConfig{Name: "r", Protocol: ProtocolRDM6300, Port: "/dev/ttyUSB0", ReadPoint: "p", Zone: "z"}
	cases := []struct {
		name string
		edit func(*ReaderConfig)
		want string
	}{
		{"ok", func(*ReaderConfig) {}, ""},
		{"no name", func(r *ReaderConfig) { r.Name = "" }, "name: required"},
		{"no port", func(r *ReaderConfig) { r.Port = "" }, "port: required"},
		{"no zone", func(r *ReaderConfig) { r.Zone = "" }, "zone are required"},
		{"protocol", func(r *ReaderConfig) { r.Protocol = "x" }, `protocol "x"`},
		{"pattern", func(r *ReaderConfig) { r.Protocol, r.Pattern = ProtocolUHFLine, "(?P<x>.)" }, "no group named epc"},
	}
	for _, tc := range cases {
		r := ok
		tc.edit(&r)
		c := Config{Readers: []ReaderConfig{r}}
		c.SetDefaults()
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestServiceOnPseudoTerminals runs two readers on real pseudo-terminals
// opened with tarm/serial, feeds them good and bad bytes and checks what
// comes out merged, and that the counters saw the bad input.
func TestServiceOnPseudoTerminals(t *testing.T) {
	m1, s1, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer m1.Close()
	defer s1.Close()
	m2, s2, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	defer s2.Close()
	cfg := Config{MergeWindow: 300 * time.Millisecond, Readers: []ReaderConfig{
		{Name: "em", Protocol: ProtocolRDM6300, Port: s1.Name(), ReadPoint: "rack-door", Zone: "s1-hall"},
		{Name: "uhf", Protocol: ProtocolUHFLine, Port: s2.Name(), ReadPoint: "dock-door", Zone: "s1-dock"},
	}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []wire.RFIDRead
	svc := New(cfg, serialport.Open, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)), func(r wire.RFID) {
		mu.Lock()
		got = append(got, r.Reads...)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	testsvc.Eventually(t, 20*time.Second, "both readers reopened", func() bool { st := svc.Stats(); return st["em"].Reopens == 1 && st["uhf"].Reopens == 1 })

	f, _ := EncodeRDM6300("12003F7A2C")
	m1.Write([]byte("\xff\x80" + frame("12003F7A2C7C")))
	m1.Write(f)
	m1.Write(f)
	m2.Write([]byte("EPC:E2801160600002084D6B1A3F RSSI:-61.0 ANT:1\r\n\xf8\xf8garbage\r\n"))
	m2.Write([]byte(FormatUHFLine("E2801160600002084D6B1A3F", -55, 2)))
	testsvc.Eventually(t, 20*time.Second, "two reads after the reopen", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	byReader := map[string]wire.RFIDRead{}
	for _, r := range got {
		byReader[r.Reader] = r
	}
	if r := byReader["em"]; r.EPC != "12003F7A2C" || r.Count != 2 || r.Zone != "s1-hall" || r.ReadPoint != "rack-door" {
		t.Errorf("em merged read = %+v, want 12003F7A2C x2 at rack-door in s1-hall", r)
	}
	if r := byReader["uhf"]; r.EPC != "E2801160600002084D6B1A3F" || r.Count != 2 || r.RSSI != -55 || r.Antenna != 2 || r.Zone != "s1-dock" {
		t.Errorf("uhf merged read = %+v, want E280.. x2, best RSSI -55 on antenna 2 in s1-dock", r)
	}
	st := svc.Stats()
	if st["em"].BadChecksum != 1 || st["em"].NoiseBytes != 2 || st["em"].Reads != 2 {
		t.Errorf("em stats = %+v, want 2 reads, 1 bad checksum, 2 noise bytes", st["em"])
	}
	if st["uhf"].Malformed != 1 || st["uhf"].Reads != 2 {
		t.Errorf("uhf stats = %+v, want 2 reads, 1 malformed", st["uhf"])
	}
}

func FuzzRDM6300Frame(f *testing.F) {
	good, _ := EncodeRDM6300("12003F7A2C")
	f.Add(good)
	f.Add(append(append([]byte("\xff\x00"), good...), good[:7]...))
	f.Add([]byte(frame("12003F7A2C7C")))
	f.Add([]byte("\x02\x02\x03\x03"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var whole, split RDM6300Framer
		var a, b []string
		whole.Feed(data, func(id string) { a = append(a, id) })
		for i := range data {
			split.Feed(data[i:i+1], func(id string) { b = append(b, id) })
		}
		if strings.Join(a, ",") != strings.Join(b, ",") || whole.Stats != split.Stats {
			t.Fatalf("framing depends on how reads split the bytes: %q vs %q", a, b)
		}
		for _, id := range a {
			if len(id) != 10 || strings.ToUpper(id) != id {
				t.Fatalf("emitted id %q, want 10 upper-case hex characters", id)
			}
			if enc, err := EncodeRDM6300(id); err != nil || !strings.Contains(string(data), string(enc[1:11])) && !strings.Contains(strings.ToUpper(string(data)), string(enc[1:11])) {
				t.Fatalf("emitted id %q not present in the input", id)
			}
		}
		if whole.Stats.Frames != uint64(len(a)) {
			t.Fatalf("Frames = %d, emitted %d", whole.Stats.Frames, len(a))
		}
	})
}

func FuzzUHFLine(f *testing.F) {
	p, err := NewUHFParser(DefaultUHFPattern)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("EPC:E2801160600002084D6B1A3F RSSI:-57.5 ANT:2"))
	f.Add([]byte("EPC:E2801160 RSSI:-0.0 ANT:0"))
	f.Add([]byte("\xf8\x80garbage"))
	f.Add([]byte("EPC:E2801160600002084D6B1A3F RSSI:-99999999999999999999999 ANT:2"))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := p.Parse(line)
		if err != nil {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("Parse error %v does not wrap ErrFrame", err)
			}
			return
		}
		if len(r.EPC) < 4 || len(r.EPC)%2 != 0 || strings.ToUpper(r.EPC) != r.EPC {
			t.Fatalf("Parse accepted EPC %q", r.EPC)
		}
		if r.RSSI < -128 || r.RSSI > 0 || r.Antenna < 0 || r.Antenna > 255 {
			t.Fatalf("Parse accepted out-of-range values %+v", r)
		}
	})
}

package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/")

// testKey is a fixed key so the golden vectors are reproducible.
func testKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("twinchain wire golden vector key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

var goldenTime = time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)

func goldenBodies() map[string]struct {
	kind Kind
	body any
} {
	return map[string]struct {
		kind Kind
		body any
	}{
		"telemetry": {KindTelemetry, Telemetry{Host: "srv-s1-001", GPUs: []GPUSample{{
			Asset: "srv-s1-001.gpu0", Index: 0, UUID: "GPU-6f0b8e12-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
			TempC: 61, MemTempC: 72, PowerW: 412.5, PowerLimitW: 700, UtilPct: 87, MemUtilPct: 54,
			SMClockMHz: 1980, MemClockMHz: 2619, ECCSingleBit: 3, RetiredPages: 0, RemappedRows: 1,
			LastXID: 0, XIDCount: 0, Throttle: []string{ThrottlePowerCap}, PCIeReplays: 0,
		}}}},
		"telemetry_samples": {KindTelemetry, Telemetry{Host: "srv-s1-001", Samples: []TelemetrySample{
			{TS: goldenTime.Add(-2 * time.Second), GPUs: []GPUSample{{Asset: "srv-s1-001.gpu0", UUID: "GPU-6f0b8e12-3c4d-4e5f-8a9b-0c1d2e3f4a5b", TempC: 60, PowerW: 405, UtilPct: 85, MemUtilPct: 50, SMClockMHz: 1980, MemClockMHz: 2619, ECCSingleBit: 3}}},
			{TS: goldenTime.Add(-time.Second), GPUs: []GPUSample{{Asset: "srv-s1-001.gpu0", UUID: "GPU-6f0b8e12-3c4d-4e5f-8a9b-0c1d2e3f4a5b", TempC: 61, PowerW: 410, UtilPct: 86, MemUtilPct: 52, SMClockMHz: 1980, MemClockMHz: 2619, ECCSingleBit: 3, LastXID: 13, XIDCount: 1, XIDs: []int{13}}}},
			{TS: goldenTime, GPUs: []GPUSample{{Asset: "srv-s1-001.gpu0", UUID: "GPU-6f0b8e12-3c4d-4e5f-8a9b-0c1d2e3f4a5b", TempC: 61, PowerW: 412.5, UtilPct: 87, MemUtilPct: 54, SMClockMHz: 1980, MemClockMHz: 2619, ECCSingleBit: 3, LastXID: 13, XIDCount: 1}}},
		}}},
		"firmware": {KindFirmware, Inventory{
			Host: HostInfo{Asset: "srv-s1-001", Hostname: "gpu-node-001", Serial: "SRV123", RFIDTag: "E2801160600002084D6B1A3F", Rack: "s1-r01", BIOSVersion: "2.3.1", BMCVersion: "6.10.30"},
			GPUs: []GPUIdentity{{Asset: "srv-s1-001.gpu0", Index: 0, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-6f0b8e12-3c4d-4e5f-8a9b-0c1d2e3f4a5b", Serial: "1650123456789", PCIBusID: "00000000:18:00.0", BoardPartNumber: "699-2G530-0200-200", VBIOS: "96.00.99.00.01", Driver: "550.54.15", InfoROM: "G530.0200.00.04"}},
		}},
		"rfid":   {KindRFID, RFID{Reads: []RFIDRead{{Reader: "dock-uhf", ReadPoint: "dock-door-1", Zone: "s1-dock", EPC: "E2801160600002084D6B1A3F", RSSI: -57.5, Antenna: 2, FirstSeen: goldenTime.Add(-2 * time.Second), LastSeen: goldenTime, Count: 7}}}},
		"gps":    {KindGPS, GPSFix{Asset: "gw-s1-01", Lat: 52.520008, Lon: 13.404954, AltM: 34.2, Quality: 1, HDOP: 0.9, Sats: 11, SpeedMS: 0.1, CourseDeg: 87.5, FixTime: goldenTime}},
		"status": {KindStatus, Status{State: StateOnline, AgentVersion: "0.1.0", QueueDepth: 12, Dropped: 0}},
		"workloads": {KindWorkloads, Workloads{Host: "srv-s1-001", GPUs: []GPUWorkload{{
			Asset: "srv-s1-001.gpu0", UUID: "GPU-6f0b8e12-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
			Processes: []Process{{PID: 4242, Name: "vllm", MemBytes: 71 << 30, Model: "llama-7b",
				Artifact: "sha256:" + strings.Repeat("ab", 32), Skip: SkipNoContainer},
				{PID: 5150, Name: "tritonserver", MemBytes: 9 << 30, Model: "bert", Artifact: "sha256:" + strings.Repeat("cd", 32),
					Image: "sha256:" + strings.Repeat("ef", 32), RepoDigest: "sha256:" + strings.Repeat("12", 32)}},
		}}}},
	}
}

// TestGolden pins the encoding and signature of one envelope of each kind.
// Ed25519 signatures are deterministic, so the bytes must match exactly.
func TestGolden(t *testing.T) {
	key := testKey()
	for name, g := range goldenBodies() {
		t.Run(name, func(t *testing.T) {
			got, err := Seal(key, "gw-s1-01", 42, goldenTime, g.kind, g.body)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			want = bytes.TrimSpace(want)
			if !bytes.Equal(got, want) {
				t.Errorf("Seal(%s) =\n%s\nwant\n%s", name, got, want)
			}
			env, err := Decode(want)
			if err != nil {
				t.Fatalf("Decode(golden) = %v", err)
			}
			if err := env.Verify(key.Public().(ed25519.PublicKey)); err != nil {
				t.Errorf("Verify(golden) = %v, want nil", err)
			}
		})
	}
}

func TestPublicKeyOfGoldenVectors(t *testing.T) {
	// The public key is written down so other implementations can check the vectors.
	pub := testKey().Public().(ed25519.PublicKey)
	path := filepath.Join("testdata", "key.pub.hex")
	got := []byte(strings.ToLower(string(hexEncode(pub))))
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(bytes.TrimSpace(want)) != string(got) {
		t.Errorf("public key = %s, want %s", got, want)
	}
}

func hexEncode(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, len(b)*2)
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

func TestVerifyRejectsTampering(t *testing.T) {
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	data, err := Seal(key, "gw-1", 7, goldenTime, KindStatus, Status{State: StateOnline})
	if err != nil {
		t.Fatal(err)
	}
	tamper := []struct {
		name string
		edit func(e *Envelope)
	}{
		{"seq", func(e *Envelope) { e.Seq++ }},
		{"gateway", func(e *Envelope) { e.Gateway = "gw-2" }},
		{"time", func(e *Envelope) { e.TS = e.Time.Add(time.Nanosecond).Format(time.RFC3339Nano) }},
		{"time text", func(e *Envelope) { e.TS = e.Time.Format(time.RFC3339) }}, // the same instant written otherwise
		{"epoch", func(e *Envelope) { e.Epoch++ }},
		{"kind", func(e *Envelope) { e.Kind = KindGPS }},
		{"body", func(e *Envelope) { e.Body = []byte(`{"state":"offline"}`) }},
		{"sig", func(e *Envelope) { e.Sig[0] ^= 1 }},
	}
	for _, tc := range tamper {
		env, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		tc.edit(&env)
		if err := env.Verify(pub); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Verify after changing %s = %v, want ErrBadSignature", tc.name, err)
		}
	}
	other := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	env, _ := Decode(data)
	if err := env.Verify(other); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify with another key = %v, want ErrBadSignature", err)
	}
}

// TestTimeShiftedBy2To64 is the attack of issue 11: a ts moved back by 2^64
// ns (2026 -> 1442) had the same UnixNano, so the old signature still held.
// The signature covers the text of ts now.
func TestTimeShiftedBy2To64(t *testing.T) {
	key := testKey()
	data, err := Seal(key, "gw-1", 7, goldenTime, KindStatus, Status{State: StateOnline})
	if err != nil {
		t.Fatal(err)
	}
	shifted := goldenTime.Add(-math.MaxInt64).Add(-math.MaxInt64).Add(-2)
	if shifted.UnixNano() != goldenTime.UnixNano() || shifted.Year() > 1500 {
		t.Fatalf("shifted time %s, UnixNano %d: not the attack", shifted, shifted.UnixNano())
	}
	forged := bytes.Replace(data, []byte(goldenTime.Format(time.RFC3339Nano)), []byte(shifted.Format(time.RFC3339Nano)), 1)
	env, err := Decode(forged)
	if err != nil {
		t.Fatalf("Decode(forged) = %v", err)
	}
	if !env.Time.Equal(shifted) {
		t.Fatalf("Decode(forged).Time = %s, want %s", env.Time, shifted)
	}
	if err := env.Verify(key.Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(ts moved back by 2^64 ns) = %v, want ErrBadSignature", err)
	}
}

// TestEpochIsTheKeys checks that Seal writes the key's epoch and Verify
// refuses another, even one signed by the key.
func TestEpochIsTheKeys(t *testing.T) {
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	data, err := Seal(key, "gw-1", 7, goldenTime, KindStatus, Status{State: StateOnline})
	if err != nil {
		t.Fatal(err)
	}
	env, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if env.Epoch != KeyEpoch(pub) || env.Epoch == 0 {
		t.Fatalf("Seal epoch = %d, want KeyEpoch = %d", env.Epoch, KeyEpoch(pub))
	}
	other := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	if KeyEpoch(other) == KeyEpoch(pub) {
		t.Fatal("two keys share an epoch")
	}
	env.Epoch = KeyEpoch(other)
	env.Sig = ed25519.Sign(key, env.AppendSigningBytes(nil)) // signed, but not the key's epoch
	if err := env.Verify(pub); !errors.Is(err, ErrEpoch) || !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(another key's epoch) = %v, want ErrEpoch and ErrBadSignature", err)
	}
}

func TestUnknownFieldsTolerated(t *testing.T) {
	key := testKey()
	body := []byte(`{"state":"online","future_field":{"x":[1,2]},"queue_depth":3}`)
	data, err := SealRaw(key, "gw-1", 9, goldenTime, KindStatus, body)
	if err != nil {
		t.Fatal(err)
	}
	// An envelope-level field from a later minor version is ignored too.
	data = bytes.Replace(data, []byte(`{"v":1,`), []byte(`{"v":1,"trace":"abc",`), 1)
	env, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode = %v", err)
	}
	if err := env.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("Verify = %v, want nil", err)
	}
	st, err := DecodeBody[Status](&env)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateOnline || st.QueueDepth != 3 {
		t.Errorf("DecodeBody = %+v, want online with queue 3", st)
	}
}

func TestDecodeRejects(t *testing.T) {
	key := testKey()
	good, _ := Seal(key, "gw-1", 1, goldenTime, KindStatus, Status{State: StateOnline})
	mutate := func(old, new string) []byte { return bytes.Replace(good, []byte(old), []byte(new), 1) }
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"not json", []byte("hello"), ErrMalformed},
		{"truncated", good[:len(good)/2], ErrMalformed},
		{"oversize", bytes.Repeat([]byte(" "), MaxEnvelopeSize+1), ErrOversize},
		{"version", mutate(`"v":1`, `"v":2`), ErrVersion},
		{"gateway", mutate(`"gw":"gw-1"`, `"gw":"../etc"`), ErrBadGatewayID},
		{"kind", mutate(`"kind":"status"`, `"kind":"nope"`), ErrMalformed},
		{"body not object", mutate(`"body":{"state":"online","queue_depth":0,"dropped":0}`, `"body":[1]`), ErrMalformed},
		{"no sig", mutate(`"sig":`, `"xsig":`), ErrMalformed},
		{"no ts", mutate(`"ts":`, `"xts":`), ErrMalformed},
		{"ts not a time", mutate(`"ts":"2026`, `"ts":"x2026`), ErrMalformed},
		{"no epoch", mutate(`"epoch":`, `"xepoch":`), ErrMalformed},
	}
	for _, tc := range cases {
		if _, err := Decode(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("Decode(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Decode(good); err != nil {
		t.Errorf("Decode(good) = %v, want nil", err)
	}
}

func TestTopics(t *testing.T) {
	for _, k := range Kinds {
		gw, kind, err := ParseTopic(Topic("gw-7", k))
		if err != nil || gw != "gw-7" || kind != k {
			t.Errorf("ParseTopic(Topic(gw-7, %s)) = %q, %q, %v", k, gw, kind, err)
		}
	}
	bad := []string{"", "twinchain/v1/gw/gw-1", "twinchain/v2/gw/gw-1/gps", "twinchain/v1/gw/+/gps", "twinchain/v1/gw/gw-1/gps/x", "twinchain/v1/gw/gw-1/pizza"}
	for _, in := range bad {
		if _, _, err := ParseTopic(in); err == nil {
			t.Errorf("ParseTopic(%q) = nil error, want an error", in)
		}
	}
}

func FuzzDecode(f *testing.F) {
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	for name, g := range goldenBodies() {
		data, err := Seal(key, "gw-"+name, 1, goldenTime, g.kind, g.body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Decode(data)
		if err != nil {
			return
		}
		// A decoded envelope re-encodes and decodes to the same signing bytes.
		again, err := json.Marshal(&env)
		if err != nil {
			t.Fatalf("Marshal(decoded) = %v", err)
		}
		env2, err := Decode(again)
		if err != nil {
			t.Fatalf("Decode(Marshal(decoded)) = %v", err)
		}
		_ = env.Verify(pub)
		if env2.Gateway != env.Gateway || env2.Seq != env.Seq || env2.Kind != env.Kind {
			t.Fatalf("round trip changed the envelope: %+v vs %+v", env, env2)
		}
	})
}

func BenchmarkDecodeVerify(b *testing.B) {
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	g := goldenBodies()["telemetry"]
	tel := g.body.(Telemetry)
	for i := 1; i < 8; i++ {
		s := tel.GPUs[0]
		s.Index = i
		tel.GPUs = append(tel.GPUs, s)
	}
	data, _ := Seal(key, "gw-s1-01", 1, goldenTime, KindTelemetry, tel)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := env.Verify(pub); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeTelemetry checks both telemetry forms come back as samples, and
// that a several-sample message breaking the contract is refused with
// ErrSamples.
func TestDecodeTelemetry(t *testing.T) {
	key := testKey()
	gpu := func(temp float64) []GPUSample { return []GPUSample{{Asset: "h.gpu0", TempC: temp}} }
	at := goldenTime
	samples := func(n int, step time.Duration) []TelemetrySample {
		out := make([]TelemetrySample, n)
		for i := range out {
			out[i] = TelemetrySample{TS: at.Add(-time.Duration(n-1-i) * step), GPUs: gpu(float64(i))}
		}
		return out
	}
	tests := []struct {
		name    string
		body    Telemetry
		samples int // want, when valid
		wantErr bool
	}{
		{"one-sample form", Telemetry{Host: "h", GPUs: gpu(50)}, 1, false},
		{"five samples", Telemetry{Host: "h", Samples: samples(5, time.Second)}, 5, false},
		{"MaxSamples", Telemetry{Host: "h", Samples: samples(MaxSamples, time.Second)}, MaxSamples, false},
		{"too many", Telemetry{Host: "h", Samples: samples(MaxSamples+1, time.Second)}, 0, true},
		{"out of order", Telemetry{Host: "h", Samples: []TelemetrySample{{TS: at, GPUs: gpu(1)}, {TS: at.Add(-time.Second), GPUs: gpu(2)}}}, 0, true},
		{"same instant twice", Telemetry{Host: "h", Samples: []TelemetrySample{{TS: at, GPUs: gpu(1)}, {TS: at, GPUs: gpu(2)}}}, 0, true},
		{"after the envelope", Telemetry{Host: "h", Samples: []TelemetrySample{{TS: at.Add(time.Millisecond), GPUs: gpu(1)}}}, 0, true},
		{"before the window", Telemetry{Host: "h", Samples: []TelemetrySample{{TS: at.Add(-SampleWindow - time.Second), GPUs: gpu(1)}, {TS: at, GPUs: gpu(2)}}}, 0, true},
		{"both forms", Telemetry{Host: "h", GPUs: gpu(1), Samples: samples(2, time.Second)}, 0, true},
	}
	for _, tt := range tests {
		data, err := Seal(key, "gw-1", 1, at, KindTelemetry, tt.body)
		if err != nil {
			t.Fatal(err)
		}
		env, err := Decode(data)
		if err != nil {
			t.Fatalf("%s: Decode = %v", tt.name, err)
		}
		got, err := DecodeTelemetry(&env)
		if tt.wantErr {
			if !errors.Is(err, ErrSamples) {
				t.Errorf("%s: DecodeTelemetry = %v, want ErrSamples", tt.name, err)
			}
			continue
		}
		if err != nil || len(got.Samples) != tt.samples || got.GPUs != nil {
			t.Errorf("%s: DecodeTelemetry = %d samples, gpus %v, %v; want %d samples, no gpus, nil", tt.name, len(got.Samples), got.GPUs, err, tt.samples)
			continue
		}
		if last := got.Latest(); !last.TS.Equal(at) || last.GPUs[0].Asset != "h.gpu0" {
			t.Errorf("%s: Latest() = %v, want the sample at the envelope's time", tt.name, last)
		}
	}
}

// TestDecodeTelemetryPresized: the presized decode gives what encoding/json
// gives, for bodies whose guess is right, short, long or fooled.
func TestDecodeTelemetryPresized(t *testing.T) {
	key := testKey()
	g := func(asset string, temp float64) GPUSample {
		return GPUSample{Asset: asset, UUID: "U-" + asset, TempC: temp, XIDs: []int{13}, Throttle: []string{ThrottlePowerCap}}
	}
	var ten []TelemetrySample
	for i := range 10 {
		ten = append(ten, TelemetrySample{TS: goldenTime.Add(time.Duration(i-9) * time.Second), GPUs: []GPUSample{g("h.gpu0", float64(i)), g("h.gpu1", float64(i+1))}})
	}
	uneven := []TelemetrySample{
		{TS: goldenTime.Add(-2 * time.Second), GPUs: []GPUSample{g("h.gpu0", 1)}},
		{TS: goldenTime.Add(-time.Second), GPUs: []GPUSample{g("h.gpu0", 2), g("h.gpu1", 2), g("h.gpu2", 2), g("h.gpu3", 2)}},
		{TS: goldenTime},
	}
	fooled := []TelemetrySample{ // "ts": and "asset": inside strings
		{TS: goldenTime.Add(-time.Second), GPUs: []GPUSample{g(`x"ts":"asset":`, 1)}},
		{TS: goldenTime, GPUs: []GPUSample{g("h.gpu0", 2), g("h.gpu1", 3)}},
	}
	for name, samples := range map[string][]TelemetrySample{"ten": ten, "uneven": uneven, "fooled": fooled} {
		data, err := Seal(key, "gw-1", 1, goldenTime, KindTelemetry, Telemetry{Host: "h", Samples: samples})
		if err != nil {
			t.Fatal(err)
		}
		env, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeTelemetry(&env)
		if err != nil {
			t.Fatalf("%s: DecodeTelemetry = %v", name, err)
		}
		var want Telemetry
		if err := json.Unmarshal(env.Body, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Samples, want.Samples) || got.Host != want.Host {
			t.Errorf("%s: DecodeTelemetry = %+v, want encoding/json's %+v", name, got, want)
		}
	}
}

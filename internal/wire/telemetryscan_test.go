package wire

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// goldenTelemetryBodies are the bodies of the golden telemetry envelopes in
// testdata, by file name.
func goldenTelemetryBodies(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for _, name := range []string{"telemetry.golden.json", "telemetry_samples.golden.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			tb.Fatal(err)
		}
		env, err := Decode(bytes.TrimSpace(data))
		if err != nil {
			tb.Fatalf("Decode(%s) = %v", name, err)
		}
		out[name] = env.Body
	}
	return out
}

// checkScanTelemetry fails t where scanTelemetry says ok on body and the
// general path fails or gives another value.
func checkScanTelemetry(t *testing.T, body []byte) (ok bool) {
	t.Helper()
	fast, ok := scanTelemetry(body)
	want, err := unmarshalTelemetry(body)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("scanTelemetry(%q) ok, the general path fails: %v", body, err)
	}
	if len(want.Samples) == 0 && fast.Samples == nil {
		// presize's guess left an empty Samples where the body has none;
		// normalize takes nil and empty alike.
		want.Samples = nil
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("scanTelemetry(%q) = %+v, the general path gives %+v", body, fast, want)
	}
	return true
}

// telemetryMutations are bodies around the golden ones that the scanner
// must decline, or decode as encoding/json does.
var telemetryMutations = []string{
	`{"host":"srv-s1-001","gpus":[]}`,
	`{"host":"srv-s1-001","samples":[]}`,
	`{}`,
	` {"host" : "h" , "gpus" : [ { "asset" : "a" , "xids" : [ 1 , 2 ] , "throttle" : [ "power_cap" , "other" ] } ] } `,
	"{\"host\":\"h\"}\n\t\r",
	`{"host":"h"}x`,
	`{"host":"h"}{}`,
	`{"host":"h"`,
	`{"host":"h",}`,
	`[]`,
	`"h"`,
	`{"Host":"h"}`,
	`{"HOST":"h","host":"g"}`,
	`{"host":"h","gpus":[{"ASSET":"a"}]}`,
	`{"host":"h","gpus":[{"tempc":1}]}`,
	`{"host":"h","gpus":[{"temp-c":1}]}`,
	`{"host":"h","gpus":[{"_temp_c":1}]}`,
	`{"host":"h","host":"g"}`,
	`{"host":"h","gpus":[],"gpus":[{"asset":"a"}]}`,
	`{"host":"h","gpus":[{"asset":"a","asset":"b"}]}`,
	`{"host":"h","gpus":[{"xids":[1],"xids":[2]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00Z","ts":"2026-11-25T12:00:01Z","gpus":[]}]}`,
	`{"host":"srv\u0041"}`,
	`{"host":"a\"b"}`,
	`{"host":"a\\b"}`,
	`{"host":"srvé"}`,
	"{\"host\":\"\xff\"}",
	"{\"host\":\"a\tb\"}",
	`{"host":null}`,
	`{"host":"h","gpus":null}`,
	`{"host":"h","samples":null}`,
	`{"host":"h","samples":[{"ts":null,"gpus":[]}]}`,
	`{"host":"h","gpus":[{"xids":null,"throttle":null,"temp_c":null}]}`,
	`{"host":"h","gpus":[null]}`,
	`{"host":"h","gpus":[{"ecc_sbe":18446744073709551615}]}`,
	`{"host":"h","gpus":[{"ecc_sbe":18446744073709551616}]}`,
	`{"host":"h","gpus":[{"ecc_sbe":9999999999999999999}]}`,
	`{"host":"h","gpus":[{"ecc_sbe":99999999999999999999}]}`,
	`{"host":"h","gpus":[{"ecc_sbe":100000000000000000000}]}`,
	`{"host":"h","gpus":[{"index":9223372036854775807}]}`,
	`{"host":"h","gpus":[{"index":9223372036854775808}]}`,
	`{"host":"h","gpus":[{"index":-9223372036854775808}]}`,
	`{"host":"h","gpus":[{"index":-9223372036854775809}]}`,
	`{"host":"h","gpus":[{"index":1.0}]}`,
	`{"host":"h","gpus":[{"index":1e2}]}`,
	`{"host":"h","gpus":[{"index":-0}]}`,
	`{"host":"h","gpus":[{"index":01}]}`,
	`{"host":"h","gpus":[{"index":"1"}]}`,
	`{"host":"h","gpus":[{"ecc_sbe":-1}]}`,
	`{"host":"h","gpus":[{"ecc_sbe":-0}]}`,
	`{"host":"h","gpus":[{"temp_c":-0}]}`,
	`{"host":"h","gpus":[{"temp_c":1e400}]}`,
	`{"host":"h","gpus":[{"temp_c":-1e-400}]}`,
	`{"host":"h","gpus":[{"temp_c":1.}]}`,
	`{"host":"h","gpus":[{"temp_c":.5}]}`,
	`{"host":"h","gpus":[{"temp_c":123456789012345678}]}`,
	`{"host":"h","gpus":[{"temp_c":0.1e+2,"power_w":2E-3}]}`,
	`{"host":"h","gpus":[{"row_remap_failure":true}]}`,
	`{"host":"h","gpus":[{"row_remap_failure":1}]}`,
	`{"host":"h","gpus":[{"xids":[1.5]}]}`,
	`{"host":"h","gpus":[{"xids":[1,2,3,4,5,6,7,8,9,10]}]}`,
	`{"host":"h","gpus":[{"throttle":["a","b","c","d","e","f","g","h","i","j"]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00+01:00","gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00.5-07:30","gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25t12:00:00z","gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00,5Z","gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-02-30T12:00:00Z","gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T24:00:00Z","gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00+24:00","gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00.1234567890Z","gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00Z"}]}`,
	`{"host":"h","samples":[{"gpus":[]}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00Z","gpus":[]},{"ts":"2026-11-25T12:00:01Z"}]}`,
	`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00Z","gpus":[{"asset":"a"}]}],"gpus":[{"asset":"b"}]}`,
	`{"host":"h","extra":{"a":[1,-2.5e3,true,false,null,"s",{"b":{}}],"a":[]},"gpus":[{"asset":"a","new":[[]]}]}`,
	`{"host":"h","x":{"ts":1,"ts":2,"asset":0},"gpus":[]}`,
	`{"host":"h","x":"\u0041"}`,
	`{"host":"h","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"host":"h","x":tru}`,
	`{"host":"h","x":-}`,
	`{"host":"h","x":{"a" 1}}`,
	`{"host":"h","x":{1:1}}`,
}

func TestScanTelemetryDecodesAsEncodingJSON(t *testing.T) {
	testScanner(t, checkScanTelemetry, goldenTelemetryBodies(t), telemetryMutations)
}

// TestScanTelemetryDeclines checks that the scanner declines what its
// policy says it declines, even where it could have decoded it.
func TestScanTelemetryDeclines(t *testing.T) {
	for _, body := range []string{
		`{"Host":"h"}`,
		`{"host":"h","gpus":[{"temp-c":1}]}`,
		`{"host":"h","host":"g"}`,
		`{"host":"srv\u0041"}`,
		`{"host":"srvé"}`,
		`{"host":"h","gpus":null}`,
		`{"host":"h","gpus":[{"index":1.0}]}`,
		`{"host":"h","gpus":[{"index":-0}]}`,
		`{"host":"h","gpus":[{"ecc_sbe":-1}]}`,
		`{"host":"h","gpus":[{"ecc_sbe":18446744073709551616}]}`,
		`{"host":"h"}x`,
		`{"host":"h","samples":[{"ts":"2026-11-25T12:00:00Z"}]}`,
		`{"host":"h","samples":[{"ts":"2026-11-25 12:00:00Z","gpus":[]}]}`,
	} {
		if got, ok := scanTelemetry([]byte(body)); ok {
			t.Errorf("scanTelemetry(%s) = %+v, ok; want declined", body, got)
		}
	}
}

// FuzzDecodeTelemetryFast: where the scanner says ok, the general path
// succeeds with the same value; where the general path fails, the scanner
// declines.
func FuzzDecodeTelemetryFast(f *testing.F) {
	fuzzScanner(f, checkScanTelemetry, goldenTelemetryBodies(f), telemetryMutations)
}

// benchTelemetry is an envelope of a body of n samples of 8 GPUs, in the
// one-sample form for n = 1. Each GPU has its own UUID, as in a real host.
func benchTelemetry(tb testing.TB, n int) []byte {
	tel := Telemetry{Host: "srv-s1-001"}
	for i := range n {
		s := TelemetrySample{TS: goldenTime.Add(time.Duration(i-n+1) * time.Second)}
		for j := range 8 {
			s.GPUs = append(s.GPUs, GPUSample{Asset: fmt.Sprintf("srv-s1-001.gpu%d", j), Index: j, UUID: fmt.Sprintf("GPU-6f0b8e12-3c4d-4e5f-8a9b-0c1d2e3f4a5%d", j), TempC: 61, MemTempC: 72, PowerW: 412.5, PowerLimitW: 700, UtilPct: 87, MemUtilPct: 54, SMClockMHz: 1980, MemClockMHz: 2619, ECCSingleBit: 3, RemappedRows: 1, Throttle: []string{ThrottlePowerCap}})
		}
		tel.Samples = append(tel.Samples, s)
	}
	if n == 1 {
		tel.GPUs, tel.Samples = tel.Samples[0].GPUs, nil
	}
	data, err := Seal(testKey(), "gw-s1-01", 1, goldenTime, KindTelemetry, tel)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// BenchmarkDecodeTelemetry compares DecodeTelemetry's general path
// (encoding/json's rules, as before the scanner) with the scanner, on the
// body of 10 samples of 8 GPUs (the one measured in docs/performance.md) and
// of one sample.
func BenchmarkDecodeTelemetry(b *testing.B) {
	for _, n := range []int{10, 1} {
		env, err := Decode(benchTelemetry(b, n))
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := scanTelemetry(env.Body); !ok {
			b.Fatalf("scanTelemetry declines the %d-sample body", n)
		}
		benchDecode(b, fmt.Sprintf("%dx8/generic", n), len(env.Body), func() error {
			t, err := unmarshalTelemetry(env.Body)
			if err != nil {
				return err
			}
			return t.normalize(env.Time)
		})
		benchDecode(b, fmt.Sprintf("%dx8/fast", n), len(env.Body), func() error {
			_, err := DecodeTelemetry(&env)
			return err
		})
	}
}

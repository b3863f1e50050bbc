package wire

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"twinchain/internal/fastjson"
)

// checkScanEnvelope fails t where scanEnvelope says ok on data and
// fastjson fails or gives another value.
func checkScanEnvelope(t *testing.T, data []byte) (ok bool) {
	t.Helper()
	fast, ok := scanEnvelope(data)
	var want Envelope
	err := fastjson.Unmarshal(data, &want)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("scanEnvelope(%q) ok, fastjson fails: %v", data, err)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("scanEnvelope(%q) = %+v, fastjson gives %+v", data, fast, want)
	}
	return true
}

// goldenEnvelopes are the golden envelopes in testdata, of every kind, by
// file name.
func goldenEnvelopes(tb testing.TB) map[string][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("golden envelopes: %v, %d files", err, len(paths))
	}
	out := map[string][]byte{}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(path)] = bytes.TrimSpace(data)
	}
	return out
}

const testSig = `"C4ccF6cXicPEkMV2QQOYlqx7IrP6rS/pBp2FYGgRyI66GYkP+SBt5opCher9u7el0/fpu1bK3+tYBKIqz++BBA=="`

// envelopeMutations are envelopes the scanner must decline, or decode as
// fastjson does.
var envelopeMutations = []string{
	`{"v":1,"gw":"g","epoch":1,"seq":2,"ts":"t","kind":"status","body":{},"sig":` + testSig + `}`,
	` { "v" : 1 , "body" : { "a" : [ 1 , { } ] , "b" : "c" } , "sig" : ` + testSig + ` } `,
	"{\"v\":1,\"body\":{\"a\":\n1}}\n",
	`{"v":1,"body":null}`,
	`{"v":1,"body":[]}`,
	`{"v":1,"body":"{}"}`,
	`{"v":1,"body":{"a":"\u0041"}}`,
	`{"v":1,"body":{"a":"é"}}`,
	`{"v":1,"body":{"a":}}`,
	`{"v":1,"body":{}`,
	`{"v":1,"sig":""}`,
	`{"v":1,"sig":"YQ"}`,
	`{"v":1,"sig":"YQ=="}`,
	`{"v":1,"sig":"YQ=\n="}`,
	`{"v":1,"sig":"Y Q=="}`,
	`{"v":1,"sig":"-_8="}`,
	`{"v":1,"sig":null}`,
	`{"v":1,"sig":[1]}`,
	`{"V":1}`,
	`{"v":1,"v":2}`,
	`{"v":1.0}`,
	`{"v":-1,"epoch":-1}`,
	`{"v":1,"epoch":18446744073709551615}`,
	`{"v":1,"seq":18446744073709551616}`,
	`{"v":1,"kind":"telemetry"}`,
	`{"v":1,"kind":"pizza"}`,
	`{"v":1,"kind":"Telemetry"}`,
	`{"v":1,"time":"2026-11-25T12:00:00Z","Time":1,"-":2}`,
	`{"v":1,"g_w":"g"}`,
	`{"v":1,"ts":null}`,
	`{"v":1}x`,
	`{"v":1}{}`,
	`[]`,
}

func TestScanEnvelopeDecodesAsFastjson(t *testing.T) {
	testScanner(t, checkScanEnvelope, goldenEnvelopes(t), envelopeMutations)
}

// FuzzDecodeEnvelopeFast: where the scanner says ok, fastjson succeeds
// with the same value; where fastjson fails, the scanner declines.
func FuzzDecodeEnvelopeFast(f *testing.F) {
	fuzzScanner(f, checkScanEnvelope, goldenEnvelopes(f), envelopeMutations)
}

// BenchmarkDecodeEnvelope compares the parse of an envelope, fastjson's
// (what Decode did) and the scanner's, and times Decode as a whole, on
// envelopes of 10 samples and of one sample of 8 GPUs.
func BenchmarkDecodeEnvelope(b *testing.B) {
	for _, n := range []int{10, 1} {
		data := benchTelemetry(b, n)
		if _, ok := scanEnvelope(data); !ok {
			b.Fatalf("scanEnvelope declines the %d-sample envelope", n)
		}
		benchDecode(b, fmt.Sprintf("%dx8/generic", n), len(data), func() error {
			var e Envelope
			return fastjson.Unmarshal(data, &e)
		})
		benchDecode(b, fmt.Sprintf("%dx8/fast", n), len(data), func() error {
			if _, ok := scanEnvelope(data); !ok {
				return errors.New("declined")
			}
			return nil
		})
		benchDecode(b, fmt.Sprintf("%dx8/Decode", n), len(data), func() error {
			_, err := Decode(data)
			return err
		})
	}
}

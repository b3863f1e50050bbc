package fastjson_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"twinchain/internal/fastjson"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
	"twinchain/internal/wire"
)

// TestSameAsEncodingJSON: the bytes stored and the values read are
// encoding/json's, for what the hot paths store (twins, events) and read
// (envelopes, bodies), including what v2 would do differently by default
// (nil slices, omitempty numbers, HTML, case-insensitive and duplicate
// names, invalid UTF-8).
func TestSameAsEncodingJSON(t *testing.T) {
	ts := time.Date(2026, 12, 5, 8, 0, 0, 123456789, time.UTC)
	values := []any{
		&twin.Asset{ID: "srv-1.gpu0", Kind: twin.KindGPU, Site: "s<1>&", Revision: 3, Updated: ts, LastSeen: ts,
			Health: twin.Health{State: "ok", Samples: 7, Latest: &wire.GPUSample{Asset: "srv-1.gpu0", TempC: 61.25, PowerW: 1e21, Throttle: []string{"power_cap"}}}},
		&twin.Asset{ID: "empty"},
		&twin.Event{ID: 9, Asset: "a", Revision: 1, Type: "registered", Time: ts, Recorded: ts, Changes: []twin.Change{{Field: "site", Old: "", New: "\u2028x"}}},
		&twin.Event{ID: 10, Asset: "b", Time: ts},
		&twinstore.GatewayState{Gateway: "gw<1>", Epoch: 1 << 63, Highest: 7, LastSeen: ts, DroppedSeqs: [2]uint64{3, 4}, Pos: 9},
		&twinstore.GatewayState{Gateway: "gw-2"},
	}
	for _, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fastjson.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("Marshal(%T):\n got %s\nwant %s", v, got, want)
		}
		back, want2 := reflect.New(reflect.TypeOf(v).Elem()).Interface(), reflect.New(reflect.TypeOf(v).Elem()).Interface()
		if err := fastjson.Unmarshal(want, back); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, want2); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, want2) {
			t.Errorf("Unmarshal(%T) = %+v, want %+v", v, back, want2)
		}
	}
	for _, in := range []string{
		`{"host":"h","GPUS":[{"asset":"a","temp_c":1.5}],"host":"h2"}`,
		"{\"host\":\"\xff\"}",
		`{"host":"h","gpus":null}`,
	} {
		var got, want wire.Telemetry
		gerr, werr := fastjson.Unmarshal([]byte(in), &got), json.Unmarshal([]byte(in), &want)
		if (gerr == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("Unmarshal(%s) = %+v, %v; encoding/json: %+v, %v", in, got, gerr, want, werr)
		}
	}
	for _, in := range []string{`{"host":`, `{"gpus":[{"temp_c":"hot"}]}`, `[]`} {
		var got wire.Telemetry
		if err := fastjson.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("Unmarshal(%s) = nil error, want one", in)
		}
	}
}

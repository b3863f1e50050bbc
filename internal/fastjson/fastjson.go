// Package fastjson is encoding/json's Marshal and Unmarshal (the same
// bytes out, the same values in, v1's rules: case-insensitive names,
// duplicate names, invalid UTF-8 replaced, HTML escaped) run by
// go-json-experiment/json, the engine of Go's encoding/json/v2, which takes
// about half the CPU and allocations. It is for the per-message paths:
// every envelope decoded, every event and twin stored.
package fastjson

import (
	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

var v1 = jsonv1.DefaultOptionsV1()

// Unmarshal is encoding/json.Unmarshal (error texts differ).
func Unmarshal(data []byte, v any) error { return jsonv2.Unmarshal(data, v, v1) }

// Marshal is encoding/json.Marshal.
func Marshal(v any) ([]byte, error) { return jsonv2.Marshal(v, v1) }

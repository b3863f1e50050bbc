package influxstore

import (
	"strconv"

	"twinchain/internal/telemetry"
)

// appendLine appends p as one line of InfluxDB line protocol:
//
//	gpu,asset=srv-s1-001.gpu3,gateway=gw-srv-s1-001,kind=gpu,site=s1 temp_c=61,power_w=412.5 1764072000123456789
//
// Tags are in key order and empty ones left out; every field is a float.
// The point must be valid (telemetry.Point.Validate): its names and tag
// values then need no escaping.
func appendLine(dst []byte, p *telemetry.Point) []byte {
	dst = append(dst, p.Measurement...)
	dst = appendTag(dst, "asset", p.Asset)
	dst = appendTag(dst, "gateway", p.Tags.Gateway)
	dst = appendTag(dst, "kind", p.Tags.Kind)
	dst = appendTag(dst, "site", p.Tags.Site)
	for i, f := range p.Fields {
		if i == 0 {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, ',')
		}
		dst = append(dst, f.Name...)
		dst = append(dst, '=')
		dst = strconv.AppendFloat(dst, f.Value, 'g', -1, 64)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, p.Time.UnixNano(), 10)
	return append(dst, '\n')
}

func appendTag(dst []byte, key, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',')
	dst = append(dst, key...)
	dst = append(dst, '=')
	return append(dst, value...)
}

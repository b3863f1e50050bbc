package telemetrywriter

import (
	"slices"
	"time"

	"twinchain/internal/telemetry"
	"twinchain/internal/wire"
)

// MeasurementGPU is the measurement of GPU samples.
const MeasurementGPU = "gpu"

// gpuFieldCount is the most fields one GPU sample becomes.
const gpuFieldCount = 13

// AppendGPUPoints appends one point per GPU per sample of a telemetry
// message to pts, taking the fields' storage from fields (grown as needed)
// so that a batch of messages costs one allocation, and returns both. A
// point's time is its sample's (wire.DecodeTelemetry's Samples; the
// envelope's for a body in the one-sample form), unique per GPU.
//
// Fields: temp_c, mem_temp_c (only when reported), power_w, util_pct,
// mem_util_pct, sm_clock_mhz, mem_clock_mhz, ecc_sbe, ecc_dbe, xid_count,
// pcie_replays, retired_pages, remapped_rows. Tags: the gateway that sent
// it, its site, kind "gpu".
func AppendGPUPoints(pts []telemetry.Point, fields []telemetry.Field, env *wire.Envelope, body *wire.Telemetry, site string) ([]telemetry.Point, []telemetry.Field) {
	tags := telemetry.Tags{Site: site, Gateway: env.Gateway, Kind: "gpu"}
	if len(body.Samples) == 0 {
		return appendSample(pts, fields, tags, env.Time, body.GPUs)
	}
	n := 0
	for j := range body.Samples {
		n += len(body.Samples[j].GPUs)
	}
	pts = slices.Grow(pts, n)
	for j := range body.Samples {
		pts, fields = appendSample(pts, fields, tags, body.Samples[j].TS, body.Samples[j].GPUs)
	}
	return pts, fields
}

func appendSample(pts []telemetry.Point, fields []telemetry.Field, tags telemetry.Tags, at time.Time, gpus []wire.GPUSample) ([]telemetry.Point, []telemetry.Field) {
	for i := range gpus {
		g := &gpus[i]
		if len(fields)+gpuFieldCount > cap(fields) {
			// Earlier points keep the old backing array; start a new one.
			fields = make([]telemetry.Field, 0, max(64*gpuFieldCount, 2*cap(fields)))
		}
		start := len(fields)
		fields = append(fields,
			telemetry.Field{Name: "temp_c", Value: g.TempC},
			telemetry.Field{Name: "power_w", Value: g.PowerW},
			telemetry.Field{Name: "util_pct", Value: g.UtilPct},
			telemetry.Field{Name: "mem_util_pct", Value: g.MemUtilPct},
			telemetry.Field{Name: "sm_clock_mhz", Value: float64(g.SMClockMHz)},
			telemetry.Field{Name: "mem_clock_mhz", Value: float64(g.MemClockMHz)},
			telemetry.Field{Name: "ecc_sbe", Value: float64(g.ECCSingleBit)},
			telemetry.Field{Name: "ecc_dbe", Value: float64(g.ECCDoubleBit)},
			telemetry.Field{Name: "xid_count", Value: float64(g.XIDCount)},
			telemetry.Field{Name: "pcie_replays", Value: float64(g.PCIeReplays)},
			telemetry.Field{Name: "retired_pages", Value: float64(g.RetiredPages)},
			telemetry.Field{Name: "remapped_rows", Value: float64(g.RemappedRows)},
		)
		if g.MemTempC != 0 {
			fields = append(fields, telemetry.Field{Name: "mem_temp_c", Value: g.MemTempC})
		}
		pts = append(pts, telemetry.Point{
			Measurement: MeasurementGPU,
			Asset:       g.Asset,
			Tags:        tags,
			Fields:      fields[start:len(fields):len(fields)],
			Time:        at,
		})
	}
	return pts, fields
}

package telemetrywriter

import (
	"twinchain/internal/telemetry"
	"twinchain/internal/wire"
)

// MeasurementGPU is the measurement of GPU samples.
const MeasurementGPU = "gpu"

// gpuFieldCount is the most fields one GPU sample becomes.
const gpuFieldCount = 13

// AppendGPUPoints appends one point per GPU of a telemetry message to pts,
// taking the fields' storage from fields (grown as needed) so that a batch
// of messages costs one allocation, and returns both. The point's time is
// the envelope's (the sampling instant), unique per GPU.
//
// Fields: temp_c, mem_temp_c (only when reported), power_w, util_pct,
// mem_util_pct, sm_clock_mhz, mem_clock_mhz, ecc_sbe, ecc_dbe, xid_count,
// pcie_replays, retired_pages, remapped_rows. Tags: the gateway that sent
// it, its site, kind "gpu".
func AppendGPUPoints(pts []telemetry.Point, fields []telemetry.Field, env *wire.Envelope, body *wire.Telemetry, site string) ([]telemetry.Point, []telemetry.Field) {
	for i := range body.GPUs {
		g := &body.GPUs[i]
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
			Tags:        telemetry.Tags{Site: site, Gateway: env.Gateway, Kind: "gpu"},
			Fields:      fields[start:len(fields):len(fields)],
			Time:        env.Time,
		})
	}
	return pts, fields
}

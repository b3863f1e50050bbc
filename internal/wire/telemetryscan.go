package wire

import "time"

// scanTelemetry is DecodeTelemetry's fast path: one pass over a telemetry
// body of the shape agents send, with no reflection. It gives what
// unmarshalTelemetry (encoding/json's v1 rules) gives, or ok false whenever
// the body holds anything it does not handle exactly; the caller then takes
// the general path, so odd bodies get today's values and error texts.
//
// It declines: a name that differs from a known one only in case, '_' or
// '-', or that repeats a known one in the same object; a string with an
// escape, a control byte or a byte of 0x80 or more; null; a number its field
// cannot hold as written (a fraction or exponent for an int, a minus for a
// uint64, -0 for an int, too large); a ts that is not
// 2006-01-02T15:04:05[.999999999](Z|±07:00); a sample without gpus; nesting
// deeper than maxSkipDepth in an unknown member; and anything after the
// body's object but whitespace. Unknown members are skipped, as encoding/json
// does.
func scanTelemetry(body []byte) (t Telemetry, ok bool) {
	s := telemetryScanner{scanner: scanner{b: body}}
	if !s.telemetry(&t) {
		return Telemetry{}, false
	}
	return t, true
}

// telemetryScanner reads one body. Its arrays are scratch space: a slice is
// gathered in one (or, past its length, in a slice grown from it) and copied
// into an allocation of its exact length, so a message's slices are not grown
// append by append, and each sample's GPUs get their own backing array (a
// twin's latest readings point into the newest sample's and keep only that
// one alive).
//
// The strings of a GPU's identity are shared with the previous sample's GPU
// at the same index where they are equal, as they are in every sample but
// the first: a several-sample body allocates them once (encoding/json's
// engine caches short strings for the same reason).
type telemetryScanner struct {
	scanner
	prev    []GPUSample // the GPUs of the sample before, if any
	samples [MaxSamples]TelemetrySample
	gpus    [16]GPUSample
	xids    [MaxRecentXIDs]int
	strs    [8]string
}

func (s *telemetryScanner) telemetry(t *Telemetry) bool {
	s.space()
	_, ok := s.object(func(name []byte) (bit int, ok bool) {
		switch string(name) {
		case "host":
			t.Host, ok = s.str()
			return 0, ok
		case "gpus":
			t.GPUs, ok = s.gpuList()
			return 1, ok
		case "samples":
			t.Samples, ok = list(&s.scanner, s.samples[:0], s.sample)
			return 2, ok
		}
		return -1, !foldsToAny(name, "host", "gpus", "samples") && s.skip(0)
	})
	s.space()
	return ok && s.i == len(s.b)
}

func (s *telemetryScanner) sample(int) (ts TelemetrySample, ok bool) {
	seen, ok := s.object(func(name []byte) (bit int, ok bool) {
		switch string(name) {
		case "ts":
			return 0, s.time(&ts.TS)
		case "gpus":
			ts.GPUs, ok = s.gpuList()
			return 1, ok
		}
		return -1, !foldsToAny(name, "ts", "gpus") && s.skip(0)
	})
	// Without gpus the general path leaves presize's empty slice or nil,
	// depending on its guess: decline rather than guess the same.
	return ts, ok && seen&(1<<1) != 0
}

func (s *telemetryScanner) gpuList() ([]GPUSample, bool) {
	gpus, ok := list(&s.scanner, s.gpus[:0], s.gpu)
	s.prev = gpus
	return gpus, ok
}

// gpuNames are GPUSample's JSON names.
var gpuNames = [...]string{"asset", "index", "uuid", "temp_c", "mem_temp_c", "power_w", "power_limit_w",
	"util_pct", "mem_util_pct", "sm_clock_mhz", "mem_clock_mhz", "ecc_sbe", "ecc_dbe", "retired_pages",
	"remapped_rows", "row_remap_failure", "last_xid", "xid_count", "xids", "throttle", "pcie_replays"}

// gpu decodes the readings of the i-th GPU of a sample.
func (s *telemetryScanner) gpu(i int) (g GPUSample, ok bool) {
	var asset, uuid string // the same GPU's in the sample before
	if i < len(s.prev) {
		asset, uuid = s.prev[i].Asset, s.prev[i].UUID
	}
	_, ok = s.object(func(name []byte) (bit int, ok bool) {
		switch string(name) {
		case "asset":
			g.Asset, ok = s.strLike(asset)
			return 0, ok
		case "index":
			g.Index, ok = s.int()
			return 1, ok
		case "uuid":
			g.UUID, ok = s.strLike(uuid)
			return 2, ok
		case "temp_c":
			g.TempC, ok = s.float()
			return 3, ok
		case "mem_temp_c":
			g.MemTempC, ok = s.float()
			return 4, ok
		case "power_w":
			g.PowerW, ok = s.float()
			return 5, ok
		case "power_limit_w":
			g.PowerLimitW, ok = s.float()
			return 6, ok
		case "util_pct":
			g.UtilPct, ok = s.float()
			return 7, ok
		case "mem_util_pct":
			g.MemUtilPct, ok = s.float()
			return 8, ok
		case "sm_clock_mhz":
			g.SMClockMHz, ok = s.int()
			return 9, ok
		case "mem_clock_mhz":
			g.MemClockMHz, ok = s.int()
			return 10, ok
		case "ecc_sbe":
			g.ECCSingleBit, ok = s.uint()
			return 11, ok
		case "ecc_dbe":
			g.ECCDoubleBit, ok = s.uint()
			return 12, ok
		case "retired_pages":
			g.RetiredPages, ok = s.int()
			return 13, ok
		case "remapped_rows":
			g.RemappedRows, ok = s.int()
			return 14, ok
		case "row_remap_failure":
			g.RowRemapFailure, ok = s.bool()
			return 15, ok
		case "last_xid":
			g.LastXID, ok = s.int()
			return 16, ok
		case "xid_count":
			g.XIDCount, ok = s.uint()
			return 17, ok
		case "xids":
			g.XIDs, ok = list(&s.scanner, s.xids[:0], func(int) (int, bool) { return s.int() })
			return 18, ok
		case "throttle":
			g.Throttle, ok = list(&s.scanner, s.strs[:0], func(int) (string, bool) {
				raw, ok := s.quoted()
				return throttleString(raw), ok
			})
			return 19, ok
		case "pcie_replays":
			g.PCIeReplays, ok = s.uint()
			return 20, ok
		}
		return -1, !foldsToAny(name, gpuNames[:]...) && s.skip(0)
	})
	return g, ok
}

// throttleString is b as a string, without an allocation for a known
// throttle reason.
func throttleString(b []byte) string {
	switch string(b) {
	case ThrottleGPUIdle:
		return ThrottleGPUIdle
	case ThrottleAppClocks:
		return ThrottleAppClocks
	case ThrottlePowerCap:
		return ThrottlePowerCap
	case ThrottleHWSlowdown:
		return ThrottleHWSlowdown
	case ThrottleSyncBoost:
		return ThrottleSyncBoost
	case ThrottleSWThermal:
		return ThrottleSWThermal
	case ThrottleHWThermal:
		return ThrottleHWThermal
	case ThrottleHWPowerBrake:
		return ThrottleHWPowerBrake
	case ThrottleDisplayClocks:
		return ThrottleDisplayClocks
	}
	return string(b)
}

// time consumes a string holding an RFC 3339 time of the form
// 2006-01-02T15:04:05[.999999999](Z|±07:00) and parses it as encoding/json
// does (time.Time.UnmarshalText).
func (s *telemetryScanner) time(t *time.Time) bool {
	raw, ok := s.quoted()
	if !ok || !rfc3339Shape(raw) {
		return false
	}
	return t.UnmarshalText(raw) == nil
}

// rfc3339Shape reports whether b is 2006-01-02T15:04:05, an optional
// fraction of 1 to 9 digits, and Z or an offset ±hh:mm with hh below 24 and
// mm below 60.
func rfc3339Shape(b []byte) bool {
	const layout = "dddd-dd-ddTdd:dd:dd"
	if len(b) < len(layout)+1 {
		return false
	}
	for i := 0; i < len(layout); i++ {
		if layout[i] == 'd' && !isDigit(b[i]) || layout[i] != 'd' && b[i] != layout[i] {
			return false
		}
	}
	rest := b[len(layout):]
	if rest[0] == '.' {
		j := 1
		for j < len(rest) && isDigit(rest[j]) {
			j++
		}
		if j == 1 || j > 10 {
			return false
		}
		rest = rest[j:]
	}
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
		return true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' &&
		isDigit(rest[1]) && isDigit(rest[2]) && isDigit(rest[4]) && isDigit(rest[5]):
		return (rest[1]-'0')*10+rest[2]-'0' < 24 && (rest[4]-'0')*10+rest[5]-'0' < 60
	}
	return false
}

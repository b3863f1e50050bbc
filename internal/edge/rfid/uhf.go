package rfid

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DefaultUHFPattern matches lines such as
// "EPC:E2801160600002084D6B1A3F RSSI:-57.5 ANT:2".
const DefaultUHFPattern = `^EPC:(?P<epc>[0-9A-Fa-f]+)\s+RSSI:(?P<rssi>-?[0-9]+(?:\.[0-9]+)?)\s+ANT:(?P<antenna>[0-9]+)\s*$`

// UHFLine is one tag read parsed from a UHF reader's line.
type UHFLine struct {
	EPC     string // upper-case hex
	RSSI    float64
	HasRSSI bool
	Antenna int
}

// UHFParser parses a UHF reader's lines with a configured regular expression
// whose named groups are epc (required), rssi and antenna (optional).
type UHFParser struct {
	re                *regexp.Regexp
	epc, rssi, antena int
}

// NewUHFParser compiles pattern; it must have a group named epc.
func NewUHFParser(pattern string) (*UHFParser, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("uhf line pattern: %w", err)
	}
	p := &UHFParser{re: re, epc: re.SubexpIndex("epc"), rssi: re.SubexpIndex("rssi"), antena: re.SubexpIndex("antenna")}
	if p.epc < 0 {
		return nil, fmt.Errorf("uhf line pattern %q: no group named epc (write (?P<epc>...))", pattern)
	}
	return p, nil
}

// Parse parses one line. An EPC must be 4 to 124 hex characters, an even
// number; RSSI between -128 and 0 dBm; the antenna 0 to 255.
func (p *UHFParser) Parse(line []byte) (UHFLine, error) {
	m := p.re.FindSubmatchIndex(line)
	if m == nil {
		return UHFLine{}, fmt.Errorf("uhf line does not match the pattern: %w", ErrFrame)
	}
	group := func(i int) string {
		if i < 0 || m[2*i] < 0 {
			return ""
		}
		return string(line[m[2*i]:m[2*i+1]])
	}
	var r UHFLine
	epc := group(p.epc)
	if len(epc) < 4 || len(epc) > 124 || len(epc)%2 != 0 {
		return UHFLine{}, fmt.Errorf("uhf epc of %d characters: %w", len(epc), ErrFrame)
	}
	for i := 0; i < len(epc); i++ {
		if _, ok := unhex(epc[i]); !ok {
			return UHFLine{}, fmt.Errorf("uhf epc: non-hex character: %w", ErrFrame)
		}
	}
	r.EPC = strings.ToUpper(epc)
	if s := group(p.rssi); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < -128 || v > 0 {
			return UHFLine{}, fmt.Errorf("uhf rssi %q: %w", s, ErrFrame)
		}
		r.RSSI, r.HasRSSI = v, true
	}
	if s := group(p.antena); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > 255 {
			return UHFLine{}, fmt.Errorf("uhf antenna %q: %w", s, ErrFrame)
		}
		r.Antenna = v
	}
	return r, nil
}

// FormatUHFLine writes a read the way DefaultUHFPattern expects it.
// firmware-sim uses it to play a UHF reader.
func FormatUHFLine(epc string, rssi float64, antenna int) string {
	return fmt.Sprintf("EPC:%s RSSI:%.1f ANT:%d\r\n", epc, rssi, antenna)
}

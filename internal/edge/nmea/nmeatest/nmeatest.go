// Package nmeatest reads gpsd's regression files for tests: a receiver's
// capture (X.log) and what gpsd reported from it (X.log.chk), to check an
// NMEA path against gpsd's fixes. Tests only.
package nmeatest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	gonmea "github.com/adrianmo/go-nmea"
)

// rollover is the GPS week-number period, nmea.Rollover (not imported:
// package nmea's own tests use this package).
const rollover = 1024 * 7 * 24 * time.Hour

// Epoch is gpsd's fix for one instant: its last report with a fix for that
// time (gpsd repeats the previous time, without a fix, on the first
// sentence of a new epoch), and the HDOP and satellites-used values of the
// SKY reports that follow that instant's sentences.
type Epoch struct {
	Time   time.Time // zero in Untimed
	Mode   int
	Status int
	Lat    *float64
	Lon    *float64
	AltMSL *float64
	Speed  *float64
	Track  *float64
	HDOP   []float64 // the receiver's (GGA's, GSA's); gpsd's own dilutions left out
	USat   []int
}

// Fix reports whether gpsd had a real position (status 8 is a simulator's
// output, which the agent refuses).
func (e Epoch) Fix() bool { return e.Mode >= 2 && e.Lat != nil && e.Lon != nil && e.Status != 8 }

// Expected is what gpsd reported for one capture.
type Expected struct {
	Epochs  map[time.Time]Epoch // by time
	Untimed []Epoch             // fixes gpsd reported without a time (it had no date yet)
}

// Fixes returns the epochs with a fix.
func (x Expected) Fixes() []Epoch {
	var out []Epoch
	for _, e := range x.Epochs {
		if e.Fix() {
			out = append(out, e)
		}
	}
	return out
}

type report struct {
	Class  string   `json:"class"`
	Mode   int      `json:"mode"`
	Status int      `json:"status"`
	Time   string   `json:"time"`
	Lat    *float64 `json:"lat"`
	Lon    *float64 `json:"lon"`
	AltMSL *float64 `json:"altMSL"`
	Speed  *float64 `json:"speed"`
	Track  *float64 `json:"track"`
	HDOP   *float64 `json:"hdop"`
	XDOP   *float64 `json:"xdop"` // only in gpsd's own dilutions
	USat   *int     `json:"uSat"`
	Sats   []any    `json:"satellites"`
}

// ReadChk reads a .chk file. gpsd's times before floor are moved forward
// by 1024-week periods as gpsd does when it runs live (its regression mode
// did not always); a zero floor keeps them.
func ReadChk(path string, floor time.Time) (Expected, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Expected{}, err
	}
	x := Expected{Epochs: map[time.Time]Epoch{}}
	// A SKY report belongs to the instant of the timed sentence before it
	// (gpsd writes it before or after that instant's TPV).
	hdops := map[time.Duration][]float64{}
	usats := map[time.Duration][]int{}
	var cur time.Duration
	for n, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ","); len(f) > 5 && len(f[0]) == 6 && f[0][0] == '$' {
			i := map[string]int{"GGA": 1, "RMC": 1, "ZDA": 1, "GNS": 1, "GLL": 5}[f[0][3:]]
			if tod, err := gonmea.ParseTime(f[i]); i > 0 && err == nil && tod.Valid {
				cur = TimeOfDay(tod)
			}
		}
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var v report
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			continue // a report of a class without these fields' types (e.g. a numeric "time")
		}
		switch v.Class {
		case "SKY":
			if v.HDOP != nil && v.XDOP == nil {
				hdops[cur] = append(hdops[cur], *v.HDOP)
			}
			if v.USat != nil && *v.USat > 0 && v.Sats == nil {
				usats[cur] = append(usats[cur], *v.USat)
			}
		case "TPV":
			e := Epoch{Mode: v.Mode, Status: v.Status, Lat: v.Lat, Lon: v.Lon, AltMSL: v.AltMSL, Speed: v.Speed, Track: v.Track}
			if v.Time == "" {
				if e.Fix() {
					x.Untimed = append(x.Untimed, e)
				}
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, v.Time)
			if err != nil {
				return Expected{}, fmt.Errorf("%s:%d: %w", path, n+1, err)
			}
			tod := at.Sub(at.Truncate(24 * time.Hour))
			e.HDOP, e.USat = hdops[tod], usats[tod]
			for i := 0; i < 8 && at.Before(floor); i++ {
				at = at.Add(rollover)
			}
			e.Time = at
			if prev, ok := x.Epochs[at]; !ok || e.Fix() || !prev.Fix() {
				x.Epochs[at] = e
			}
		}
	}
	return x, nil
}

// TimeOfDay is t since midnight.
func TimeOfDay(t gonmea.Time) time.Duration {
	return time.Duration(t.Hour)*time.Hour + time.Duration(t.Minute)*time.Minute +
		time.Duration(t.Second)*time.Second + time.Duration(t.Millisecond)*time.Millisecond
}

// Corpus returns the folder of the shared gpsd captures: env (the value of
// $TWINCHAIN_NMEA_CORPUS) if set, else ../shared/testdata/nmea beside the
// repository root or a folder above it, looked for from the test's
// directory; "" when there is none.
func Corpus(env string) string {
	dirs := []string{env}
	for up := ".."; len(up) <= len("../../../../../.."); up += "/.." {
		dirs = append(dirs, filepath.Join(up, "shared", "testdata", "nmea"))
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "README.md")); err == nil {
			return dir
		}
	}
	return ""
}

package devicesim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"twinchain/internal/edge/nmea"
	"twinchain/internal/edge/rfid"
)

// Waypoint is a point of a GPS route.
type Waypoint struct{ Lat, Lon float64 }

// SerialConfig is what the serial devices play.
type SerialConfig struct {
	Baud        int           // line speed of every device (9600)
	GPSInterval time.Duration // one epoch (RMC, GGA, GSA, VTG, GSV) per interval
	Route       []Waypoint    // driven at SpeedMS, back and forth
	SpeedMS     float64
	RFIDRate    float64  // tag reads per second, split over the two readers
	EMTags      []string // EM4100 ids the RDM6300 reads (10 hex)
	UHFTags     []string // EPCs the UHF reader reads
	Noise       bool     // now and then send bad checksums, torn frames and garbage
	Seed        uint64
}

// DefaultSerialConfig drives from a site's gate to its dock in Berlin and
// reads two tags at each reader.
func DefaultSerialConfig() SerialConfig {
	return SerialConfig{
		Baud: 9600, GPSInterval: time.Second, SpeedMS: 8, RFIDRate: 10,
		Route:   []Waypoint{{52.520008, 13.404954}, {52.521500, 13.407000}, {52.523100, 13.405100}},
		EMTags:  []string{"12003F7A2C", "0F00A1B2C3"},
		UHFTags: []string{"E2801160600002084D6B1A3F", "E2801160600002084D6B1A40"},
		Seed:    1,
	}
}

// SerialDevices are an RDM6300 reader, a UHF line reader and a u-blox GPS
// receiver on pseudo-terminals.
type SerialDevices struct {
	cfg                SerialConfig
	RDM6300, UHF, GPS  *PTY
	now                func() time.Time
	Sentences, Frames  int // written so far (read after Run returns)
	Lines, NoiseBursts int
}

// OpenSerialDevices opens the three pseudo-terminals.
func OpenSerialDevices(cfg SerialConfig, now func() time.Time) (*SerialDevices, error) {
	d := &SerialDevices{cfg: cfg, now: now}
	var err error
	if d.RDM6300, err = OpenPTY(cfg.Baud); err != nil {
		return nil, err
	}
	if d.UHF, err = OpenPTY(cfg.Baud); err != nil {
		d.Close()
		return nil, err
	}
	if d.GPS, err = OpenPTY(cfg.Baud); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Close closes the pseudo-terminals that are open. A simulator stopping has
// nothing to do when one fails to close.
func (d *SerialDevices) Close() {
	for _, p := range []*PTY{d.RDM6300, d.UHF, d.GPS} {
		if p != nil {
			_ = p.Close()
		}
	}
}

// Run plays the route and the tag reads until ctx ends.
func (d *SerialDevices) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.playGPS(ctx) })
	if d.cfg.RFIDRate > 0 {
		g.Go(func() error { return d.playRFID(ctx) })
	}
	return g.Wait()
}

func tick(ctx context.Context, every time.Duration, f func(i int) error) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		if err := f(i); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *SerialDevices) playRFID(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(d.cfg.Seed, 2))
	every := time.Duration(float64(time.Second) / d.cfg.RFIDRate)
	return tick(ctx, every, func(i int) error {
		if d.cfg.Noise && i%50 == 49 {
			d.NoiseBursts++
			// A bad checksum, a torn frame and line noise on the EM reader;
			// a garbled line on the UHF reader.
			if err := d.RDM6300.Write([]byte("\x0212003F7A2C7C\x03\x0212003F\xff\x80\x00")); err != nil {
				return err
			}
			return d.UHF.Write([]byte("EPC:E28011606000ZZ RSSI:-5x\r\n\xf8\xf8\xf8\r\n"))
		}
		if i%2 == 0 && len(d.cfg.EMTags) > 0 {
			f, err := rfid.EncodeRDM6300(d.cfg.EMTags[(i/2)%len(d.cfg.EMTags)])
			if err != nil {
				return err
			}
			d.Frames++
			return d.RDM6300.Write(f)
		}
		if len(d.cfg.UHFTags) == 0 {
			return nil
		}
		epc := d.cfg.UHFTags[(i/2)%len(d.cfg.UHFTags)]
		d.Lines++
		return d.UHF.Write([]byte(rfid.FormatUHFLine(epc, -45-rng.Float64()*30, 1+rng.IntN(4))))
	})
}

// position is where the route puts the receiver after driving for dt.
func (d *SerialDevices) position(dt time.Duration) (lat, lon, courseDeg float64) {
	r := d.cfg.Route
	if len(r) == 1 || d.cfg.SpeedMS == 0 {
		return r[0].Lat, r[0].Lon, 0
	}
	dist := dt.Seconds() * d.cfg.SpeedMS
	legs := make([]float64, len(r)-1)
	total := 0.0
	for i := range legs {
		legs[i] = metres(r[i], r[i+1])
		total += legs[i]
	}
	dist = math.Mod(dist, 2*total)
	forward := dist < total
	if !forward {
		dist = 2*total - dist
	}
	for i, l := range legs {
		if dist <= l || i == len(legs)-1 {
			f := math.Min(dist/l, 1)
			lat = r[i].Lat + (r[i+1].Lat-r[i].Lat)*f
			lon = r[i].Lon + (r[i+1].Lon-r[i].Lon)*f
			a, b := r[i], r[i+1]
			if !forward {
				a, b = b, a
			}
			courseDeg = math.Mod(math.Atan2((b.Lon-a.Lon)*math.Cos(a.Lat*math.Pi/180), b.Lat-a.Lat)*180/math.Pi+360, 360)
			return lat, lon, courseDeg
		}
		dist -= l
	}
	return r[0].Lat, r[0].Lon, 0
}

func metres(a, b Waypoint) float64 {
	dy := (b.Lat - a.Lat) * 111320
	dx := (b.Lon - a.Lon) * 111320 * math.Cos(a.Lat*math.Pi/180)
	return math.Hypot(dx, dy)
}

func nmeaLat(v float64) string {
	h := "N"
	if v < 0 {
		h, v = "S", -v
	}
	deg := math.Floor(v)
	return fmt.Sprintf("%02.0f%08.5f,%s", deg, (v-deg)*60, h)
}

func nmeaLon(v float64) string {
	h := "E"
	if v < 0 {
		h, v = "W", -v
	}
	deg := math.Floor(v)
	return fmt.Sprintf("%03.0f%08.5f,%s", deg, (v-deg)*60, h)
}

// Epoch returns one u-blox style epoch of sentences for a fix at t.
func Epoch(t time.Time, lat, lon, speedMS, courseDeg float64) string {
	t = t.UTC()
	hms := t.Format("150405") + fmt.Sprintf(".%02d", t.Nanosecond()/1e7)
	date := t.Format("020106")
	knots := speedMS / (1852.0 / 3600)
	var b strings.Builder
	b.WriteString(nmea.Sentence(fmt.Sprintf("GNRMC,%s,A,%s,%s,%.3f,%.2f,%s,,,A,V", hms, nmeaLat(lat), nmeaLon(lon), knots, courseDeg, date)))
	b.WriteString(nmea.Sentence(fmt.Sprintf("GNVTG,%.2f,T,,M,%.3f,N,%.3f,K,A", courseDeg, knots, speedMS*3.6)))
	b.WriteString(nmea.Sentence(fmt.Sprintf("GNGGA,%s,%s,%s,1,12,0.58,34.2,M,45.0,M,,", hms, nmeaLat(lat), nmeaLon(lon))))
	b.WriteString(nmea.Sentence("GNGSA,A,3,29,20,18,16,51,13,44,26,,,,,0.99,0.58,0.83,1"))
	b.WriteString(nmea.Sentence("GPGSV,1,1,04,05,01,047,,10,29,224,31,13,22,062,23,15,40,094,38,1"))
	return b.String()
}

func (d *SerialDevices) playGPS(ctx context.Context) error {
	start := d.now()
	return tick(ctx, d.cfg.GPSInterval, func(i int) error {
		now := d.now()
		lat, lon, course := d.position(now.Sub(start))
		if d.cfg.Noise && i%10 == 9 {
			d.NoiseBursts++
			// A sentence with a bad checksum, a truncated one and garbage
			// from a receiver at another baud rate.
			bad := strings.Replace(nmea.Sentence("GPGGA,000000.00,0000.0000,N,00000.0000,E,1,04,9.9,0.0,M,,M,,"), "*", "0*", 1)
			if err := d.GPS.Write([]byte(bad + "$GNGGA,1203\r\n\xe6\x98\x1e\x86\xe0\x78\x9e\x66\x06\xf8\r\n")); err != nil {
				return err
			}
		}
		d.Sentences += 5
		return d.GPS.Write([]byte(Epoch(now, lat, lon, d.cfg.SpeedMS, course)))
	})
}

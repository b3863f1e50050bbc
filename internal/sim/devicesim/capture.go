package devicesim

import (
	"bytes"
	"context"
	"time"
)

// PlayCapture writes a recorded receiver's output to p, line by line at
// p's baud rate, and returns when it is all written or ctx ends. Lines
// starting with '#' are comments (gpsd's capture format) and are skipped;
// each line goes out ended by CR LF, its bytes as recorded (torn lines and
// noise included). Before each line whose time of fix differs from the last
// one seen, the line stays quiet for gap: a receiver is silent between its
// epochs.
func PlayCapture(ctx context.Context, p *PTY, capture []byte, gap time.Duration) (lines int, err error) {
	var last []byte
	for _, line := range bytes.Split(capture, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if tod := timeOfFix(line); tod != nil && !bytes.Equal(tod, last) {
			if last != nil && gap > 0 {
				select {
				case <-ctx.Done():
					return lines, nil
				case <-time.After(gap):
				}
			}
			last = tod
		}
		if ctx.Err() != nil {
			return lines, nil
		}
		if err := p.Write(append(line, '\r', '\n')); err != nil {
			return lines, err
		}
		lines++
	}
	return lines, nil
}

// timeOfFix returns the time field of a GGA, RMC, GNS, ZDA or GLL sentence,
// nil for other lines.
func timeOfFix(line []byte) []byte {
	f := bytes.Split(line, []byte(","))
	if len(f) < 6 || len(f[0]) != 6 || f[0][0] != '$' {
		return nil
	}
	i := map[string]int{"GGA": 1, "RMC": 1, "GNS": 1, "ZDA": 1, "GLL": 5}[string(f[0][3:])]
	if i == 0 || len(f[i]) == 0 {
		return nil
	}
	return f[i]
}

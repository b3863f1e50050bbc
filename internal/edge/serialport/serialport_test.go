package serialport

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

func TestLines(t *testing.T) {
	cases := []struct {
		name     string
		chunks   []string
		want     []string
		overlong uint64
	}{
		{"crlf", []string{"$GPGGA,1\r\n$GPRMC,2\r\n"}, []string{"$GPGGA,1", "$GPRMC,2"}, 0},
		{"split across reads", []string{"$GP", "GGA,1\r", "\nab", "c\n"}, []string{"$GPGGA,1", "abc"}, 0},
		{"empty lines skipped", []string{"\r\n\n\nx\n"}, []string{"x"}, 0},
		{"partial line kept until LF", []string{"abc"}, nil, 0},
		{"overlong dropped", []string{strings.Repeat("\xf8", 40) + "\nok\n"}, []string{"ok"}, 1},
		{"exactly max kept", []string{strings.Repeat("a", 16) + "\n"}, []string{strings.Repeat("a", 16)}, 0},
	}
	for _, tc := range cases {
		l := Lines{Max: 16}
		var got []string
		for _, c := range tc.chunks {
			l.Feed([]byte(c), func(line []byte) { got = append(got, string(line)) })
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: Lines.Feed = %q, want %q", tc.name, got, tc.want)
		}
		if l.Overlong != tc.overlong {
			t.Errorf("%s: Overlong = %d, want %d", tc.name, l.Overlong, tc.overlong)
		}
	}
}

// TestOpenPseudoTerminal opens a real pseudo-terminal's slave with tarm/serial
// and reads what is written to the master.
func TestOpenPseudoTerminal(t *testing.T) {
	master, slave, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer master.Close()
	defer slave.Close()
	port, err := Open(slave.Name(), 9600)
	if err != nil {
		t.Fatalf("Open(%s) = %v", slave.Name(), err)
	}
	defer port.Close()
	if _, err := master.Write([]byte("hello\r\nworld\r\n")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	l := Lines{Max: 64}
	err = Pump(ctx, port, make([]byte, 64), func(p []byte) {
		l.Feed(p, func(line []byte) {
			got = append(got, string(line))
			if len(got) == 2 {
				cancel()
			}
		})
	})
	if err != nil {
		t.Fatalf("Pump = %v", err)
	}
	if strings.Join(got, ",") != "hello,world" {
		t.Errorf("lines read = %q, want [hello world]", got)
	}
	if _, err := Open(os.DevNull+"-missing", 9600); err == nil {
		t.Errorf("Open(missing) = nil error, want an error")
	}
}

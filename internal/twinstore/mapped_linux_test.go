package twinstore

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"twinchain/internal/wire"
)

// mappedRSS is the resident kilobytes of this process's maps of path
// (/proc/self/smaps).
func mappedRSS(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == path
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			kb += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kb
}

// noise is size bytes of xorshift from seed: a message body that does not
// compress, so the store keeps it as it is.
func noise(seed uint64, size int) []byte {
	b := make([]byte, size)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// TestDropMappedPages: the message log a consumer read stays mapped in
// the process (its pages count in RSS) until DropMappedPages; after it,
// the map holds next to nothing resident, and reading again gives the
// same bytes.
func TestDropMappedPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twins.db")
	s := open(t, path)
	defer s.Close()
	body := func(seq uint64) []byte { return noise(seq, 64<<10) }
	const n = 400 // 25 MiB
	for seq := uint64(1); seq <= n; seq++ {
		err := s.Update(func(tx *Tx) error {
			return tx.AppendMessage(&Message{Gateway: "gw-1", Seq: seq, Kind: wire.KindTelemetry, Time: t0, Recorded: t0, Raw: body(seq)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() {
		t.Helper()
		got := 0
		for pos := uint64(0); ; {
			msgs, err := s.MessagesAfter(pos, 50)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				break
			}
			for _, m := range msgs {
				if !bytes.Equal(m.Raw, body(m.Seq)) {
					t.Fatalf("message %d reads back changed", m.Seq)
				}
				got++
			}
			pos = msgs[len(msgs)-1].Pos
		}
		if got != n {
			t.Fatalf("read %d messages, want %d", got, n)
		}
	}
	readAll()
	before := mappedRSS(t, path)
	if before < 20<<10 {
		t.Fatalf("after reading 25 MiB of messages %d KiB of the store's map is resident, want >= 20 MiB (is the store still mapped?)", before)
	}
	advised, err := s.DropMappedPages()
	if err != nil || advised < n*64<<10 {
		t.Fatalf("DropMappedPages = %d bytes, %v; want the whole file (>= %d)", advised, err, n*64<<10)
	}
	after := mappedRSS(t, path)
	if after > 1<<10 {
		t.Errorf("after DropMappedPages %d KiB of the store's map is resident (%d before), want < 1 MiB", after, before)
	}
	readAll()
	if again := mappedRSS(t, path); again < 20<<10 {
		t.Errorf("reading again mapped %d KiB, want the pages back (>= 20 MiB)", again)
	}
}

// TestDropMappedPagesWhileWriting: drops run while a writer appends (the
// file grows and bbolt remaps) and a reader reads every message back; no
// message reads back changed and no call fails.
func TestDropMappedPagesWhileWriting(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "twins.db"))
	defer s.Close()
	body := func(seq uint64) []byte { return noise(seq, 16<<10) }
	const n = 1500 // 24 MiB: the map grows through several remaps
	written := make(chan uint64, n)
	errs := make(chan error, 3)
	stop := make(chan struct{})
	go func() { // writer
		defer close(written)
		for seq := uint64(1); seq <= n; seq++ {
			err := s.Update(func(tx *Tx) error {
				return tx.AppendMessage(&Message{Gateway: "gw-1", Seq: seq, Kind: wire.KindTelemetry, Time: t0, Recorded: t0, Raw: body(seq)})
			})
			if err != nil {
				errs <- err
				return
			}
			written <- seq
		}
	}()
	drops := 0
	go func() { // dropper
		for {
			select {
			case <-stop:
				errs <- nil
				return
			default:
			}
			if _, err := s.DropMappedPages(); err != nil {
				errs <- err
				return
			}
			drops++
		}
	}()
	read, pos := 0, uint64(0)
	for range written { // the reader follows the writer
		msgs, err := s.MessagesAfter(pos, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if !bytes.Equal(m.Raw, body(m.Seq)) {
				t.Fatalf("message %d reads back changed", m.Seq)
			}
			read++
			pos = m.Pos
		}
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	msgs, err := s.MessagesAfter(pos, n)
	if err != nil {
		t.Fatal(err)
	}
	if read += len(msgs); read != n || drops == 0 {
		t.Fatalf("read %d of %d messages with %d drops meanwhile", read, n, drops)
	}
	t.Logf("%d messages read back unchanged with %d drops meanwhile", read, drops)
}

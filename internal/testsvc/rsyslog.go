package testsvc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Rsyslog is a running rsyslogd owned by one test: an RFC 5424 receiver on
// a spare loopback TCP port (octet-counted or LF framing) and the same port
// over UDP, writing each message it parsed to a file as one line of
// RsyslogFields separated by "|".
type Rsyslog struct {
	Addr string // 127.0.0.1:port, TCP and UDP
	out  string
	bin  string
	conf string
	dir  string
	proc *Process
}

// RsyslogFields are the properties of each parsed message, in order, as
// rsyslog understood them.
var RsyslogFields = []string{"facility", "severity", "hostname", "app-name", "procid", "msgid", "structured-data", "msg"}

// StartRsyslog starts rsyslogd (TWINCHAIN_RSYSLOGD, or rsyslogd on PATH) in
// the foreground with its own configuration and working directory.
func StartRsyslog(t testing.TB) *Rsyslog {
	t.Helper()
	bin := Binary(t, "TWINCHAIN_RSYSLOGD", "rsyslogd", "apt-get install -y rsyslog, or run make test")
	dir := t.TempDir()
	port := FreePort(t)
	r := &Rsyslog{Addr: Addr(port), out: filepath.Join(dir, "messages.log")}
	conf := filepath.Join(dir, "rsyslog.conf")
	text := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="%d")
input(type="imudp" address="127.0.0.1" port="%d")
template(name="fields" type="string" string="%%syslogfacility-text%%|%%syslogseverity-text%%|%%hostname%%|%%app-name%%|%%procid%%|%%msgid%%|%%structured-data%%|%%msg%%\n")
*.* action(type="omfile" file=%q template="fields")
`, dir, port, port, r.out)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r.bin, r.conf, r.dir = bin, conf, dir
	r.start(t)
	return r
}

func (r *Rsyslog) start(t testing.TB) {
	t.Helper()
	r.proc = StartProcess(t, r.bin, "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	if err := WaitTCP(r.Addr, 10*time.Second); err != nil {
		t.Fatalf("rsyslogd: %v", err)
	}
}

// Restart stops rsyslogd (closing its connections) and starts it again on
// the same port, after down has run (nil: at once). The messages file is
// kept.
func (r *Rsyslog) Restart(t testing.TB, down func()) {
	t.Helper()
	_ = r.proc.Stop() // stopped by us: the exit status says nothing
	if down != nil {
		down()
	}
	r.start(t)
}

// Messages returns what rsyslog has written so far, one map of
// RsyslogFields per message.
func (r *Rsyslog) Messages(t testing.TB) []map[string]string {
	t.Helper()
	raw, err := os.ReadFile(r.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for line := range strings.Lines(string(raw)) {
		parts := strings.SplitN(strings.TrimSuffix(line, "\n"), "|", len(RsyslogFields))
		if len(parts) != len(RsyslogFields) {
			t.Fatalf("rsyslog wrote %q, want %d fields", line, len(RsyslogFields))
		}
		m := map[string]string{}
		for i, f := range RsyslogFields {
			m[f] = parts[i]
		}
		out = append(out, m)
	}
	return out
}

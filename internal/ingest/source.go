package ingest

import (
	"net"
	"strings"
)

// Source is where a message came from, as the ingest sees it: the MQTT
// client id (the embedded broker binds it to the client's credential) and
// the connection's remote address. A rejection names its source, so an
// alert about forged or unbound traffic names the connection that sent it,
// not the gateway id the message claims. The zero Source is a caller in
// this process.
type Source struct {
	Client string `json:"client,omitempty"`
	Remote string `json:"remote,omitempty"` // host:port
}

// Host is the remote address without its port: a client that reconnects
// (a new port) is the same source.
func (s Source) Host() string {
	if h, _, err := net.SplitHostPort(s.Remote); err == nil {
		return h
	}
	return s.Remote
}

// Key names the source for counting and aggregation: the client id and the
// remote host.
func (s Source) Key() string {
	switch {
	case s.Client == "" && s.Remote == "":
		return "local"
	case s.Remote == "":
		return s.Client
	case s.Client == "":
		return "@" + s.Host()
	}
	return s.Client + "@" + s.Host()
}

// String is the source for people: "client gw-a at 10.0.0.5:41234".
func (s Source) String() string {
	var b strings.Builder
	if s.Client != "" {
		b.WriteString("client " + s.Client)
	}
	if s.Remote != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("at " + s.Remote)
	}
	if b.Len() == 0 {
		return "local"
	}
	return b.String()
}

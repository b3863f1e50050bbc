// The link rules of every program, in one table: a test fails when a
// program links a package it must not (Tailscale's deptest).
package twinchain_test

import (
	"testing"

	"twinchain/internal/testsvc"
)

const (
	fiber  = "github.com/gofiber/fiber"
	bbolt  = "go.etcd.io/bbolt"
	influx = "github.com/influxdata"
	fabric = "github.com/hyperledger"
	pebble = "github.com/cockroachdb/pebble"
	mochi  = "github.com/mochi-mqtt/server"
	// The scale-out engine (internal/scaleout, docs/scale-out.md) stays out of
	// the programs until twin-service switches to it as a whole: one node
	// keeps the embedded mochi broker, zero set-up, and one meaning of
	// "acknowledged"; the nodes and the fault test run from tests.
	nats = "github.com/nats-io"
)

var linkRules = []testsvc.LinkRule{{
	Pkg: "twinchain/edge-agent",
	Own: []string{"twinchain/internal/wire", "twinchain/internal/fastjson", "twinchain/internal/edge/...", "twinchain/internal/cli"}, // cli: the help and exit-status convention (stdlib only)
	Forbid: map[string]string{
		fiber: "the API is twin-service's", bbolt: "server storage", pebble: "server storage",
		influx: "telemetry storage is twin-service's", fabric: "the ledger is twin-service's", mochi: "the broker is twin-service's",
		nats: "scale-out measurements only",
	},
	Want: []string{"github.com/eclipse/paho.mqtt.golang", "github.com/tarm/serial", "github.com/adrianmo/go-nmea", "twinchain/internal/wire"},
}, {
	Pkg: "twinchain/firmware-sim",
	Forbid: map[string]string{
		fiber: "the API is twin-service's", bbolt: "server storage", pebble: "server storage", fabric: "the ledger is twin-service's",
		"twinchain/internal/twinstore": "server storage", "twinchain/internal/ingest": "the simulator speaks MQTT like an agent",
		nats: "scale-out measurements only",
	},
	Want: []string{"github.com/eclipse/paho.mqtt.golang", "github.com/creack/pty", "twinchain/internal/sim/fleet"},
}, {
	Pkg: "twinchain/twin-service",
	Forbid: map[string]string{
		"github.com/hyperledger/fabric-sdk-go":    "its fabric-protos-go registers the protobuf names fabric-gateway's fabric-protos-go-apiv2 does: the binary panics at start-up (enrollment is tools/fabric-enroll)",
		"github.com/hyperledger/fabric-protos-go": "see fabric-sdk-go",
		"twinchain/internal/ledger/fabricca":      "fabric-sdk-go; see above",
		"twinchain/internal/sim":                  "simulators are firmware-sim's",
		"twinchain/internal/testsvc":              "test infrastructure",
		"github.com/tarm/serial":                  "serial devices are the edge-agent's",
		"github.com/creack/pty":                   "pseudo-terminals are firmware-sim's",
		"github.com/chromedp":                     "test infrastructure",
		nats:                                      "the scale-out nodes (internal/scaleout/twinnode) are tested, not yet built in: the single node stays on mochi",
	},
	Want: []string{"github.com/hyperledger/fabric-gateway/pkg/client", fiber + "/v2", mochi + "/v2", bbolt},
}, {
	Pkg: "twinchain/tools/fabric-enroll",
	Forbid: map[string]string{
		"github.com/hyperledger/fabric-protos-go-apiv2": "fabric-sdk-go's protobufs clash with it (see twin-service)",
		fiber: "an enrollment tool", mochi: "an enrollment tool", bbolt: "an enrollment tool",
	},
	Want: []string{"github.com/hyperledger/fabric-sdk-go/pkg/client/msp"},
}, {
	Pkg: "twinchain/chaincode/core",
	Dir: "chaincode",
	Own: []string{"twinchain/chaincode/core"},
	ForbidDirect: map[string]string{
		"os": "the contract core does no I/O", "os/exec": "no I/O", "io/fs": "no I/O", "io/ioutil": "no I/O", "net": "no I/O",
		"net/http": "no I/O", "syscall": "no I/O", "log": "no I/O", "log/slog": "no I/O",
		"math/rand": "chaincode must be deterministic", "math/rand/v2": "deterministic", "crypto/rand": "deterministic", "unsafe": "plain Go",
	},
	Forbid: map[string]string{fabric: "the core is plain Go; the Fabric contract wraps it in chaincode/fabric"},
	Want:   []string{"crypto/ed25519"},
}, {
	Pkg:    "twinchain/chaincode/cmd/twinchain-cc",
	Dir:    "chaincode",
	Forbid: map[string]string{fiber: "chaincode", bbolt: "chaincode", mochi: "chaincode", influx: "chaincode"},
	Want:   []string{"twinchain/chaincode/core", "github.com/hyperledger/fabric-contract-api-go/v2/contractapi"},
}}

func TestLinkRules(t *testing.T) {
	for _, r := range linkRules {
		t.Run(r.Pkg, func(t *testing.T) { testsvc.CheckLinks(t, r) })
	}
}

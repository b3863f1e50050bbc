package main

import (
	"strings"
	"testing"

	"twinchain/internal/testsvc"
)

// TestDependencies fails when the agent links a package it must not: the
// HTTP framework, the InfluxDB client or Fabric belong to twin-service.
func TestDependencies(t *testing.T) {
	deps := testsvc.Deps(t)
	forbidden := []string{"github.com/gofiber/", "github.com/influxdata/", "github.com/hyperledger/"}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("edge-agent depends on %s (nothing under %s may be linked)", d, f)
			}
		}
	}
	// The list is real: the agent's own dependencies are in it.
	for _, want := range []string{"github.com/eclipse/paho.mqtt.golang", "github.com/tarm/serial", "github.com/adrianmo/go-nmea", "twinchain/internal/wire"} {
		found := false
		for _, d := range deps {
			found = found || d == want
		}
		if !found {
			t.Errorf("go list -deps ./edge-agent lacks %s; is the list complete?", want)
		}
	}
}

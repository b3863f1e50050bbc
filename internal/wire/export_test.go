package wire

// ScanTelemetry is scanTelemetry, for the tests of package wire_test (which
// may import the agents that build telemetry bodies).
var ScanTelemetry = scanTelemetry

// ScanEnvelope is scanEnvelope, for the tests of package wire_test.
var ScanEnvelope = scanEnvelope

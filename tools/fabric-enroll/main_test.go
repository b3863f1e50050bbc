package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"twinchain/internal/ledger/fabricca"
	"twinchain/internal/testsvc"
)

// TestEnroll runs the command against a real fabric-ca-server.
func TestEnroll(t *testing.T) {
	srv := testsvc.StartFabricCA(t)
	dir := t.TempDir()
	args := []string{"-ca-url", srv.URL, "-ca-name", srv.Name, "-tls-ca", srv.CertFile, "-msp", "Org1MSP",
		"-store", filepath.Join(dir, "store"), "-out", filepath.Join(dir, "ids"), "-id", "alice", "-role", "ml_lead"}
	var out strings.Builder
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "ids", "alice.ml_lead", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := (&fabricca.Identity{CertPEM: certPEM}).Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if attrs, _ := fabricca.CertAttrs(cert); attrs[fabricca.RoleAttr] != "ml_lead" {
		t.Errorf("enrolled certificate attributes = %v, want twin.role=ml_lead", attrs)
	}
	if err := run(context.Background(), append(args, "-reenroll"), &out, io.Discard); err != nil {
		t.Errorf("-reenroll: %v", err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "ids", "alice.ml_lead", "cert.pem"))
	if string(again) == string(certPEM) {
		t.Errorf("-reenroll wrote the same certificate")
	}
}

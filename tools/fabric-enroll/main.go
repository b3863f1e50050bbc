// Command fabric-enroll registers and enrolls twinchain's Fabric identities
// with a Fabric CA (fabric-sdk-go's msp client, via internal/ledger/fabricca) and
// writes them where twin-service's Fabric ledger backend reads them:
//
//	fabric-enroll -ca-url http://127.0.0.1:7054 -ca-name ca-org1 -tls-ca ca-cert.pem \
//	    -msp Org1MSP -out identities -id alice -role ml_lead
//
// writes identities/alice.ml_lead/{cert.pem,key.pem} with twin.role=ml_lead
// in the certificate. Without a Fabric CA, `fabric-enroll issue -ca-cert
// ca-cert.pem -ca-key priv_sk -msp Org1MSP -out identities -id alice -role
// ml_lead` signs the same from the organisation CA's own key (cryptogen's). -reenroll renews an identity already enrolled in
// -store. It is a program of its own because fabric-sdk-go cannot be linked
// into twin-service (see internal/ledger/fabricca).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"twinchain/internal/ledger/fabricca"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fabric-enroll:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "issue" {
		return runIssue(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("fabric-enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg fabricca.CAConfig
	fs.StringVar(&cfg.URL, "ca-url", "", "Fabric CA URL")
	fs.StringVar(&cfg.Name, "ca-name", "", "Fabric CA name")
	fs.StringVar(&cfg.TLSCACert, "tls-ca", "", "the CA's certificate (PEM), required even over http")
	fs.StringVar(&cfg.Registrar, "admin", "admin", "registrar id")
	fs.StringVar(&cfg.RegistrarPW, "admin-secret", "adminpw", "registrar secret")
	fs.StringVar(&cfg.MSPID, "msp", "", "MSP id, e.g. Org1MSP")
	fs.StringVar(&cfg.StoreDir, "store", "fabric-store", "where the SDK keeps keys between runs")
	out := fs.String("out", "identities", "identity directory (twin-service ledger.fabric.identity_dir)")
	id := fs.String("id", "", "identity to register and enroll")
	role := fs.String("role", "", "its twinchain role (twin.role attribute)")
	reenroll := fs.Bool("reenroll", false, "re-enroll an identity enrolled before")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *role == "" {
		return errors.New("-id and -role are required")
	}
	ca, err := fabricca.DialCA(cfg)
	if err != nil {
		return err
	}
	defer ca.Close()
	var ident fabricca.Identity
	name := *id + "." + *role
	if *reenroll {
		ident, err = ca.Reenroll(name)
	} else {
		if _, err = ca.EnrollAdmin(); err != nil {
			return err
		}
		var secret string
		if secret, err = ca.Register(name, "", *role); err == nil {
			ident, err = ca.Enroll(name, secret)
		}
	}
	if err != nil {
		return err
	}
	dir := filepath.Join(*out, name)
	if err := fabricca.WriteIdentity(dir, ident); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s enrolled as %s with twin.role=%s in %s\n", *id, name, *role, dir)
	return nil
}

// runIssue is `fabric-enroll issue`: an identity signed by a local CA key.
func runIssue(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fabric-enroll issue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	caCert := fs.String("ca-cert", "", "the organisation CA's certificate (PEM)")
	caKey := fs.String("ca-key", "", "its private key (PKCS#8 PEM, cryptogen's ca/priv_sk)")
	msp := fs.String("msp", "", "MSP id, e.g. Org1MSP")
	out := fs.String("out", "identities", "identity directory (twin-service ledger.fabric.identity_dir)")
	id := fs.String("id", "", "identity")
	role := fs.String("role", "", "its twinchain role (twin.role attribute)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *caCert == "" || *caKey == "" || *id == "" || *role == "" {
		return errors.New("issue: -ca-cert, -ca-key, -id and -role are required")
	}
	cb, err := os.ReadFile(*caCert)
	if err != nil {
		return err
	}
	kb, err := os.ReadFile(*caKey)
	if err != nil {
		return err
	}
	ident, err := fabricca.Issue(cb, kb, *msp, *id, *role)
	if err != nil {
		return err
	}
	dir := filepath.Join(*out, *id+"."+*role)
	if err := fabricca.WriteIdentity(dir, ident); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s issued with twin.role=%s in %s\n", *id, *role, dir)
	return nil
}

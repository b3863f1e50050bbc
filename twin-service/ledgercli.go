package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"twinchain/internal/apiclient"
)

// ledgerRoute is the API route `twin-service ledger <command>` posts a JSON
// file to.
func ledgerRoute(cmd string) (string, bool) {
	switch cmd {
	case "record-dataset":
		return "datasets", true
	case "record-model":
		return "models", true
	case "attest":
		return "attestations", true
	case "set-policy":
		return "policies", true
	case "deploy":
		return "deployments", true
	case "register-asset":
		return "assets", true
	}
	return "", false
}

// runLedgerCLI is the ML pipelines' one-call client:
//
//	twin-service ledger record-dataset -file dataset.json
//	twin-service ledger proof -event 42 -o bundle.json
//	twin-service ledger proof -type model -id m-1 -o bundle.json
//	twin-service ledger proof -alert AL-3 -o bundle.json
//	twin-service ledger put-private -id ds-1 -file meta.json
//	twin-service ledger verify-private -id ds-1 -file disclosed.json
//
// It prints the ledger's answer (JSON) and fails on any error response. It
// finds the server and a token as every command does (apiclient: -server,
// -token, -token-file, TWINCHAIN_URL, TWINCHAIN_TOKEN, ./data/cli-token).
func runLedgerCLI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "usage: twin-service ledger COMMAND [flags]   (twin-service ledger COMMAND -h for its flags)\n\ncommands: record-dataset, record-model, attest, set-policy, deploy, register-asset (-file F), proof (-event N | -type T -id ID | -alert ID),\nput-private -id DATASET -file meta.json (private metadata), verify-private -id DATASET -file copy.json (a disclosed copy)")
	}
	cmd, err := commandOf("ledger", args, usage)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("twin-service ledger "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := apiclient.Bind(fs, getenv)
	file := fs.String("file", "", "JSON record to send (- for stdin)")
	event := fs.Uint64("event", 0, "proof: the twin event id")
	typ := fs.String("type", "", "proof: record type (asset, dataset, model, policy, deployment)")
	id := fs.String("id", "", "proof: record id; put-private, verify-private: the dataset")
	alertID := fs.String("alert", "", "proof: alert id (its anchored evidence events)")
	out := fs.String("o", "", "write the answer to this file instead of stdout")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError(err)
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("ledger %s: unexpected arguments %q", cmd, fs.Args()))
	}
	var method, path string
	var body []byte
	readFile := func() error {
		if *file == "" {
			return usageError(fmt.Errorf("ledger %s: -file is required", cmd))
		}
		var err error
		if *file == "-" {
			body, err = io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
		} else {
			body, err = os.ReadFile(*file)
		}
		return err
	}
	switch route, ok := ledgerRoute(cmd); {
	case ok:
		if err := readFile(); err != nil {
			return err
		}
		method, path = http.MethodPost, "/ledger/"+route
	case cmd == "put-private" && *id != "":
		if err := readFile(); err != nil {
			return err
		}
		method, path = http.MethodPut, "/ledger/datasets/"+url.PathEscape(*id)+"/private"
	case cmd == "verify-private" && *id != "":
		if err := readFile(); err != nil {
			return err
		}
		body = append(append([]byte(`{"data":`), body...), '}')
		method, path = http.MethodPost, "/ledger/datasets/"+url.PathEscape(*id)+"/private/verify"
	case cmd == "proof" && *event > 0:
		method, path = http.MethodGet, fmt.Sprintf("/ledger/events/%d/proof", *event)
	case cmd == "proof" && *alertID != "":
		method, path = http.MethodGet, "/ledger/alerts/"+url.PathEscape(*alertID)+"/proof"
	case cmd == "proof" && *typ != "" && *id != "":
		method, path = http.MethodGet, "/ledger/proofs/"+url.PathEscape(*typ)+"/"+url.PathEscape(*id)
	default:
		usage()
		return usageError(fmt.Errorf("ledger: unknown command or missing flags: %s", cmd))
	}
	client, err := conn.Client()
	if err != nil {
		return err
	}
	answer, err := client.Do(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", cmd, err)
	}
	if *out != "" {
		return os.WriteFile(*out, answer, 0o644)
	}
	_, err = stdout.Write(append(answer, '\n'))
	return err
}

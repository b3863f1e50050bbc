package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
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
//	twin-service ledger record-dataset -file dataset.json -server URL -token T
//	twin-service ledger proof -event 42 -o bundle.json
//	twin-service ledger proof -type model -id m-1 -o bundle.json
//	twin-service ledger proof -alert AL-3 -o bundle.json
//	twin-service ledger put-private -id ds-1 -file meta.json
//	twin-service ledger verify-private -id ds-1 -file disclosed.json
//
// It prints the ledger's answer (JSON) and fails on any error response.
// The token may come from TWINCHAIN_TOKEN, the server from TWINCHAIN_SERVER.
func runLedgerCLI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "usage: twin-service ledger COMMAND [flags]\n\ncommands: record-dataset, record-model, attest, set-policy, deploy, register-asset (-file F), proof (-event N | -type T -id ID | -alert ID),\nput-private -id DATASET -file meta.json (private metadata), verify-private -id DATASET -file copy.json (a disclosed copy)")
	}
	if len(args) == 0 {
		usage()
		return errors.New("ledger: missing command")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("twin-service ledger "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", getenv("TWINCHAIN_SERVER"), "twin-service base URL, e.g. http://127.0.0.1:8080 (env TWINCHAIN_SERVER)")
	token := fs.String("token", "", "bearer token (env TWINCHAIN_TOKEN)")
	file := fs.String("file", "", "JSON record to send (- for stdin)")
	event := fs.Uint64("event", 0, "proof: the twin event id")
	typ := fs.String("type", "", "proof: record type (asset, dataset, model, policy, deployment)")
	id := fs.String("id", "", "proof: record id; put-private, verify-private: the dataset")
	alertID := fs.String("alert", "", "proof: alert id (its anchored evidence events)")
	out := fs.String("o", "", "write the answer to this file instead of stdout")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *token == "" {
		*token = getenv("TWINCHAIN_TOKEN")
	}
	if *server == "" {
		*server = "http://127.0.0.1:8080"
	}
	base := strings.TrimRight(*server, "/") + "/api/v1/ledger/"
	var method, target string
	var body []byte
	readFile := func() error {
		if *file == "" {
			return fmt.Errorf("ledger %s: -file is required", cmd)
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
		method, target = http.MethodPost, base+route
	case cmd == "put-private" && *id != "":
		if err := readFile(); err != nil {
			return err
		}
		method, target = http.MethodPut, base+"datasets/"+url.PathEscape(*id)+"/private"
	case cmd == "verify-private" && *id != "":
		if err := readFile(); err != nil {
			return err
		}
		body = append(append([]byte(`{"data":`), body...), '}')
		method, target = http.MethodPost, base+"datasets/"+url.PathEscape(*id)+"/private/verify"
	case cmd == "proof" && *event > 0:
		method, target = http.MethodGet, fmt.Sprintf("%sevents/%d/proof", base, *event)
	case cmd == "proof" && *alertID != "":
		method, target = http.MethodGet, base+"alerts/"+url.PathEscape(*alertID)+"/proof"
	case cmd == "proof" && *typ != "" && *id != "":
		method, target = http.MethodGet, base+"proofs/"+url.PathEscape(*typ)+"/"+url.PathEscape(*id)
	default:
		usage()
		return fmt.Errorf("ledger: unknown command or missing flags: %s", cmd)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", cmd, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ledger %s: %s: %s", cmd, resp.Status, bytes.TrimSpace(answer))
	}
	if *out != "" {
		return os.WriteFile(*out, answer, 0o644)
	}
	_, err = stdout.Write(append(answer, '\n'))
	return err
}

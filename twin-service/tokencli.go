package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"twinchain/internal/apiclient"
	"twinchain/internal/httpapi/auth"
)

// runTokenCLI is `twin-service token create|list|revoke`: API tokens
// through the API (GET/POST/DELETE /api/v1/auth/tokens; an admin's token,
// such as the {data}/cli-token twin-service writes at first start).
//
//	twin-service token create -name pipeline -role ml_engineer   prints the token, once
//	twin-service token list [-json]
//	twin-service token revoke -name pipeline
func runTokenCLI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "usage: twin-service token COMMAND [flags]   (twin-service token COMMAND -h for its flags)\n\ncommands:\n  create -name N -role R   make a token; it is printed once, on stdout (keep it: only its SHA-256 is stored)\n  list [-json]             every token: name, role, where it is kept, who made it, when last used\n  revoke -name N           the token stops working at once")
	}
	cmd, err := commandOf("token", args, usage)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("twin-service token "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := apiclient.Bind(fs, getenv)
	var name, role *string
	asJSON := new(bool)
	switch cmd {
	case "create":
		name = fs.String("name", "", "the token's name (letters, digits, . _ - @)")
		role = fs.String("role", "", fmt.Sprintf("its role: one of %v", auth.Roles()))
	case "revoke":
		name = fs.String("name", "", "the token's name")
	case "list":
		asJSON = fs.Bool("json", false, "print JSON")
	default:
		usage()
		return usageError(fmt.Errorf("token: unknown command %q", cmd))
	}
	if err := fs.Parse(args[1:]); err != nil {
		return usageError(err)
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("token %s: unexpected arguments %q", cmd, fs.Args()))
	}
	if name != nil && *name == "" {
		return usageError(fmt.Errorf("token %s: -name is required", cmd))
	}
	if role != nil && *role == "" {
		return usageError(fmt.Errorf("token %s: -role is required (one of %v)", cmd, auth.Roles()))
	}
	client, err := conn.Client()
	if err != nil {
		return err
	}
	switch cmd {
	case "create":
		body, _ := json.Marshal(map[string]string{"name": *name, "role": *role})
		answer, err := client.Do(ctx, http.MethodPost, "/auth/tokens", body)
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		var got struct {
			Token string         `json:"token"`
			Info  auth.TokenInfo `json:"info"`
		}
		if err := json.Unmarshal(answer, &got); err != nil || got.Token == "" {
			return fmt.Errorf("token create: unexpected answer %s", answer)
		}
		fmt.Fprintf(stderr, "token %q (role %s) made; it is shown this once:\n", got.Info.Name, got.Info.Role)
		_, err = fmt.Fprintln(stdout, got.Token)
		return err
	case "revoke":
		if _, err := client.Do(ctx, http.MethodDelete, "/auth/tokens/"+url.PathEscape(*name), nil); err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		fmt.Fprintf(stderr, "token %q revoked\n", *name)
		return nil
	}
	answer, err := client.Do(ctx, http.MethodGet, "/auth/tokens", nil)
	if err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	if *asJSON {
		_, err := stdout.Write(append(answer, '\n'))
		return err
	}
	var page struct {
		Items []auth.TokenInfo `json:"items"`
	}
	if err := json.Unmarshal(answer, &page); err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tKEPT IN\tMADE BY\tCREATED\tLAST USED")
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format(time.DateTime)
	}
	for _, t := range page.Items {
		by := t.CreatedBy
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, t.Source, by, at(t.Created), at(t.LastUsed))
	}
	return tw.Flush()
}

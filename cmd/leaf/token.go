package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

// noConnect replaces the root's PersistentPreRunE for commands that do
// not talk to leafd.
func noConnect(*cobra.Command, []string) error { return nil }

func whoamiCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show how leafd sees you: how you authenticated, your subject and your role",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			w, err := g.client().Whoami(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "subject: %s\nvia: %s\nrole: %s\n", w.Subject, w.Via, w.Role)
			if w.Role == "none" {
				fmt.Fprintln(g.out, "leafd lets you connect but grants you no role, so every other call is refused (403):\n"+
					"ask for one in its socketRoles (unix socket) or tls.subjects (certificates), or use a token")
			}
			return nil
		},
	}
}

func tokenCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "token",
		Short: "Issue, list and revoke bearer tokens (admin), or make a signing key",
	}
	c.AddCommand(tokenIssueCmd(g), tokenListCmd(g), tokenRevokeCmd(g))
	if kg := tokenKeygenCmd(g); kg != nil {
		c.AddCommand(kg)
	}
	return c
}

func tokenIssueCmd(g *globals) *cobra.Command {
	var req v1.TokenRequest
	var output string
	c := &cobra.Command{
		Use:   "issue --subject NAME --role ROLE [--ttl 24h]",
		Short: "Issue a token; it is printed once, leafd keeps only its metadata",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Subject == "" || req.Role == "" {
				return fmt.Errorf("--subject and --role are required")
			}
			ctx, cancel := g.ctx()
			defer cancel()
			t, err := g.client().IssueToken(ctx, req)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.out, t)
			}
			fmt.Fprintln(g.out, t.Token)
			return nil
		},
	}
	c.Flags().StringVar(&req.Subject, "subject", "", "who holds the token (shown in audit lines)")
	c.Flags().StringVar(&req.Role, "role", "", "reader, operator or admin")
	c.Flags().StringVar(&req.TTL, "ttl", "", "validity, e.g. 24h (default: leafd's)")
	c.Flags().StringVarP(&output, "output", "o", "token", "token (just the token) or json (token and metadata)")
	return c
}

func tokenListCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the tokens leafd issued, with their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			list, err := g.client().Tokens(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.out, list)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSUBJECT\tROLE\tSTATE\tKEY\tEXPIRES")
			for _, t := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Subject, t.Role, t.State, t.KeyID, t.ExpiresAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return c
}

func tokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID...",
		Short: "Revoke tokens: leafd refuses them from now on",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			for _, id := range ids {
				info, err := g.client().RevokeToken(ctx, id)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.out, "%s: revoked (subject %s, role %s)\n", info.ID, info.Subject, info.Role)
			}
			return nil
		},
	}
}

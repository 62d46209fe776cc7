package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/leaf-ebpf/leaf/client"
)

func configCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:               "config",
		Short:             "Show and edit the client config: contexts naming the leafd to talk to",
		PersistentPreRunE: noConnect,
	}
	c.AddCommand(configViewCmd(g), configUseCmd(g), configGetCmd(g), configSetCmd(g))
	return c
}

func configViewCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "view",
		Short: "Print the client config (tokens redacted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := client.LoadConfig(g.conn.path())
			if err != nil {
				return err
			}
			for i := range cfg.Contexts {
				if cfg.Contexts[i].Token != "" {
					cfg.Contexts[i].Token = "REDACTED"
				}
			}
			out, err := yaml.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = g.out.Write(out)
			return err
		},
	}
}

func configUseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make NAME the current context",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.conn.path()
			cfg, err := client.LoadConfig(path)
			if err != nil {
				return err
			}
			if _, err := cfg.Context(args[0]); err != nil {
				return err
			}
			cfg.CurrentContext = args[0]
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "current context: %s\n", args[0])
			return nil
		},
	}
}

func configGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts; * marks the current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := client.LoadConfig(g.conn.path())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tTARGET")
			for _, x := range cfg.Contexts {
				cur, target := "", x.Server
				if x.Name == cfg.CurrentContext {
					cur = "*"
				}
				if target == "" {
					target = "unix:" + x.Socket
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", cur, x.Name, target)
			}
			return tw.Flush()
		},
	}
}

func configSetCmd(g *globals) *cobra.Command {
	var x client.Context
	c := &cobra.Command{
		Use:   "set-context NAME [--socket PATH | --server URL --ca FILE [--client-cert FILE --client-key FILE] [--token-file FILE]]",
		Short: "Add or replace a context",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			x.Name = args[0]
			x.Socket, x.Server, x.CA, x.Cert, x.Key, x.TokenFile = g.conn.socket, g.conn.server, g.conn.ca, g.conn.cert, g.conn.key, g.conn.tokenFile
			if (x.Socket == "") == (x.Server == "") {
				return fmt.Errorf("set-context: give --socket or --server")
			}
			if g.conn.token != "" {
				return fmt.Errorf("set-context: use --token-file; a token on the command line would land in shell history")
			}
			if _, err := client.NewWithOptions(client.Options{Socket: x.Socket, Server: x.Server, CAFile: x.CA, CertFile: x.Cert, KeyFile: x.Key}); err != nil {
				return err
			}
			path := g.conn.path()
			cfg, err := client.LoadConfig(path)
			if err != nil {
				return err
			}
			replaced := false
			for i := range cfg.Contexts {
				if cfg.Contexts[i].Name == x.Name {
					cfg.Contexts[i], replaced = x, true
				}
			}
			if !replaced {
				cfg.Contexts = append(cfg.Contexts, x)
			}
			if cfg.CurrentContext == "" {
				cfg.CurrentContext = x.Name
			}
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "context %s saved in %s\n", x.Name, path)
			return nil
		},
	}
	return c
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/leaf-ebpf/leaf/internal/version"
)

// versionCmd prints the CLI's build; leafd's is `leafd --version` and the
// leaf_build_info metric.
func versionCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:               "version",
		Short:             "Print leaf's version, VCS revision and Go version",
		Args:              cobra.NoArgs,
		PersistentPreRunE: noConnect,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := version.Get()
			switch output {
			case "json":
				return printJSON(g.out, in)
			case "text":
				_, err := fmt.Fprintln(g.out, "leaf", in)
				return err
			}
			return fmt.Errorf("-o %q: want text or json", output)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return c
}

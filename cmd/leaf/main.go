// Command leaf is the client of leafd and, later, the eBPF package
// manager. See docs/cli.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/leaf-ebpf/leaf/client"
)

func main() {
	if err := newRoot(os.Stdout).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "leaf:", err)
		var apiErr *client.APIError
		if errors.As(err, &apiErr) && apiErr.StatusCode < 500 {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

type globals struct {
	conn    connFlags
	timeout time.Duration
	out     io.Writer
	cl      *client.Client
}

func (g *globals) client() *client.Client { return g.cl }

func (g *globals) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.timeout)
}

func newRoot(out io.Writer) *cobra.Command {
	g := &globals{out: out}
	root := &cobra.Command{
		Use:           "leaf",
		Short:         "Run eBPF programs on this host through leafd",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every command that talks to leafd gets its client here; the
		// config and keygen commands override this with a no-op.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			g.cl, err = g.conn.connect(cmd.Flags(), g.timeout)
			return err
		},
	}
	g.conn.register(root.PersistentFlags())
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", 2*time.Minute, "how long to wait for leafd")
	root.AddCommand(pkgCmd(g), l3afCmd(g), applyCmd(g), statusCmd(g), deleteCmd(g), mapsCmd(g), packagesCmd(g), statsCmd(g), getCmd(g),
		whoamiCmd(g), tokenCmd(g), configCmd(g), eventsCmd(g), versionCmd(g))
	return root
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

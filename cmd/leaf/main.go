// Command leaf is the client of leafd and, later, the eBPF package
// manager. See docs/cli.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
)

func main() {
	if err := newRoot(os.Stdout).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "leaf:", err)
		if h := hint(err); h != "" {
			fmt.Fprintln(os.Stderr, "hint:", h)
		}
		var apiErr *client.APIError
		if errors.As(err, &apiErr) {
			fmt.Fprint(os.Stderr, kindLines(apiErr))
			if apiErr.StatusCode < 500 {
				os.Exit(3)
			}
		}
		os.Exit(1)
	}
}

// kindLines says what kind of error leafd answered (for scripts: one
// line "kind: KIND (HTTP CODE)") and, for kinds that need someone other
// than the author of the document to act, what to do.
func kindLines(e *client.APIError) string {
	if e.Kind() == "" {
		return ""
	}
	out := fmt.Sprintf("kind: %s (HTTP %d)\n", e.Kind(), e.StatusCode)
	if h := kindHints[e.Kind()]; h != "" {
		out += "hint: " + h + "\n"
	}
	return out
}

// kindHints are the next step for each kind whose fix is not an edit of
// the document (docs/api.md lists the kinds).
var kindHints = map[string]string{
	v1.ErrorKindTrust:          "the package is not signed by a key its repository trusts, or is not the content pinned: check with leaf pkg verify; sign it (leaf pkg sign) or change the repository's trust policy",
	v1.ErrorKindVerifier:       "the kernel's verifier refused the program: the verifier log above ends at the refused instruction; fix the program or load it on a kernel that accepts it",
	v1.ErrorKindFeatureMissing: "this host's kernel lacks what the hook or program needs: use another hook type, or a host whose kernel has it",
	v1.ErrorKindUnavailable:    "a repository did not answer: try again later, or check the repository (leaf packages)",
	v1.ErrorKindConflict:       "someone else holds what this changes: a program leaf does not manage on the hook (remove it, or set hook.replaceForeign), or a change made at the same time (retry)",
	v1.ErrorKindLimit:          "a configured or kernel limit was reached: apply fewer attachments at once, or raise the limit (docs/leafd.md)",
	v1.ErrorKindInternal:       "leafd itself failed: see its log (journalctl -u leafd)",
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
		whoamiCmd(g), tokenCmd(g), configCmd(g), eventsCmd(g), versionCmd(g), consoleCmd(g), tailCmd(g))
	return root
}

// hint says what to try when leafd cannot be reached at all.
func hint(err error) string {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return ""
	}
	switch {
	case op.Net == "unix" && errors.Is(err, fs.ErrNotExist):
		return "the socket does not exist: is leafd running (systemctl status leafd)? Another socket: --socket PATH or LEAF_SOCKET"
	case op.Net == "unix" && errors.Is(err, fs.ErrPermission):
		return "no permission on leafd's socket: join its group (socketGroup in leafd's config, leaf with the package) or use sudo"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there: is leafd running, and is that its socket or TLS address?"
	}
	return ""
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/manifest"
)

func applyCmd(g *globals) *cobra.Command {
	var file string
	var dryRun bool
	c := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Make a desired-state document (YAML or JSON) the host's state",
		Long: "Apply replaces the whole desired state: attachments the document does not list are\n" +
			"detached. Nothing changes unless every attachment validates, resolves and loads.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f FILE is required (- reads standard input)")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(os.Stdin)
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx()
			defer cancel()
			res, err := g.client().Apply(ctx, data, dryRun)
			if err != nil {
				return err
			}
			printResult(g.out, res)
			return nil
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "desired-state file")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "show the plan without changing anything")
	return c
}

func deleteCmd(g *globals) *cobra.Command {
	var dryRun bool
	c := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Detach attachments and remove them from the desired state",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			for _, n := range names {
				res, err := g.client().Delete(ctx, n, dryRun)
				if err != nil {
					return err
				}
				printResult(g.out, res)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "show the plan without changing anything")
	return c
}

func printResult(w io.Writer, res *v1.ApplyResult) {
	prefix := ""
	if res.DryRun {
		prefix = "(dry run) "
	}
	if !res.Changed {
		fmt.Fprintf(w, "%sno changes\n", prefix)
	}
	for _, a := range res.Actions {
		if a.Kind == "keep" && res.Changed {
			continue
		}
		fmt.Fprintf(w, "%s%s: %s (%s)\n", prefix, a.Attachment, a.Kind, a.Reason)
	}
}

func statusCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show every attachment as the kernel holds it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			st, err := g.client().Status(ctx)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return printJSON(g.out, st)
			case "table", "":
				printStatus(g.out, st)
				return nil
			}
			return fmt.Errorf("-o %q: want table or json", output)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return c
}

func printStatus(w io.Writer, st *v1.Status) {
	if len(st.Attachments) == 0 {
		fmt.Fprintln(w, "no attachments")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "NAME\tPACKAGE\tPROGRAM\tHOOK\tORDER\tSTATE\tPROG ID\tLINK ID"
	if st.BPFStats {
		header += "\tRUNS\tAVG NS"
	}
	fmt.Fprintln(tw, header)
	for _, a := range st.Attachments {
		state := a.State
		if a.Problem != "" && a.State != v1.StateAttached {
			state += " (" + a.Problem + ")"
		}
		order := "-"
		if c := a.Chain; c != nil {
			order = fmt.Sprintf("%d/%d prio %d", c.Position, c.Length, c.Priority)
			if c.Mode == "fused" {
				order += " fused"
			}
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d", a.Name, a.Package, a.Program, a.Hook, order, state, a.ProgramID, a.LinkID)
		if st.BPFStats {
			runs, avg := "-", "-"
			if a.RunCount != nil {
				runs = fmt.Sprint(*a.RunCount)
				if *a.RunCount > 0 && a.RunTimeNs != nil {
					avg = fmt.Sprint(*a.RunTimeNs / *a.RunCount)
				}
			}
			line += "\t" + runs + "\t" + avg
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	printForeign(w, st.Foreign)
}

// printForeign lists programs others attached to leaf's hooks.
func printForeign(w io.Writer, fs []v1.ForeignProgram) {
	if len(fs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nnot leaf's, on its hooks:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOOK\tPROG ID\tLINK ID\tNAME\tRUNS\tSECURE MODE")
	for _, f := range fs {
		where, fate := "after leaf's chain", "off: stays"
		if f.RunsBefore {
			where = "before leaf's chain"
		}
		switch {
		case f.Secure && f.Allowed:
			fate = "allowlisted: stays"
		case f.Secure:
			fate = "on: removed"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", f.Hook, f.ProgramID, f.LinkID, f.Name, where, fate)
	}
	tw.Flush()
}

func mapsCmd(g *globals) *cobra.Command {
	var output string
	var df dumpFlags
	c := &cobra.Command{
		Use:   "maps ATTACHMENT [MAP]",
		Short: "List an attachment's maps, or show the entries of one (all of them, page by page)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			if len(args) == 1 {
				ml, err := g.client().Maps(ctx, args[0])
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g.out, ml)
				}
				tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "MAP\tID\tTYPE\tKEY\tVALUE\tMAX ENTRIES")
				for _, m := range ml.Maps {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\n", m.Name, m.ID, m.Type, m.KeySize, m.ValueSize, m.MaxEntries)
				}
				return tw.Flush()
			}
			d, err := df.dump(ctx, g.client(), args[0], args[1])
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.out, d)
			}
			printDump(g.out, d, df.keyFormat, df.valueFormat)
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	c.Flags().StringVar(&df.key, "key", "", "show only this key, written in --key-format")
	c.Flags().BoolVar(&df.nonzero, "nonzero", false, "leave out entries whose value is all zero")
	c.Flags().IntVar(&df.limit, "limit", 0, "show at most this many entries (0: all)")
	c.Flags().StringVar(&df.keyFormat, "key-format", "", "show keys as: "+strings.Join(manifest.Formats, ", ")+" (default: a number when 1, 2, 4 or 8 bytes, else hex)")
	c.Flags().StringVar(&df.valueFormat, "value-format", "", "show values as: the same formats")
	return c
}

// dumpFlags select and format the entries `leaf maps` shows.
type dumpFlags struct {
	key, keyFormat, valueFormat string
	nonzero                     bool
	limit                       int
}

// dump reads the map page by page (leafd returns at most 10000 entries
// a request) until the limit or the end.
func (f *dumpFlags) dump(ctx context.Context, c *client.Client, attachment, name string) (*v1.MapDump, error) {
	for _, fm := range []string{f.keyFormat, f.valueFormat} {
		if !manifest.ValidFormat(fm) {
			return nil, fmt.Errorf("unknown format %q (want %s)", fm, strings.Join(manifest.Formats, ", "))
		}
	}
	q := v1.MapQuery{NonZero: f.nonzero}
	if f.key != "" {
		ml, err := c.Maps(ctx, attachment)
		if err != nil {
			return nil, err
		}
		size := -1
		for _, m := range ml.Maps {
			if m.Name == name {
				size = int(m.KeySize)
			}
		}
		if size < 0 {
			return nil, fmt.Errorf("attachment %s has no map %q", attachment, name)
		}
		k, err := manifest.ParseFormatted(f.keyFormat, f.key, size)
		if err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		q.Key = hex.EncodeToString(k)
	}
	var all *v1.MapDump
	for {
		if f.limit > 0 {
			q.Limit = f.limit - len(entriesOf(all))
		}
		d, err := c.DumpMapQuery(ctx, attachment, name, q)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = d
		} else {
			all.Entries = append(all.Entries, d.Entries...)
		}
		all.Next, all.Truncated = d.Next, d.Truncated
		if d.Next == "" || (f.limit > 0 && len(all.Entries) >= f.limit) {
			return all, nil
		}
		q.After = d.Next
	}
}

func entriesOf(d *v1.MapDump) []v1.MapEntry {
	if d == nil {
		return nil
	}
	return d.Entries
}

func printDump(w io.Writer, d *v1.MapDump, keyFormat, valueFormat string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, e := range d.Entries {
		val := formatHex(valueFormat, e.Value)
		if e.ValueUint != nil && valueFormat == "" {
			val = fmt.Sprint(*e.ValueUint)
		} else if len(e.PerCPU) > 0 {
			var per []string
			for _, v := range e.PerCPU {
				per = append(per, formatHex(valueFormat, v))
			}
			val = strings.Join(per, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\n", formatHex(keyFormat, e.Key), val)
	}
	tw.Flush()
	if d.Truncated {
		fmt.Fprintln(w, "(more entries follow)")
	}
}

// formatHex shows the hex bytes leafd returns in a format.
func formatHex(format, h string) string {
	b, err := hex.DecodeString(h)
	if err != nil {
		return h
	}
	return manifest.Format(format, b)
}

func packagesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "packages",
		Short: "List the packages leafd's repositories offer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			pkgs, err := g.client().Packages(ctx)
			if err != nil {
				return err
			}
			sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name+pkgs[i].Version < pkgs[j].Name+pkgs[j].Version })
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PACKAGE\tREPOSITORY\tPROGRAMS\tDESCRIPTION")
			for _, p := range pkgs {
				var progs []string
				for _, pr := range p.Programs {
					progs = append(progs, pr.Name+" ("+strings.Join(pr.Hooks, ",")+")")
				}
				fmt.Fprintf(tw, "%s@%s\t%s\t%s\t%s\n", p.Name, p.Version, p.Repository, strings.Join(progs, " "), p.Description)
			}
			return tw.Flush()
		},
	}
}

func statsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:       "stats [on|off]",
		Short:     "Show, or turn on or off, the kernel's per-program run statistics",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			var st *v1.Stats
			var err error
			switch {
			case len(args) == 0:
				st, err = g.client().Stats(ctx)
			case args[0] == "on" || args[0] == "off":
				st, err = g.client().SetStats(ctx, args[0] == "on")
			default:
				return fmt.Errorf("want on or off, got %q", args[0])
			}
			if err != nil {
				return err
			}
			state := "off"
			if st.Enabled {
				state = "on"
			}
			fmt.Fprintf(g.out, "BPF statistics: %s\n", state)
			return nil
		},
	}
	return c
}

func getCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get-state",
		Short: "Print the desired state leafd holds (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			raw, err := g.client().Desired(ctx)
			if err != nil {
				return err
			}
			var v any
			if err := jsonUnmarshal(raw, &v); err != nil {
				return err
			}
			return printJSON(g.out, v)
		},
	}
}

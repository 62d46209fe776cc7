package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
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
}

func mapsCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "maps ATTACHMENT [MAP]",
		Short: "List an attachment's maps, or show the entries of one",
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
			d, err := g.client().DumpMap(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.out, d)
			}
			printDump(g.out, d)
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return c
}

func printDump(w io.Writer, d *v1.MapDump) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, e := range d.Entries {
		key := e.Key
		if e.KeyUint != nil {
			key = fmt.Sprint(*e.KeyUint)
		}
		val := e.Value
		if e.ValueUint != nil {
			val = fmt.Sprint(*e.ValueUint)
		} else if len(e.PerCPU) > 0 {
			val = strings.Join(e.PerCPU, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\n", key, val)
	}
	tw.Flush()
	if d.Truncated {
		fmt.Fprintln(w, "(truncated)")
	}
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

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/leaf-ebpf/leaf/internal/l3af"
)

func l3afCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "l3af", Short: "Move from l3afd to leaf (see docs/l3af.md)"}
	c.AddCommand(l3afImportCmd(g))
	return c
}

func l3afImportCmd(g *globals) *cobra.Command {
	var cfgPath, storePath, outDir, netns string
	c := &cobra.Command{
		Use:   "import --config l3afd.cfg [--store l3af-config.json] --out DIR",
		Short: "Write leafd's config and desired state from an l3afd config and its persisted programs",
		Long: "import reads l3afd.cfg and l3afd's persisted l3af-config.json ([l3af-config-store] filename\n" +
			"unless --store is given), resolves every program's package from l3afd's repository as leafd\n" +
			"will, and writes DIR/leafd.yaml and DIR/desired-state.yaml. It reports what it could not\n" +
			"carry over or carries over differently.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" || outDir == "" {
				return fmt.Errorf("--config and --out are required")
			}
			ini, err := readFile(cfgPath, l3af.ParseINI)
			if err != nil {
				return err
			}
			if storePath == "" {
				if storePath = ini["l3af-config-store"]["filename"]; storePath == "" {
					return fmt.Errorf("%s has no [l3af-config-store] filename: give --store", cfgPath)
				}
			}
			store, err := readFile(storePath, l3af.ParseStore)
			if err != nil {
				return err
			}
			abs, err := filepath.Abs(outDir)
			if err != nil {
				return err
			}
			statePath := filepath.Join(abs, "desired-state.yaml")
			ctx, cancel := g.ctx()
			defer cancel()
			m, err := l3af.Migrate(ctx, ini, store, l3af.MigrateOptions{StatePath: statePath, Netns: netns})
			if err != nil {
				return err
			}
			if err := os.MkdirAll(abs, 0o755); err != nil {
				return err
			}
			// JSON is YAML: leafd reads either.
			for file, doc := range map[string]any{filepath.Join(abs, "leafd.yaml"): m.Daemon, statePath: m.State} {
				data, err := json.MarshalIndent(doc, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(g.out, "wrote %s\n", file)
			}
			fmt.Fprintf(g.out, "%d attachment(s) from %d interface(s)\n", len(m.State.Spec.Attachments), len(store))
			for _, r := range m.Report {
				fmt.Fprintf(g.out, "note: %s\n", r)
			}
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "l3afd's config file (l3afd.cfg)")
	c.Flags().StringVar(&storePath, "store", "", "l3afd's persisted programs (l3af-config.json)")
	c.Flags().StringVar(&outDir, "out", "", "directory to write leafd.yaml and desired-state.yaml into")
	c.Flags().StringVar(&netns, "netns", "", "network namespace of the interfaces (leafd's l3af.netns)")
	return c
}

// readFile reads a file of at most 16 MiB and parses it.
func readFile[T any](path string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, l3af.MaxConfigStore+1))
	if err != nil {
		return zero, err
	}
	if len(data) > l3af.MaxConfigStore {
		return zero, fmt.Errorf("%s: more than %d bytes", path, l3af.MaxConfigStore)
	}
	return parse(data)
}

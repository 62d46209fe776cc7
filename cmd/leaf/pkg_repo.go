package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/content/oci"

	"github.com/leaf-ebpf/leaf/internal/config"
	"github.com/leaf-ebpf/leaf/internal/lint"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/trust"
	"github.com/leaf-ebpf/leaf/packages"
)

func pkgLintCmd(g *globals) *cobra.Command {
	var noLoad, jsonOut bool
	c := &cobra.Command{
		Use:   "lint DIR",
		Short: "Review a package directory: manifest, ELF, BTF, license, parameters, and the verifier (as root)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := readDirPackage(args[0])
			if err != nil {
				return err
			}
			s := lint.Run(p, lint.Options{Load: !noLoad && os.Geteuid() == 0})
			if jsonOut {
				printJSON(g.out, s)
			} else {
				tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				for _, ch := range s.Checks {
					status := "ok"
					switch {
					case !ch.Passed:
						status = "FAIL"
					case ch.Warning:
						status = "warn"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", status, ch.Name, firstLine(ch.Message))
				}
				tw.Flush()
			}
			if !s.Passed {
				return fmt.Errorf("%s: lint failed", p.Ref())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&noLoad, "no-load", false, "skip the verifier (it needs root)")
	c.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return c
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// readDirPackage reads one package directory as leafd would.
func readDirPackage(dir string) (*repository.Package, error) {
	ctx := context.Background()
	mem := newMemStore()
	desc, _, err := ocipkg.Build(ctx, os.DirFS(dir), mem)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	p, err := ocipkg.Read(ctx, mem, desc, "")
	if err != nil {
		return nil, err
	}
	return repository.NewPackage(p.Manifest, p.Digest(), dir, p.Raw, p.Files), nil
}

func pkgInspectCmd(g *globals) *cobra.Command {
	var loc location
	var archivePath string
	c := &cobra.Command{
		Use:   "inspect NAME@VERSION",
		Short: "Show a package: digest, leaf manifest, layers per architecture, signatures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := parseRef(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := pkgCtx()
			defer cancel()
			var t *pkgTarget
			if archivePath != "" {
				f, err := os.Open(archivePath)
				if err != nil {
					return err
				}
				defer f.Close()
				l, err := ocipkg.OpenArchive(ctx, f)
				if err != nil {
					return err
				}
				t = &pkgTarget{store: readOnlyTarget{l}, ref: ocipkg.Ref(ref.Name, ref.Version)}
			} else if t, err = loc.target(ref.Name, ref.Version); err != nil {
				return err
			}
			p, err := t.resolve(ctx, "")
			if err != nil {
				return err
			}
			sigs, err := ocipkg.Signatures(ctx, t.store, p.Desc)
			if err != nil {
				return err
			}
			return printJSON(g.out, inspection(p, sigs))
		},
	}
	loc.flags(c, "", "where the package is")
	c.Flags().StringVar(&archivePath, "archive", "", "read the package from an exported .tar")
	return c
}

type inspected struct {
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	Digest     string            `json:"digest"`
	Manifest   any               `json:"manifest"`
	Layers     []inspectedLayer  `json:"layers"`
	Signatures []inspectedSigner `json:"signatures"`
}

type inspectedLayer struct {
	Title     string `json:"title"`
	Arch      string `json:"arch,omitempty"`
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type inspectedSigner struct {
	Role    string `json:"role,omitempty"`
	Digest  string `json:"digest"`
	KeyHint string `json:"keyHint,omitempty"`
}

func inspection(p *ocipkg.Package, sigs []ocipkg.Signature) inspected {
	out := inspected{Name: p.Manifest.Name, Version: p.Manifest.Version, Digest: p.Digest(), Manifest: p.Manifest, Signatures: []inspectedSigner{}}
	for _, l := range p.OCI.Layers {
		out.Layers = append(out.Layers, inspectedLayer{Title: l.Annotations[ocispec.AnnotationTitle], Arch: l.Annotations[ocipkg.AnnotationArch], MediaType: l.MediaType, Digest: l.Digest.String(), Size: l.Size})
	}
	for _, s := range sigs {
		var b struct {
			VerificationMaterial struct {
				PublicKey struct{ Hint string } `json:"publicKey"`
			} `json:"verificationMaterial"`
		}
		json.Unmarshal(s.Bundle, &b)
		out.Signatures = append(out.Signatures, inspectedSigner{Role: s.Role, Digest: s.Desc.Digest.String(), KeyHint: b.VerificationMaterial.PublicKey.Hint})
	}
	return out
}

// readOnlyTarget lets an archive stand where a target is expected by
// read-only commands; writes fail.
type readOnlyTarget struct{ *ocipkg.Layout }

func (readOnlyTarget) Push(context.Context, ocispec.Descriptor, io.Reader) error {
	return fmt.Errorf("an archive is read-only")
}

func (readOnlyTarget) Tag(context.Context, ocispec.Descriptor, string) error {
	return fmt.Errorf("an archive is read-only")
}

// configuredRepos opens the repositories of a leafd config file (and the
// built-in one), or the locations given on the command line.
func configuredRepos(configFile string, loc *location, builtin bool) (repository.Set, error) {
	var set repository.Set
	if configFile != "" {
		cfg := config.Defaults()
		if err := config.LoadFile(configFile, &cfg); err != nil {
			return nil, err
		}
		for _, rc := range cfg.Repositories {
			r, err := pkgsource.Open(rc, nil, nil)
			if err != nil {
				return nil, err
			}
			set = append(set, r)
		}
		builtin = builtin && !cfg.NoBuiltinRepository
	}
	switch {
	case loc.layout != "":
		set = append(set, pkgsource.New(loc.layout, &pkgsource.Layout{Dir: loc.layout}, nil))
	case loc.registry != "":
		reg, err := loc.openRegistry()
		if err != nil {
			return nil, err
		}
		set = append(set, pkgsource.New(loc.registry, reg, nil))
	}
	if builtin {
		r, err := pkgsource.OpenBuiltin(config.BuiltinRepository, packages.FS)
		if err != nil {
			return nil, err
		}
		set = append(set, r)
	}
	return set, nil
}

func pkgListCmd(g *globals) *cobra.Command {
	var loc location
	var configFile string
	var builtin bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the packages in a layout, a registry, or leafd's configured repositories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := configuredRepos(configFile, &loc, builtin)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PACKAGE\tREPOSITORY\tDIGEST\tDESCRIPTION")
			pkgs, err := listAll(set)
			if err != nil {
				return err
			}
			for _, p := range pkgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Ref(), p.Repository, p.Digest, p.Manifest.Description)
			}
			return tw.Flush()
		},
	}
	loc.flags(c, "", "where to list")
	c.Flags().StringVar(&configFile, "config", "", "list the repositories of this leafd config file")
	c.Flags().BoolVar(&builtin, "builtin", false, "include the built-in packages")
	return c
}

func pkgSearchCmd(g *globals) *cobra.Command {
	var loc location
	var configFile string
	var indexes []string
	c := &cobra.Command{
		Use:   "search TERM",
		Short: "Find packages by name, description or keyword across repositories and published indexes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := configuredRepos(configFile, &loc, true)
			if err != nil {
				return err
			}
			type hit struct {
				e    pkgsource.IndexEntry
				repo string
			}
			var hits []hit
			pkgs, err := listAll(set)
			if err != nil {
				return err
			}
			for _, p := range pkgs {
				if e := pkgsource.EntryFor(p); e.Matches(args[0]) {
					hits = append(hits, hit{e, p.Repository})
				}
			}
			for _, u := range indexes {
				client, err := pkgsource.HTTPClient(loc.caFile)
				if err != nil {
					return err
				}
				ctx, cancel := pkgCtx()
				idx, err := pkgsource.NewHTTPIndex(u, client).Index(ctx)
				cancel()
				if err != nil {
					return fmt.Errorf("index %s: %w", u, err)
				}
				for _, e := range idx.Packages {
					if e.Matches(args[0]) {
						hits = append(hits, hit{e, u})
					}
				}
			}
			sort.SliceStable(hits, func(i, j int) bool { return hits[i].e.Name < hits[j].e.Name })
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PACKAGE\tREPOSITORY\tSIGNERS\tLINT\tDESCRIPTION")
			for _, h := range hits {
				fmt.Fprintf(tw, "%s@%s\t%s\t%s\t%s\t%s\n", h.e.Name, h.e.Version, h.repo, signerList(h.e.Signers), lintWord(h.e.Lint), h.e.Description)
			}
			return tw.Flush()
		},
	}
	loc.flags(c, "", "also search")
	c.Flags().StringVar(&configFile, "config", "", "search the repositories of this leafd config file")
	c.Flags().StringArrayVar(&indexes, "index", nil, "also search a published index (URL or directory holding leaf-index.json; repeatable)")
	return c
}

// listAll lists every repository in set and fails on the first that
// cannot be listed: an empty table must mean an empty repository.
func listAll(set repository.Set) ([]*repository.Package, error) {
	var out []*repository.Package
	for _, r := range set {
		if tr, ok := r.(*trust.Repository); ok {
			r = tr.Inner
		}
		lister, ok := r.(interface {
			Packages() ([]*repository.Package, error)
		})
		if !ok {
			out = append(out, r.List()...)
			continue
		}
		pkgs, err := lister.Packages()
		if err != nil {
			return nil, fmt.Errorf("list repository %s: %w", r.Name(), err)
		}
		out = append(out, pkgs...)
	}
	return out, nil
}

func signerList(s []pkgsource.IndexSigner) string {
	if len(s) == 0 {
		return "-"
	}
	var parts []string
	for _, x := range s {
		parts = append(parts, x.Role+":"+shortKey(x.KeyID))
	}
	return strings.Join(parts, ",")
}

func shortKey(id string) string {
	if len(id) > 19 {
		return id[:19]
	}
	return id
}

func lintWord(l *lint.Summary) string {
	switch {
	case l == nil:
		return "-"
	case l.Passed:
		return "passed"
	}
	return "failed"
}

func pkgExportCmd(g *globals) *cobra.Command {
	var layout, out string
	c := &cobra.Command{
		Use:   "export NAME@VERSION... -o FILE.tar",
		Short: "Write packages and their signatures as a .tar in OCI image layout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := pkgCtx()
			defer cancel()
			s, err := oci.New(layout)
			if err != nil {
				return err
			}
			var descs []ocispec.Descriptor
			for _, a := range args {
				ref, err := parseRef(a)
				if err != nil {
					return err
				}
				d, err := s.Resolve(ctx, ocipkg.Ref(ref.Name, ref.Version))
				if err != nil {
					return fmt.Errorf("%s: %w", a, err)
				}
				descs = append(descs, d)
			}
			var buf bytes.Buffer
			if err := ocipkg.Export(ctx, s, descs, &buf); err != nil {
				return err
			}
			return writeFileAtomic(out, buf.Bytes())
		},
	}
	c.Flags().StringVar(&layout, "layout", "leaf-packages", "the OCI layout holding the packages")
	c.Flags().StringVarP(&out, "output", "o", "", "the .tar to write")
	c.MarkFlagRequired("output")
	return c
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func pkgImportCmd(g *globals) *cobra.Command {
	var layout string
	c := &cobra.Command{
		Use:   "import FILE.tar",
		Short: "Add the packages (and signatures) of an exported .tar to a layout, after checking every digest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := pkgCtx()
			defer cancel()
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			l, err := ocipkg.OpenArchive(ctx, f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			for _, p := range l.Packages {
				src := &pkgTarget{store: readOnlyTarget{l}, ref: ocipkg.Ref(p.Manifest.Name, p.Manifest.Version)}
				dst, err := (&location{layout: layout}).target(p.Manifest.Name, p.Manifest.Version)
				if err != nil {
					return err
				}
				if err := copyBetween(ctx, g, src, dst, p.Manifest.Name+"@"+p.Manifest.Version); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&layout, "layout", "leaf-packages", "the OCI layout to import into")
	return c
}

func pkgIndexCmd(g *globals) *cobra.Command {
	var layout, out string
	var runLint bool
	var keys []string
	c := &cobra.Command{
		Use:   "index --layout DIR -o OUTDIR",
		Short: "Publish a layout as a static HTTP repository: one .tar per package and leaf-index.json (the marketplace index)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeIndex(g, layout, out, runLint, keys)
		},
	}
	c.Flags().StringVar(&layout, "layout", "leaf-packages", "the OCI layout to publish")
	c.Flags().StringVarP(&out, "output", "o", "", "directory to write the archives and leaf-index.json into")
	c.Flags().BoolVar(&runLint, "lint", false, "run lint on each package and publish the results (the verifier runs as root)")
	c.Flags().StringArrayVar(&keys, "key", nil, "public keys whose verified signatures the index lists (repeatable)")
	c.MarkFlagRequired("output")
	return c
}

func writeIndex(g *globals, layout, out string, runLint bool, keyFiles []string) error {
	ctx, cancel := pkgCtx()
	defer cancel()
	policy, err := pkgsource.Policy(layout, pkgsource.TrustConfig{AuthorKeys: keyFiles, AllowUnsigned: true})
	if err != nil {
		return err
	}
	var lintFn func(*repository.Package) *lint.Summary
	if runLint {
		lintFn = func(p *repository.Package) *lint.Summary {
			s := lint.Run(p, lint.Options{Load: os.Geteuid() == 0})
			return &s
		}
	}
	idx, err := pkgsource.Publish(ctx, layout, out, policy, lintFn)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.out, "%s: %d packages\n", filepath.Join(out, pkgsource.IndexFile), len(idx.Packages))
	return nil
}

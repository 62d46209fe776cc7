package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
)

// location is where a pkg command reads or writes packages: an OCI
// layout directory or a registry.
type location struct {
	layout       string
	registry     string
	caFile       string
	username     string
	passwordFile string
	plainHTTP    bool
}

func (l *location) flags(c *cobra.Command, prefix, what string) {
	c.Flags().StringVar(&l.layout, prefix+"layout", "", what+": an OCI image layout directory")
	c.Flags().StringVar(&l.registry, prefix+"registry", "", what+": an OCI registry, host[:port]/prefix")
	c.Flags().StringVar(&l.caFile, prefix+"ca-file", "", "CA certificates trusted for the registry (PEM)")
	c.Flags().StringVar(&l.username, prefix+"username", "", "registry user name")
	c.Flags().StringVar(&l.passwordFile, prefix+"password-file", "", "file holding the registry password (env LEAF_REGISTRY_PASSWORD also works)")
	c.Flags().BoolVar(&l.plainHTTP, prefix+"plain-http", false, "talk HTTP to the registry (loopback only)")
}

// openRegistry opens --registry with the password from --password-file
// or $LEAF_REGISTRY_PASSWORD.
func (l *location) openRegistry() (*pkgsource.Registry, error) {
	password := os.Getenv("LEAF_REGISTRY_PASSWORD")
	if l.passwordFile != "" {
		data, err := os.ReadFile(l.passwordFile)
		if err != nil {
			return nil, err
		}
		password = strings.TrimRight(string(data), "\r\n")
	}
	return pkgsource.NewRegistry(pkgsource.RegistryOptions{Base: l.registry, CAFile: l.caFile, Username: l.username, Password: password, PlainHTTP: l.plainHTTP})
}

// pkgTarget is one package's place: the store and the reference of
// name@version in it.
type pkgTarget struct {
	store oras.GraphTarget
	ref   string
}

func (l *location) target(name, version string) (*pkgTarget, error) {
	switch {
	case l.layout != "" && l.registry != "":
		return nil, fmt.Errorf("give --layout or --registry, not both")
	case l.layout != "":
		s, err := oci.New(l.layout)
		if err != nil {
			return nil, fmt.Errorf("layout %s: %w", l.layout, ocipkg.ExplainLayout(os.DirFS(l.layout), err))
		}
		return &pkgTarget{store: s, ref: ocipkg.Ref(name, version)}, nil
	case l.registry != "":
		reg, err := l.openRegistry()
		if err != nil {
			return nil, err
		}
		repo, err := reg.Repository(name)
		if err != nil {
			return nil, err
		}
		return &pkgTarget{store: repo, ref: version}, nil
	}
	return nil, fmt.Errorf("say where: --layout DIR or --registry HOST/PREFIX")
}

// resolve finds a package and reads (and checks) it whole.
// resolve reads the target's package; a non-empty pin is the digest the
// caller insists on.
func (t *pkgTarget) resolve(ctx context.Context, pin string) (*ocipkg.Package, error) {
	desc, err := t.store.Resolve(ctx, t.ref)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", t.ref, err)
	}
	p, err := ocipkg.Read(ctx, t.store, desc, "")
	if err != nil {
		return nil, err
	}
	if pin != "" && p.Digest() != pin {
		return nil, fmt.Errorf("%s is %s, not the pinned %s", t.ref, p.Digest(), pin)
	}
	return p, nil
}

func parseRef(ref string) (desired.PackageRef, error) { return desired.ParsePackageRef(ref) }

func pkgCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "pkg",
		Short: "Build, sign, verify, publish and find packages (no leafd needed)",
		// The package manager works on files, layouts and registries, not
		// on leafd: it needs no connection.
		PersistentPreRunE: noConnect,
	}
	c.AddCommand(pkgBuildCmd(g), pkgLintCmd(g), pkgKeygenCmd(g), pkgSignCmd(g), pkgVerifyCmd(g),
		pkgPushCmd(g), pkgPullCmd(g), pkgInspectCmd(g), pkgListCmd(g), pkgSearchCmd(g),
		pkgExportCmd(g), pkgImportCmd(g), pkgIndexCmd(g))
	return c
}

func pkgCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Minute)
}

func pkgBuildCmd(g *globals) *cobra.Command {
	var out location
	var noCompile bool
	c := &cobra.Command{
		Use:   "build DIR",
		Short: "Build a package from a directory holding leaf.yaml (compiling *.bpf.c with clang-14 when the object is missing or older)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if !noCompile {
				if err := compileSources(dir); err != nil {
					return err
				}
			}
			ctx, cancel := pkgCtx()
			defer cancel()
			if out.layout == "" && out.registry == "" {
				out.layout = "leaf-packages"
			}
			// Build into memory first: nothing reaches the target unless the
			// whole package validates.
			mem := newMemStore()
			desc, m, err := ocipkg.Build(ctx, os.DirFS(dir), mem)
			if err != nil {
				return fmt.Errorf("build %s: %w", dir, err)
			}
			t, err := out.target(m.Name, m.Version)
			if err != nil {
				return err
			}
			if err := oras.CopyGraph(ctx, mem, t.store, desc, oras.DefaultCopyGraphOptions); err != nil {
				return err
			}
			if err := t.store.Tag(ctx, desc, t.ref); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s@%s %s\n", m.Name, m.Version, desc.Digest)
			return nil
		},
	}
	out.flags(c, "", "where to put the package (default --layout leaf-packages)")
	c.Flags().BoolVar(&noCompile, "no-compile", false, "use the objects as they are")
	return c
}

// compileSources compiles each X.bpf.c into X.bpf.o when the object is
// missing or older than its source, with the flags the Makefile uses.
func compileSources(dir string) error {
	srcs, _ := filepath.Glob(filepath.Join(dir, "*.bpf.c"))
	for _, src := range srcs {
		obj := strings.TrimSuffix(src, ".c") + ".o"
		si, _ := os.Stat(src)
		if oi, err := os.Stat(obj); err == nil && !oi.ModTime().Before(si.ModTime()) {
			continue
		}
		clang := envOr("CLANG", "clang-14")
		arch := fmt.Sprintf("/usr/include/%s-linux-gnu", unameMachine())
		cmd := exec.Command(clang, "-O2", "-g", "-target", "bpf", "-Wall", "-fno-ident", "-I"+arch, "-c", filepath.Base(src), "-o", filepath.Base(obj))
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("compile %s: %v\n%s", src, err, out)
		}
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func unameMachine() string {
	out, err := exec.Command("uname", "-m").Output()
	if err != nil {
		return "x86_64"
	}
	return strings.TrimSpace(string(out))
}

func pkgPushCmd(g *globals) *cobra.Command {
	var from, to location
	c := &cobra.Command{
		Use:   "push NAME@VERSION",
		Short: "Copy a package and its signatures from a layout to a registry (or another layout)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return copyPackage(g, args[0], &from, &to)
		},
	}
	c.Flags().StringVar(&from.layout, "from-layout", "leaf-packages", "the OCI layout holding the package")
	to.flags(c, "", "destination")
	return c
}

func pkgPullCmd(g *globals) *cobra.Command {
	var from, to location
	c := &cobra.Command{
		Use:   "pull NAME@VERSION[@DIGEST]",
		Short: "Copy a package and its signatures from a registry (or layout) into a layout, checking every digest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to.layout == "" {
				to.layout = "leaf-packages"
			}
			return copyPackage(g, args[0], &from, &to)
		},
	}
	from.flags(c, "", "source")
	c.Flags().StringVar(&to.layout, "to-layout", "leaf-packages", "the OCI layout to copy into")
	return c
}

// copyPackage copies a package with its referrers (signatures), after
// reading and checking it whole from the source.
func copyPackage(g *globals, refArg string, from, to *location) error {
	ref, err := parseRef(refArg)
	if err != nil {
		return err
	}
	ctx, cancel := pkgCtx()
	defer cancel()
	src, err := from.target(ref.Name, ref.Version)
	if err != nil {
		return err
	}
	dst, err := to.target(ref.Name, ref.Version)
	if err != nil {
		return err
	}
	return copyBetween(ctx, g, src, dst, refArg)
}

// copyBetween copies a package with its signatures from src to dst.
func copyBetween(ctx context.Context, g *globals, src, dst *pkgTarget, refArg string) error {
	ref, err := parseRef(refArg)
	if err != nil {
		return err
	}
	p, err := src.resolve(ctx, ref.Digest)
	if err != nil {
		return err
	}
	if p.Manifest.Name != ref.Name || p.Manifest.Version != ref.Version {
		return fmt.Errorf("%s holds %s@%s", refArg, p.Manifest.Name, p.Manifest.Version)
	}
	srcSigs, err := ocipkg.Signatures(ctx, src.store, p.Desc)
	if err != nil {
		return err
	}
	// Signatures the destination holds already (a countersignature made
	// there) must survive the copy as well as those copied.
	kept, err := ocipkg.Signatures(ctx, dst.store, p.Desc)
	if err != nil {
		return err
	}
	opts := oras.ExtendedCopyGraphOptions{CopyGraphOptions: oras.CopyGraphOptions{MaxMetadataBytes: ocipkg.MaxManifestSize}}
	opts.FindPredecessors = func(ctx context.Context, s content.ReadOnlyGraphStorage, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if desc.Digest != p.Desc.Digest {
			return nil, nil // only the package's own referrers
		}
		var out []ocispec.Descriptor
		for _, sg := range srcSigs {
			out = append(out, sg.Desc)
		}
		return out, nil
	}
	prog := stderrProgress("copy " + refArg)
	prog.hook(&opts.CopyGraphOptions)
	err = oras.ExtendedCopyGraph(ctx, src.store, dst.store, p.Desc, opts)
	prog.finish()
	if err != nil {
		return fmt.Errorf("copy %s: %w", refArg, err)
	}
	if err := ocipkg.KeptSignatures(ctx, dst.store, p.Desc, append(kept, srcSigs...)); err != nil {
		return fmt.Errorf("copy %s: %w", refArg, err)
	}
	if err := dst.store.Tag(ctx, p.Desc, dst.ref); err != nil {
		return err
	}
	fmt.Fprintf(g.out, "%s@%s %s\n", p.Manifest.Name, p.Manifest.Version, p.Digest())
	return nil
}

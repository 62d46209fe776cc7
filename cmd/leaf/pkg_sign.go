package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/content/memory"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/signature"
	"github.com/leaf-ebpf/leaf/internal/trust"
)

func newMemStore() *memory.Store { return memory.New() }

func pkgKeygenCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "keygen --out NAME",
		Short: "Make an ECDSA P-256 key pair: NAME.key (encrypted with $LEAF_KEY_PASSWORD when set, as cosign does) and NAME.pub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var password []byte
			if p, ok := os.LookupEnv(signature.PasswordEnv); ok {
				password = []byte(p)
			}
			priv, pub, err := signature.GenerateKey(password)
			if err != nil {
				return err
			}
			if _, err := os.Stat(out + ".key"); err == nil {
				return fmt.Errorf("%s.key exists: not overwriting a key", out)
			}
			if err := os.WriteFile(out+".key", priv, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(out+".pub", pub, 0o644); err != nil {
				return err
			}
			k, err := signature.ParsePublicKey(out+".pub", pub)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s.key %s.pub %s\n", out, out, k.ID)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "leaf", "path prefix of the key files")
	return c
}

func pkgSignCmd(g *globals) *cobra.Command {
	var loc location
	var keyFile, role, bundleOut, attach, attachKey string
	c := &cobra.Command{
		Use:   "sign NAME@VERSION --key KEY",
		Short: "Sign a package's digest (a sigstore bundle, attached as an OCI referrer)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role != ocipkg.RoleAuthor && role != ocipkg.RoleRepository {
				return fmt.Errorf("--role must be author or repository")
			}
			if (keyFile == "") == (attach == "") {
				return fmt.Errorf("give --key KEY to sign, or --attach-bundle FILE to attach a bundle made elsewhere (cosign sign-blob)")
			}
			if attach != "" && attachKey == "" {
				return fmt.Errorf("--attach-bundle needs --public-key PUB, the key that made it: leaf checks that the bundle verifies before attaching it")
			}
			ref, err := parseRef(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := pkgCtx()
			defer cancel()
			t, err := loc.target(ref.Name, ref.Version)
			if err != nil {
				return err
			}
			p, err := t.resolve(ctx, ref.Digest)
			if err != nil {
				return err
			}
			bundle, by, err := makeBundle(ctx, keyFile, attach, p.Raw)
			if err != nil {
				return err
			}
			if attach != "" {
				if by, err = checkAttached(bundle, p.Digest(), attach, attachKey); err != nil {
					return err
				}
			}
			if bundleOut != "" {
				if err := os.WriteFile(bundleOut, bundle, 0o644); err != nil {
					return err
				}
			}
			if _, err := ocipkg.AddSignature(ctx, t.store, p.Desc, bundle, role); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "signed %s@%s %s as %s with %s\n", p.Manifest.Name, p.Manifest.Version, p.Digest(), role, by)
			return nil
		},
	}
	loc.flags(c, "", "where the package is")
	c.Flags().StringVar(&keyFile, "key", "", "private key (PEM; cosign's encrypted keys too, password in $LEAF_KEY_PASSWORD or $COSIGN_PASSWORD)")
	c.Flags().StringVar(&role, "role", ocipkg.RoleAuthor, "author or repository (countersignature)")
	c.Flags().StringVar(&bundleOut, "bundle", "", "also write the bundle to this file")
	c.Flags().StringVar(&attach, "attach-bundle", "", "attach this sigstore bundle (for example from cosign sign-blob over the package's manifest) instead of signing")
	c.Flags().StringVar(&attachKey, "public-key", "", "with --attach-bundle: the public key the bundle must verify with before it is attached")
	return c
}

// checkAttached verifies a bundle made elsewhere before it is attached:
// a tampered or foreign bundle is refused, not published.
func checkAttached(bundle []byte, digest, file, keyFile string) (string, error) {
	pub, err := signature.LoadPublicKey(keyFile)
	if err != nil {
		return "", err
	}
	k, err := signature.Verify(bundle, digest, []*signature.PublicKey{pub})
	if err != nil {
		return "", fmt.Errorf("bundle %s: %w; nothing attached", file, err)
	}
	return fmt.Sprintf("bundle %s (verified with %s)", file, k.ID), nil
}

// makeBundle signs message with the key file, or reads a bundle made
// elsewhere; it says who signed (the key ID) or "bundle FILE".
func makeBundle(ctx context.Context, keyFile, attach string, message []byte) ([]byte, string, error) {
	if attach != "" {
		b, err := os.ReadFile(attach)
		return b, "bundle " + attach, err
	}
	signer, err := signature.LoadPrivateKey(keyFile)
	if err != nil {
		return nil, "", err
	}
	b, err := signer.Sign(ctx, message)
	return b, signer.Public.ID, err
}

func pkgVerifyCmd(g *globals) *cobra.Command {
	var loc location
	var authorKeys, repoKeys []string
	var require, cosignDir string
	c := &cobra.Command{
		Use:   "verify NAME@VERSION[@DIGEST] --key PUB",
		Short: "Check a package's digests and signatures against a trust policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := parseRef(args[0])
			if err != nil {
				return err
			}
			// The same policy leafd builds from a repository's trust
			// configuration.
			policy, err := pkgsource.Policy("(command line)", pkgsource.TrustConfig{AuthorKeys: authorKeys, RepositoryKeys: repoKeys, Require: require})
			if err != nil {
				return err
			}
			ctx, cancel := pkgCtx()
			defer cancel()
			t, err := loc.target(ref.Name, ref.Version)
			if err != nil {
				return err
			}
			p, err := t.resolve(ctx, ref.Digest)
			if err != nil {
				return err
			}
			sigs, err := ocipkg.Signatures(ctx, t.store, p.Desc)
			if err != nil {
				return err
			}
			if cosignDir != "" {
				if err := writeForCosign(cosignDir, p, sigs); err != nil {
					return err
				}
			}
			res, err := policy.Check(p.Digest(), sigs)
			if err != nil {
				return fmt.Errorf("%s@%s (%s): %w", p.Manifest.Name, p.Manifest.Version, p.Digest(), err)
			}
			printTrust(g, p, res)
			return nil
		},
	}
	loc.flags(c, "", "where the package is")
	c.Flags().StringArrayVar(&authorKeys, "key", nil, "public key trusted for author signatures (repeatable)")
	c.Flags().StringArrayVar(&repoKeys, "repository-key", nil, "public key trusted for repository signatures (repeatable)")
	c.Flags().StringVar(&require, "require", trust.RequireAuthor, "author, repository or both")
	c.Flags().StringVar(&cosignDir, "cosign-dir", "", "also write manifest.json, the bundles and an empty trusted root here, for cosign verify-blob")
	return c
}

func printTrust(g *globals, p *ocipkg.Package, res *repository.Trust) {
	fmt.Fprintf(g.out, "%s@%s %s %s\n", p.Manifest.Name, p.Manifest.Version, p.Digest(), res.Policy)
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	for _, s := range res.Signers {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Role, s.Key, s.KeyID)
	}
	tw.Flush()
}

// emptyTrustedRoot lets cosign verify keyed bundles offline.
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}` + "\n"

// writeForCosign lays out what an independent check with cosign needs:
// the signed message (the OCI manifest) and each bundle.
func writeForCosign(dir string, p *ocipkg.Package, sigs []ocipkg.Signature) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{"manifest.json": p.Raw, "trusted_root.json": []byte(emptyTrustedRoot)}
	for i, s := range sigs {
		files[fmt.Sprintf("signature-%d-%s.sigstore.json", i+1, s.Role)] = bytes.Clone(s.Bundle)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

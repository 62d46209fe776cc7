package ocipkg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"
)

// A signature is a sigstore bundle stored as an OCI referrer of the
// package manifest: an artifact of type BundleMediaType whose subject is
// the package and whose one layer is the bundle (as cosign attaches them).
const (
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// AnnotationRole says who signed: author or repository. It is a hint
	// for people; trust decides the role from the key that verifies.
	AnnotationRole = "dev.leaf.signature.role"
	MaxSignatures  = 16
	MaxBundleSize  = 1 << 20
)

// Signature roles.
const (
	RoleAuthor     = "author"
	RoleRepository = "repository"
)

// Signature is one bundle found for a package.
type Signature struct {
	Role   string
	Bundle []byte
	// Desc is the referrer manifest holding it (empty for bundles kept
	// beside a package file).
	Desc ocispec.Descriptor
}

// AttachSignature stores a bundle as a referrer of subject in target.
func AttachSignature(ctx context.Context, target content.Pusher, subject ocispec.Descriptor, bundle []byte, role string) (ocispec.Descriptor, error) {
	if len(bundle) > MaxBundleSize {
		return ocispec.Descriptor{}, fmt.Errorf("bundle is %d bytes, more than %d", len(bundle), MaxBundleSize)
	}
	layer := content.NewDescriptorFromBytes(BundleMediaType, bundle)
	if err := pushIfAbsent(ctx, target, layer, bundle); err != nil {
		return ocispec.Descriptor{}, err
	}
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size, ArtifactType: subject.ArtifactType}
	desc, err := oras.PackManifest(ctx, target, oras.PackManifestVersion1_1, BundleMediaType, oras.PackManifestOptions{
		Subject: &subj,
		Layers:  []ocispec.Descriptor{layer},
		// A fixed creation time keeps the same signature attached twice
		// one referrer, not two.
		ManifestAnnotations: map[string]string{AnnotationRole: role, ocispec.AnnotationCreated: "1970-01-01T00:00:00Z"},
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("attach signature: %w", err)
	}
	return desc, nil
}

// ErrSignaturesUnreadable marks signatures that exist (or may) but
// could not be listed or read: a refusal for that reason is not the
// same as a package that has none.
var ErrSignaturesUnreadable = errors.New("signatures unreadable")

// AddSignature attaches a bundle to subject in store and checks that
// every signature attached before is still there.
func AddSignature(ctx context.Context, store interface {
	content.Pusher
	content.ReadOnlyGraphStorage
}, subject ocispec.Descriptor, bundle []byte, role string) (ocispec.Descriptor, error) {
	before, err := Signatures(ctx, store, subject)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := AttachSignature(ctx, store, subject, bundle, role)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, KeptSignatures(ctx, store, subject, append(before, Signature{Role: role, Desc: desc}))
}

// Signatures returns the bundles attached to subject in src, each checked
// against its digest and the caps. Errors wrap ErrSignaturesUnreadable.
func Signatures(ctx context.Context, src content.ReadOnlyGraphStorage, subject ocispec.Descriptor) ([]Signature, error) {
	refs, err := registry.Referrers(ctx, src, subject, BundleMediaType)
	if err != nil {
		return nil, fmt.Errorf("%w: list signatures of %s: %w", ErrSignaturesUnreadable, subject.Digest, err)
	}
	if len(refs) > MaxSignatures {
		return nil, fmt.Errorf("%w: %s has %d signatures, more than %d", ErrSignaturesUnreadable, subject.Digest, len(refs), MaxSignatures)
	}
	var out []Signature
	for _, r := range refs {
		sig, err := readSignature(ctx, src, subject, r)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSignaturesUnreadable, err)
		}
		out = append(out, sig)
	}
	return out, nil
}

// KeptSignatures checks that every signature in before is still attached
// to subject in store: signing or pushing may only add signatures. A
// registry that rewrites its referrers index from scratch fails here
// rather than silently losing the author's signature.
func KeptSignatures(ctx context.Context, store content.ReadOnlyGraphStorage, subject ocispec.Descriptor, before []Signature) error {
	after, err := Signatures(ctx, store, subject)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, s := range after {
		have[s.Desc.Digest.String()] = true
	}
	var lost []string
	for _, s := range before {
		if !have[s.Desc.Digest.String()] {
			lost = append(lost, fmt.Sprintf("%s (%s)", s.Desc.Digest, s.Role))
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("the store dropped %d of %s's signatures: %s", len(lost), subject.Digest, strings.Join(lost, ", "))
	}
	return nil
}

func readSignature(ctx context.Context, src content.Fetcher, subject, r ocispec.Descriptor) (Signature, error) {
	if r.Size <= 0 || r.Size > MaxManifestSize {
		return Signature{}, fmt.Errorf("signature manifest %s: size %d out of range", r.Digest, r.Size)
	}
	raw, err := content.FetchAll(ctx, src, r)
	if err != nil {
		return Signature{}, fmt.Errorf("fetch signature %s: %w", r.Digest, err)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return Signature{}, fmt.Errorf("signature manifest %s: %w", r.Digest, err)
	}
	if man.Subject == nil || man.Subject.Digest != subject.Digest {
		return Signature{}, fmt.Errorf("signature manifest %s does not refer to %s", r.Digest, subject.Digest)
	}
	if len(man.Layers) != 1 || man.Layers[0].MediaType != BundleMediaType {
		return Signature{}, fmt.Errorf("signature manifest %s: want one %s layer", r.Digest, BundleMediaType)
	}
	l := man.Layers[0]
	if l.Size <= 0 || l.Size > MaxBundleSize {
		return Signature{}, fmt.Errorf("signature %s: bundle size %d out of range", r.Digest, l.Size)
	}
	bundle, err := content.FetchAll(ctx, src, l)
	if err != nil {
		return Signature{}, fmt.Errorf("fetch signature bundle %s: %w", l.Digest, err)
	}
	return Signature{Role: man.Annotations[AnnotationRole], Bundle: bytes.Clone(bundle), Desc: r}, nil
}

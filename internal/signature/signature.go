// Package signature signs and verifies leaf packages with sigstore
// bundles (v0.3) holding a keyed message signature, the envelope cosign
// writes with `sign-blob --new-bundle-format` and checks with
// `verify-blob --key`. The signed message is the package's OCI manifest,
// so the bundle's message digest is the package digest. Nothing here
// talks to the network: no transparency log, no Fulcio, no TUF.
package signature

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/leaf-ebpf/leaf/internal/secretfile"
)

// PasswordEnv holds the password of an encrypted private key (the
// format cosign generate-key-pair writes).
const PasswordEnv = "LEAF_KEY_PASSWORD"

// PublicKey is a key a trust policy names.
type PublicKey struct {
	// Name is how errors and status refer to the key (its file, or what
	// the configuration calls it).
	Name string
	Key  crypto.PublicKey
	// ID is "sha256:<hex>" of the key's DER encoding.
	ID string
}

// String names the key and its fingerprint.
func (k *PublicKey) String() string { return fmt.Sprintf("%s (%s)", k.Name, ShortID(k.ID)) }

// ShortID abbreviates a key ID for messages.
func ShortID(id string) string {
	if len(id) > 19 {
		return id[:19]
	}
	return id
}

// ParsePublicKey reads a PEM public key (PKIX, as cosign writes).
func ParsePublicKey(name string, data []byte) (*PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", name, err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", name, err)
	}
	sum := sha256.Sum256(der)
	return &PublicKey{Name: name, Key: pub, ID: "sha256:" + hex.EncodeToString(sum[:])}, nil
}

// LoadPublicKey reads a PEM public key file.
func LoadPublicKey(path string) (*PublicKey, error) {
	f, err := secretfile.Read(path, secretfile.Public)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return ParsePublicKey(path, f.Data)
}

// Signer is a private key that signs packages.
type Signer struct {
	key     crypto.Signer
	details sigsig.AlgorithmDetails
	hint    []byte
	Public  *PublicKey
}

// ParsePrivateKey reads a PEM private key: PKCS#8, SEC 1 EC, or cosign's
// encrypted format (password from LEAF_KEY_PASSWORD, else
// COSIGN_PASSWORD).
func ParsePrivateKey(name string, data []byte) (*Signer, error) {
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, func(bool) ([]byte, error) {
		if p, ok := os.LookupEnv(PasswordEnv); ok {
			return []byte(p), nil
		}
		return []byte(os.Getenv("COSIGN_PASSWORD")), nil
	})
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", name, err)
	}
	key, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key %s: %T cannot sign", name, priv)
	}
	alg, err := algorithm(key.Public())
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", name, err)
	}
	details, err := sigsig.GetAlgorithmDetails(alg)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", name, err)
	}
	pemPub, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(name, pemPub)
	if err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	sum := sha256.Sum256(der)
	// The hint is what cosign puts in a keyed bundle: base64 of the key's
	// SHA-256 fingerprint.
	return &Signer{key: key, details: details, hint: []byte(base64.StdEncoding.EncodeToString(sum[:])), Public: pub}, nil
}

// LoadPrivateKey reads a PEM private key file.
func LoadPrivateKey(path string) (*Signer, error) {
	f, err := secretfile.Read(path, secretfile.Private)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return ParsePrivateKey(path, f.Data)
}

func algorithm(pub crypto.PublicKey) (protocommon.PublicKeyDetails, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256, nil
		case elliptic.P384():
			return protocommon.PublicKeyDetails_PKIX_ECDSA_P384_SHA_384, nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return protocommon.PublicKeyDetails_PKIX_RSA_PKCS1V15_2048_SHA256, nil
		}
	case ed25519.PublicKey:
		return protocommon.PublicKeyDetails_PKIX_ED25519, nil
	}
	return 0, fmt.Errorf("unsupported key type %T (use ECDSA P-256, as cosign generate-key-pair makes)", pub)
}

// GenerateKey makes an ECDSA P-256 key pair as PEM. With a password the
// private key is in cosign's encrypted format; without, plain PKCS#8.
func GenerateKey(password []byte) (privPEM, pubPEM []byte, err error) {
	if password != nil {
		return cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc(password))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), randReader)
	if err != nil {
		return nil, nil, err
	}
	privPEM, err = cryptoutils.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, err
	}
	pubPEM, err = cryptoutils.MarshalPublicKeyToPEM(key.Public())
	return privPEM, pubPEM, err
}

// Sign signs message (a package's OCI manifest) and returns the bundle
// as JSON.
func (s *Signer) Sign(ctx context.Context, message []byte) ([]byte, error) {
	b, err := sign.Bundle(&sign.PlainData{Data: message}, keypair{s}, sign.BundleOptions{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return protojson.Marshal(b)
}

// keypair adapts a Signer to sigstore-go's signing interface.
type keypair struct{ s *Signer }

func (k keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.s.details.GetProtoHashType() }
func (k keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.s.details.GetSignatureAlgorithm()
}
func (k keypair) GetHint() []byte                { return k.s.hint }
func (k keypair) GetKeyAlgorithm() string        { return "" }
func (k keypair) GetPublicKey() crypto.PublicKey { return k.s.key.Public() }
func (k keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.s.key.Public())
	return string(b), err
}

func (k keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	hf := k.s.details.GetHashType()
	toSign := data
	if hf != crypto.Hash(0) {
		h := hf.New()
		h.Write(data)
		toSign = h.Sum(nil)
	}
	sig, err := k.s.key.Sign(randReader, toSign, hf)
	return sig, toSign, err
}

// ErrUntrustedKey means a bundle verifies with none of the keys given.
var ErrUntrustedKey = errors.New("signed by none of the trusted keys")

// ErrBadSignature means the bundle names a trusted key but its signature
// does not verify with it: the bundle or the package was altered.
var ErrBadSignature = errors.New("signature does not verify")

// Verify checks that bundleJSON is a keyed signature of a message whose
// SHA-256 is digest ("sha256:<hex>"), made by one of keys, and returns
// that key. No network: keyed bundles need no transparency log or
// timestamp, as with cosign --insecure-ignore-tlog.
func Verify(bundleJSON []byte, digest string, keys []*PublicKey) (*PublicKey, error) {
	hexDigest, ok := cutSHA256(digest)
	if !ok {
		return nil, fmt.Errorf("digest %q is not sha256:<hex>", digest)
	}
	want, err := hex.DecodeString(hexDigest)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("digest %q is not sha256:<hex>", digest)
	}
	b, err := parseBundle(bundleJSON)
	if err != nil {
		return nil, err
	}
	if err := checkMessageDigest(b, want); err != nil {
		return nil, err
	}
	// Try every key: the bundle's hint is not authenticated, so it only
	// helps to name the signer in errors.
	hint := b.GetVerificationMaterial().GetPublicKey().GetHint()
	var named *PublicKey
	for _, k := range keys {
		if err := verifyWith(b, want, k); err == nil {
			return k, nil
		}
		if hintOf(k) == hint {
			named = k
		}
	}
	if named != nil {
		return nil, fmt.Errorf("%w: the bundle names key %s, and its signature over %s does not verify with it (the signature or the package was altered)", ErrBadSignature, named, digest)
	}
	return nil, fmt.Errorf("%w (key hint %q, %d keys tried)", ErrUntrustedKey, hint, len(keys))
}

func parseBundle(data []byte) (*bundle.Bundle, error) {
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(data, &pb); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	b, err := bundle.NewBundle(&pb)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if b.GetVerificationMaterial().GetPublicKey() == nil {
		return nil, fmt.Errorf("bundle: not a keyed signature (certificate-based bundles need a trust root leaf does not fetch)")
	}
	if b.GetMessageSignature() == nil {
		return nil, fmt.Errorf("bundle: not a message signature (DSSE attestations do not sign a package)")
	}
	return b, nil
}

// checkMessageDigest gives a clear error when the bundle signs another
// package, before any key is tried.
func checkMessageDigest(b *bundle.Bundle, want []byte) error {
	md := b.GetMessageSignature().GetMessageDigest()
	if md == nil {
		return nil
	}
	if md.GetAlgorithm() != protocommon.HashAlgorithm_SHA2_256 {
		return fmt.Errorf("bundle: message digest algorithm %s, want SHA2_256", md.GetAlgorithm())
	}
	if !bytes.Equal(md.GetDigest(), want) {
		return fmt.Errorf("bundle signs sha256:%s, not this package (sha256:%s)", hex.EncodeToString(md.GetDigest()), hex.EncodeToString(want))
	}
	return nil
}

func verifyWith(b *bundle.Bundle, digest []byte, k *PublicKey) error {
	v, err := sigsig.LoadDefaultVerifier(k.Key)
	if err != nil {
		return fmt.Errorf("key %s: %w", k, err)
	}
	trusted := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(v, timeZero, timeZero), nil
	})
	ver, err := verify.NewVerifier(trusted, verify.WithNoObserverTimestamps())
	if err != nil {
		return err
	}
	_, err = ver.Verify(b, verify.NewPolicy(verify.WithArtifactDigest("sha256", digest), verify.WithKey()))
	return err
}

// hintOf is the hint cosign and leaf put in a keyed bundle for k: base64
// of the SHA-256 of its DER public key.
func hintOf(k *PublicKey) string {
	hexID, ok := cutSHA256(k.ID)
	if !ok {
		return ""
	}
	raw, err := hex.DecodeString(hexID)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func cutSHA256(d string) (string, bool) {
	const p = "sha256:"
	if len(d) != len(p)+64 || d[:len(p)] != p {
		return "", false
	}
	return d[len(p):], true
}
